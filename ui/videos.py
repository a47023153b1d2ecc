"""The video page's parts: the request form (images, script, voice with preview, look, sound) and
the renders, playable in the page with their platform spec report. Keys start with "videos."."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.characters.characters import current_character, voice_of
from core.errors import StudioError
from core.library import assets
from core.models import Job
from core.publishing.llm import record_calls
from core.video import requests as videos
from core.video import scripts
from core.video.options import ASPECT_LABELS, CAPTION_MODE_LABELS, LoudnessTarget, SubtitleStyle
from ui.auth import guard
from ui.motion import animate_panel, recent_clips
from ui.text import literal, plain
from ui.voice_picker import character_voices, preview_voice, render_character_voice
from ui.widgets import VIDEO_HANDOFF_KEY, live_job_list, status_badge, stored_id, unfinished_job

IMAGES = "videos.images"
SCRIPT = "videos.script"
VOICE = "videos.voice"
_PAGE = "videos.page"
_HANDED = "videos.handed"  # the last hand-over applied
TOPIC = "videos.topic"
_WRITTEN = "videos.written"  # what the last "Write the script" said (who wrote it, or the error)
PLATFORMS = {"instagram_reels": "Instagram Reels", "facebook_reels": "Facebook Reels",
             "youtube_shorts": "YouTube Shorts", "tiktok": "TikTok"}
MOTIONS = {"ken_burns": "Ken Burns (zoom and pan)", "none": "Still"}
FITS = {"crop": "Crop to fill", "blur": "Fit on a blurred background"}
TRANSITIONS = {"crossfade": "Crossfade", "cut": "Cut"}
POSITIONS = {"bottom": "Bottom", "middle": "Middle", "top": "Top"}
TIMINGS = {"voice": "As long as the voice", "per_image": "Seconds per image", "total": "Total seconds"}


def _key(name: str) -> str:
    return f"videos.{name}"


@st.cache_data(max_entries=512, show_spinner=False)
def _thumbnail(key: str, asset_id: int) -> bytes:
    return assets.read_thumbnail(assets.get_asset(asset_id))


def _image_picker() -> list[int]:
    """The images, in order: those handed over from Generate or Assets, or recent library images."""
    handed = st.session_state.get(VIDEO_HANDOFF_KEY)
    if handed and handed != st.session_state.get(_HANDED):  # a new hand-over replaces the picked images
        st.session_state[IMAGES], st.session_state[_HANDED] = list(handed), list(handed)
    recent = [*assets.list_assets(assets.make_filter(kind="image"), page_size=60).items, *recent_clips()]
    options = {stored_id(a): a for a in recent}
    for asset_id in st.session_state.get(IMAGES, []):
        if asset_id not in options:
            try:
                options[asset_id] = assets.get_asset(asset_id)
            except StudioError:
                pass
    st.session_state[IMAGES] = [i for i in st.session_state.get(IMAGES, []) if i in options]
    def label(asset_id: int) -> str:
        asset = options[asset_id]
        return plain(f"#{asset_id} · {asset.prompt[:50] or asset.key.rsplit('/', 1)[-1]}")

    chosen = st.multiselect("Images, in order", list(options), key=IMAGES, format_func=label,
                            placeholder="Pick images (or use 'Make a video' on Generate or Assets)")
    if chosen:
        for column, asset_id in zip(st.columns(min(len(chosen), 8)), chosen[:8], strict=False):
            asset = options[asset_id]
            column.image(_thumbnail(asset.thumbnail_key or asset.key, asset_id), width="stretch")
    return chosen


def _voice_row() -> tuple[str, int]:
    """The voice for this render: the character's own by default (cloned or preset), any other to try."""
    character = current_character()
    with st.expander("Character voice (clone from a clip)"):
        render_character_voice(stored_id(character))
    voices = character_voices(character.id)
    default = voice_of(character.id)
    voices.setdefault(default, default)
    if st.session_state.get(VOICE) not in voices:
        st.session_state[VOICE] = default
    # One wrapping row: the button keeps its label whole, the voice and the rate share what is left.
    with st.container(horizontal=True, vertical_alignment="bottom"):
        voice = st.selectbox("Voice", list(voices), format_func=lambda v: plain(voices.get(v, v)), key=VOICE,
                             width=300)
        rate = st.slider("Rate (words/min)", 80, 400, 165, step=5, key=_key("rate"))
        preview = st.button("Preview", key=_key("preview"), icon=":material/play_arrow:")
    if preview:
        preview_voice(voice, rate)
    return voice, rate


