"""The Videos page's "animate these images": each picked still becomes a short clip (a ``motion`` job on
the gpu queue), with live progress and cancel; a finished clip joins the video's timeline. Keys start
with "videos.motion."."""

from __future__ import annotations

import functools
from typing import Any

import streamlit as st

from core.errors import StudioError
from core.library import assets
from core.models import Asset, AssetKind, Job
from core.video import motion
from ui.auth import guard
from ui.text import literal, plain
from ui.widgets import live_job_list, status_badge, unfinished_job

_PAGE = "videos.motion.page"
RESOLUTIONS = {480: "480p (faster)", 720: "720p (Wan 2.2 TI2V-5B's own)"}


def _key(name: str) -> str:
    return f"videos.motion.{name}"


def recent_clips(limit: int = 30) -> list[Asset]:
    """Finished motion clips, newest first (offered beside the images of the timeline)."""
    page = assets.list_assets(assets.make_filter(kind="video"), page_size=limit * 2)
    return [a for a in page.items if a.source == assets.AssetSource.MOTION][:limit]


def _settings() -> dict[str, Any]:
    prompt = st.text_input("Motion prompt", key=_key("prompt"), max_chars=2000,
                           placeholder="she turns to the camera and smiles, hair moving in the wind")
    row = st.container(horizontal=True, vertical_alignment="bottom")
    seconds = row.number_input("Seconds", 1.0, 10.0, 3.0, step=0.5, key=_key("seconds"), width=120)
    fps = row.number_input("FPS", 8, 30, 24, key=_key("fps"), width=100)
    resolution = row.selectbox("Resolution", list(RESOLUTIONS), index=1, format_func=RESOLUTIONS.__getitem__,
                               key=_key("resolution"), width=240)
    steps = row.number_input("Steps", 1, 100, 30, key=_key("steps"), width=100)
    seed = row.number_input("Seed", 0, 2**32 - 1, value=None, placeholder="random", key=_key("seed"), width=140)
    return {"prompt": prompt, "seconds": seconds, "fps": int(fps), "resolution": resolution, "steps": int(steps),
            "seed": None if seed is None else int(seed)}


def animate_panel(picked: list[int], aspect: str, *, images_key: str) -> None:
    """The picked stills → one clip each, in the video's aspect; the clip jobs below, live. "Use in the
    video" adds a finished clip to the picker under ``images_key``."""
    stills = [i for i in picked if _is_image(i)]
    with st.expander(f"Animate these images ({len(stills)} picked) · image-to-video"):
        request = _settings()
        if st.button("Animate these images", key=_key("submit"), icon=":material/animation:",
                     disabled=not stills, help="one clip per picked image, in the video's aspect"):
            try:
                made = motion.submit_animations(stills, aspect=aspect, **request)
            except StudioError as error:
                st.error(literal(error))
            else:
                st.session_state[_PAGE] = 1
                st.toast(f"Animating {len(made)} image(s) on the GPU queue")
        live_job_list(lambda page: motion.list_motions(page=page, page_size=4),
                      functools.partial(_motion_block, images_key=images_key), page_key=_PAGE,
                      empty="No clips yet: pick images above, describe the motion and press Animate.")


def _is_image(asset_id: int) -> bool:
    try:
        return assets.get_asset(asset_id).kind == AssetKind.IMAGE
    except StudioError:
        return False


def _use_clip(asset_id: int, images_key: str) -> None:
    chosen = list(st.session_state.get(images_key, []))
    if asset_id not in chosen:
        st.session_state[images_key] = [*chosen, asset_id]


def _motion_block(job: Job, *, images_key: str) -> None:
    with st.container(border=True):
        status_badge(job.status)
        st.text(plain(f"image #{job.payload.get('source_asset_id')} · {job.payload.get('prompt', '')[:120]}"))
        if unfinished_job(job, waiting="waiting for a GPU worker…", cancel_key=f"videos.motion.cancel.{job.id}"):
            return
        clip_id = (job.result or {}).get("clip_asset_id")
        if clip_id is None:
            return
        clip = assets.get_asset(clip_id)
        st.video(assets.download_url(clip))
        st.caption(f"clip #{clip_id} · {clip.width}×{clip.height} · {clip.meta.get('frames')} frames at "
                   f"{clip.meta.get('fps')} fps")
        st.button("Use in the video", key=f"videos.motion.use.{job.id}", on_click=guard(_use_clip),
                  args=(clip_id, images_key), icon=":material/add:")
