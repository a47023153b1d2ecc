"""A pipeline as people read it: one row per stage (status, time, its jobs as links to the Jobs page, what
it made as thumbnails and links), its warnings and error, and the API's JSON only behind a "Raw JSON"
toggle. Shared by every page that shows a pipeline (Automation)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.automation import demo, pipelines
from core.errors import StudioError
from core.library import assets
from core.models import Asset, Pipeline
from core.training.runs import get_lora
from ui import page_paths
from ui.text import literal, plain
from ui.widgets import status_badge

STAGE_ICONS = {"done": ":material/check_circle:", "running": ":material/progress_activity:",
               "waiting": ":material/schedule:", "failed": ":material/error:", "cancelled": ":material/cancel:"}
KIND_ICONS = {"video": "movie", "audio": "graphic_eq", "image": "image"}
THUMBNAIL_PX = 120  # outputs beside a stage: small, the gallery pages show them large


@st.cache_data(max_entries=256, show_spinner=False)
def _thumbnail(key: str, _asset: Asset) -> bytes:
    # Keyed by the thumbnail's storage key: a job redone writes the same key with the same picture.
    return assets.read_thumbnail(_asset)


def _asset_outputs(asset_ids: list[int]) -> None:
    """Thumbnails of the assets a stage made, then one link to them on the Assets page."""
    with st.container(horizontal=True, gap="small"):
        for asset_id in asset_ids:
            try:
                asset = assets.get_asset(asset_id)
                if asset.thumbnail_key:  # a video may have none: its link below says what it is
                    st.image(_thumbnail(asset.thumbnail_key, asset), width=THUMBNAIL_PX)
                else:
                    st.caption(f":material/{KIND_ICONS.get(asset.kind, 'draft')}: {asset.kind} {asset_id}")
            except StudioError:
                st.caption(f":material/broken_image: asset {asset_id} is gone")
    if asset_ids:
        st.page_link(page_paths.ASSETS, label=f"Open on Assets ({len(asset_ids)})", icon=":material/perm_media:",
                     query_params={"asset": str(asset_ids[0])})


def _outputs(name: str, results: dict[str, Any]) -> None:
    """What one stage made, as links and thumbnails; plain key: value lines for anything else."""
    if "loraId" in results:
        try:
            lora = get_lora(int(results["loraId"]))
            st.page_link(page_paths.TRAINING, label=f"LoRA {plain(lora.name)} · step {lora.step}",
                         icon=":material/model_training:", query_params={"run": lora.job_id})
        except StudioError:
            st.caption(f"LoRA {results['loraId']} (deleted since)")
    if "imageAssetIds" in results:
        _asset_outputs([int(i) for i in results["imageAssetIds"]])
    if results.get("videoAssetId") is not None:
        _asset_outputs([int(results["videoAssetId"])])
    post_ids = [results["postId"]] if results.get("postId") is not None else results.get("scheduledPostIds") or []
    if post_ids:
        st.page_link(page_paths.CALENDAR, label=f"{'Post' if len(post_ids) == 1 else 'Posts'} "
                     f"{', '.join(map(str, post_ids))} on the Calendar",
                     icon=":material/calendar_month:")
    shown = {"loraId", "loraName", "loraStep", "imageAssetIds", "videoAssetId", "postId", "scheduledPostIds",
             "publishJobIds", "summary", "failedWarnings"}
    rest = [f"{key}: {_readable(value)}" for key, value in results.items()
            if key not in shown and value not in (None, [], {})]
    if rest:
        st.caption(literal(" · ".join(rest)))


def _readable(value: Any) -> str:
    """A result value on one line, without Python's or JSON's brackets and quotes."""
    if isinstance(value, dict):
        return ", ".join(f"{key} {_readable(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_readable(item) for item in value)
    return str(value)


def _stage_row(stage: dict[str, Any], seconds: float | None, pipeline: Pipeline) -> None:
    with st.container(border=True):
        with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
            st.markdown(f"{STAGE_ICONS.get(stage['status'], '')} **{literal(stage['name'])}**")
            status_badge(stage["status"])
            if seconds is not None:
                st.caption(f"{seconds:.1f} s")
        with st.container(horizontal=True, gap="small"):
            for job_id in stage["jobIds"]:
                st.page_link(page_paths.JOBS, label=f"job {job_id[:8]}", icon=":material/work_history:",
                             query_params={"job": job_id})
        _outputs(stage["name"], stage["results"])
        for warning in stage["results"].get("failedWarnings", []):
            st.warning(literal(warning))
        if pipeline.error and pipeline.error_stage == stage["name"]:
            st.error(literal(pipeline.error))


def pipeline_stages(pipeline: Pipeline, *, key: str) -> None:
    """The stages as rows, the pipeline's warnings and error, and its JSON on request (``key`` names the toggle)."""
    view = pipelines.pipeline_view(pipeline)
    seconds = {stage.name: stage.seconds for stage in demo.demo_stages(pipeline)}
    for stage in view["stages"]:
        _stage_row(stage, seconds.get(stage["name"]), pipeline)
    named = {stage["name"] for stage in view["stages"]}
    if pipeline.error and pipeline.error_stage not in named:
        st.error(f"{literal(pipeline.error_stage)}: {literal(pipeline.error)}")
    for warning in pipeline.warnings:
        st.warning(literal(warning))
    if st.toggle("Raw JSON", key=key, help="The pipeline as GET /api/pipelines/{id} returns it"):
        st.json(view)