def _look() -> dict[str, Any]:
    # The aspect's labels are long: a row of its own; the others wrap at widths that hold their longest option.
    aspect = st.selectbox("Aspect", list(ASPECT_LABELS), format_func=ASPECT_LABELS.__getitem__, key=_key("aspect"))
    row = st.container(horizontal=True, vertical_alignment="bottom")
    fit = row.selectbox("Fit", list(FITS), format_func=FITS.__getitem__, key=_key("fit"), width=180)
    motion = row.selectbox("Motion", list(MOTIONS), format_func=MOTIONS.__getitem__, key=_key("motion"), width=240)
    transition = row.selectbox("Transition", list(TRANSITIONS), format_func=TRANSITIONS.__getitem__,
                               key=_key("transition"), width=180)
    timing = row.selectbox("Length", list(TIMINGS), key=_key("timing"), format_func=TIMINGS.__getitem__, width=240)
    request: dict[str, Any] = {"aspect": aspect, "fit": fit, "motion": motion, "transition": transition}
    if timing == "per_image":
        request["seconds_per_image"] = row.number_input("Seconds per image", 0.5, 30.0, 3.0, step=0.5,
                                                          key=_key("per_image"))
    elif timing == "total":
        request["total_seconds"] = row.number_input("Total seconds", 1.0, 600.0, 15.0, step=1.0,
                                                      key=_key("total"))
    return request


def _subtitle_style() -> dict[str, Any]:
    default = SubtitleStyle()
    with st.expander("Subtitles"):
        enabled = st.toggle("Burn in subtitles", value=True, key=_key("subs"))
        left, middle, right = st.columns(3)
        size = left.slider("Size (px)", 12, 200, default.size, key=_key("sub_size"))
        words = middle.slider("Max words per line", 1, 12, default.max_words_per_line, key=_key("sub_words"))
        position = right.selectbox("Position", list(POSITIONS), format_func=POSITIONS.__getitem__, key=_key("sub_pos"))
        colour = left.color_picker("Colour", default.colour, key=_key("sub_colour"))
        outline_colour = middle.color_picker("Outline", default.outline_colour, key=_key("sub_outline_colour"))
        outline = right.slider("Outline width", 0, 20, default.outline, key=_key("sub_outline"))
        mode = left.selectbox("Caption style", list(CAPTION_MODE_LABELS), format_func=CAPTION_MODE_LABELS.__getitem__,
                              key=_key("sub_mode"))
        highlight = middle.color_picker("Highlight", default.highlight_colour, key=_key("sub_highlight"),
                                        disabled=mode != "highlight")
        safe_area = right.toggle("Keep clear of the platforms' buttons", value=default.safe_area,
                                 key=_key("sub_safe"), help="captions stay out of the zones the checked platforms' "
                                 "own captions, names and buttons cover (vertical videos)")
    return {"enabled": enabled, "size": size, "max_words_per_line": words, "position": position,
            "colour": colour, "outline_colour": outline_colour, "outline": outline, "mode": mode,
            "highlight_colour": highlight, "safe_area": safe_area}


def _sound() -> dict[str, Any]:
    default = LoudnessTarget()
    with st.expander("Music and loudness"):
        tracks = {a.id: a for a in assets.list_assets(assets.make_filter(kind="audio"), page_size=100).items}
        music = st.selectbox("Background music", [None, *tracks], key=_key("music"),
                             format_func=lambda i: "None" if i is None else plain(tracks[i].key.rsplit("/", 1)[-1]))
        gain = st.slider("Music level (dB)", -40.0, 0.0, -18.0, step=1.0, key=_key("music_gain"),
                         help="before ducking under the voice")
        left, right = st.columns(2)
        lufs = left.number_input("Loudness target (LUFS)", -31.0, -5.0, default.integrated_lufs, step=0.5,
                                 key=_key("lufs"), help="−14 LUFS is what Instagram, YouTube and TikTok play at")
        peak = right.number_input("True-peak limit (dBTP)", -9.0, 0.0, default.true_peak_dbtp, step=0.5,
                                  key=_key("peak"))
    return {"music_asset_id": music, "music_gain_db": gain,
            "loudness": {"integrated_lufs": lufs, "true_peak_dbtp": peak}}


