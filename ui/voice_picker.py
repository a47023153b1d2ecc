"""A character's voice, as one self-contained block: the voice it speaks with by default, a reference
clip to clone (uploaded, checked, stored), the choice among cloned and preset voices, and a preview.

Mounted on the Videos page (and meant for the Characters page): ``render_character_voice(character_id)``.
Keys start with "voice." and the character id, so two blocks never share state.
"""

from __future__ import annotations

import time

import streamlit as st

from core.characters.characters import get_character, set_voice, voice_of
from core.errors import StudioError
from core.jobs.lifecycle import get_job
from core.models import JobStatus
from core.video import requests as videos
from core.video.voice_clips import MAX_SECONDS, MIN_SECONDS, list_reference_clips, save_reference_clip
from core.video.voices import Voice, list_voices, validate_voice
from ui.text import literal, plain

CLIP_TYPES = ["wav", "mp3", "m4a", "ogg", "flac", "webm"]


def character_voices(character_id: int | None) -> dict[str, str]:
    """Voice id → label: the character's cloned voices first, then every preset voice."""
    voices: dict[str, str] = {}
    if character_id is not None:
        for clip in list_reference_clips(character_id=character_id, page_size=20).items:
            name = str((clip.meta or {}).get("filename") or f"clip #{clip.id}")
            voices[f"csm:{clip.id}"] = f"Cloned · {name} ({(clip.meta or {}).get('duration', 0):.0f} s)"
    voices.update({voice.id: voice.label for voice in list_voices()})
    return voices


def preview_voice(voice: str, rate: int) -> None:
    """Speak a short sample with ``voice`` (a voice-preview job) and play it."""
    try:
        job = videos.submit_voice_preview(voice=voice, rate_wpm=rate)
    except StudioError as error:
        st.error(literal(error))
        return
    with st.spinner("Speaking…"):
        deadline = time.monotonic() + 30
        while (job := get_job(job.id)).status in (JobStatus.QUEUED, JobStatus.RUNNING) and time.monotonic() < deadline:
            time.sleep(0.2)
    if job.status == JobStatus.SUCCEEDED:
        st.audio(videos.read_preview(job.id), format="audio/wav")
    else:
        st.warning(literal(job.error or "The preview did not finish in 30 s: is a CPU worker running?"))


def _label(voice_id: str, voices: dict[str, str]) -> str:
    if voice_id in voices:
        return voices[voice_id]
    try:
        voice: Voice = validate_voice(voice_id)
    except StudioError:
        return voice_id
    return voice.label


def _upload(character_id: int, key: str) -> None:
    upload = st.file_uploader(f"Reference clip to clone ({MIN_SECONDS:g}–{MAX_SECONDS:g} s of clear speech)",
                              type=CLIP_TYPES, key=f"{key}.clip")
    transcript = st.text_input("What the clip says (optional, helps the cloning)", max_chars=500,
                               key=f"{key}.transcript")
    clone = st.button("Clone this voice", key=f"{key}.clone", icon=":material/record_voice_over:",
                      disabled=upload is None)
    if clone and upload is not None:
        try:
            clip = save_reference_clip(data=upload.getvalue(), filename=upload.name, character_id=character_id,
                                       transcript=transcript)
            set_voice(character_id=character_id, voice=f"csm:{clip.id}")
        except StudioError as error:
            st.error(literal(error))
            return
        st.success(literal(f"Cloned from {upload.name}: it is now the character's voice."))


def render_character_voice(character_id: int) -> None:
    """The block: current voice, choose another (cloned or preset), clone from a clip, preview."""
    key = f"voice.{character_id}"
    character = get_character(character_id)
    voices = character_voices(character_id)
    current = voice_of(character_id)
    with st.container(border=True):
        st.markdown("**Voice**")
        st.caption(literal(f"{character.name} speaks with: {_label(current, voices)}"))
        options = list(dict.fromkeys([current, *voices]))
        with st.container(horizontal=True, vertical_alignment="bottom"):
            chosen = st.selectbox("Voice", options, index=0, key=f"{key}.choice", width=320,
                                  format_func=lambda v: plain(_label(v, voices)))
            use = st.button("Use as the character's voice", key=f"{key}.use", disabled=chosen == current)
            listen = st.button("Preview", key=f"{key}.preview", icon=":material/play_arrow:")
        if use:
            try:
                set_voice(character_id=character_id, voice=chosen)
            except StudioError as error:
                st.error(literal(error))
            else:
                st.rerun()
        if listen:
            preview_voice(chosen, 165)
        _upload(character_id, key)