def _write_script() -> None:
    """The button's callback: runs before the page, so the draft can fill the script box."""
    try:
        persona, _character_id = scripts.persona_for(None)
        written = scripts.write_script(topic=st.session_state.get(TOPIC, ""), persona=persona,
                                       seconds=float(st.session_state.get(_key("script_seconds"), 20.0)),
                                       rate_wpm=int(st.session_state.get(_key("rate"), 165)))
        record_calls(written.calls, purpose="script")
    except StudioError as error:
        st.session_state[_WRITTEN] = ("error", str(error))
        return
    st.session_state[SCRIPT] = written.script
    who = "the offline template" if written.writer == "template" else written.writer.removeprefix("llm:")
    note = f"Written by {who}: {written.words} words (about {written.target_words} fit). Edit it before rendering."
    st.session_state[_WRITTEN] = ("info", f"{note} {written.note}".strip())


def _script_writer() -> None:
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.text_input("Topic", key=TOPIC, max_chars=300, placeholder="three things I pack for a beach day")
        st.number_input("Seconds", 3.0, 180.0, 20.0, step=1.0, key=_key("script_seconds"), width=120)
        st.button("Write the script", key=_key("write"), icon=":material/edit_note:", on_click=guard(_write_script),
                  help="in the character's persona, from the LLM when one is configured, else the offline template")
    kind, message = st.session_state.pop(_WRITTEN, ("", ""))
    if kind == "error":
        st.error(literal(message))
    elif kind:
        st.caption(literal(message))


def request_form() -> None:
    images = _image_picker()
    _script_writer()
    st.text_area("Script", key=SCRIPT, height=140, max_chars=5000,
                 placeholder="Three things I always pack for a beach day. First, …")
    voice, rate = _voice_row()
    look = _look()
    animate_panel(images, look["aspect"], images_key=IMAGES)
    subtitles = _subtitle_style()
    sound = _sound()
    platforms = st.multiselect("Check against", list(PLATFORMS), default=["instagram_reels", "youtube_shorts",
                                                                          "tiktok"],
                               format_func=PLATFORMS.__getitem__, key=_key("platforms"))
    if st.button("Render video", type="primary", icon=":material/movie:", key=_key("submit"), width="stretch"):
        try:
            job = videos.submit_video(image_asset_ids=images, script=st.session_state.get(SCRIPT, ""), voice=voice,
                                      rate_wpm=rate, subtitles=subtitles, platforms=platforms, **look, **sound)
        except StudioError as error:
            st.error(literal(error))
            return
        st.session_state[_PAGE] = 1
        st.toast(f"Rendering: job {job.id[:8]}")


def _render_block(job: Job) -> None:
    with st.container(border=True):
        status_badge(job.status)
        st.text(plain(job.payload.get("script", "")[:200]))
        if unfinished_job(job, waiting="waiting for a CPU worker…", cancel_key=f"videos.cancel.{job.id}"):
            return
        result = job.result or {}
        if (video_id := result.get("video_asset_id")) is None:
            return
        video = assets.get_asset(video_id)
        st.video(assets.download_url(video))
        loudness = result.get("loudness", {})
        st.caption(f"{result.get('duration', 0):.1f} s · {video.width}×{video.height} · "
                   f"{loudness.get('integrated_lufs', float('nan')):.1f} LUFS · "
                   f"true peak {loudness.get('true_peak_dbtp', float('nan')):.1f} dBTP")
        st.link_button("Download MP4", assets.download_url(video), icon=":material/download:")
        for platform, problems in (result.get("spec_report") or {}).items():
            name = PLATFORMS.get(platform, platform)
            if problems:  # each problem already names its platform
                st.warning(literal("; ".join(problems)))
            else:
                st.success(f"{name}: meets the specs")


def renders() -> None:
    """Recent renders; refreshes every second while one is still running."""
    live_job_list(lambda page: videos.list_renders(page=page, page_size=5), _render_block, page_key=_PAGE,
                  empty="No videos yet. Pick images, write a script and press Render video.")
