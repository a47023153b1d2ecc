"""The Home page's parts: the demo button with the demo's live progress, and the character at a glance."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import streamlit as st

from core.automation import demo, pipelines
from core.config import get_settings
from core.errors import NotFound, StudioError
from core.jobs.lifecycle import aware
from core.library import assets
from core.models import Asset, JobStatus, LoraModel, Pipeline, Platform
from core.reports.overview import Overview, VideoGlance
from core.training.runs import get_lora
from ui import page_paths
from ui.auth import fragment
from ui.text import code, literal
from ui.widgets import status_badge

DEMO = "home.demo.pipeline"  # the demo this session started
_WATCHING = "home.demo.watching"  # the demo the live view polls until it ends
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
STAGE_ICONS = {"done": ":material/check_circle:", "running": ":material/progress_activity:",
               "waiting": ":material/schedule:", "failed": ":material/error:", "cancelled": ":material/cancel:"}
COLUMNS = 6


# --- the demo -----------------------------------------------------------------------------------------------


def _shown_demo() -> Pipeline | None:
    """This session's demo, else the latest one (so a reload still shows how the last demo went)."""
    pipeline_id = st.session_state.get(DEMO)
    if pipeline_id:
        try:
            return pipelines.get_pipeline(pipeline_id)
        except NotFound:
            st.session_state.pop(DEMO, None)
    return demo.latest_demo()


def demo_section() -> None:
    st.subheader("Run the demo")
    st.caption("Runs the whole chain on 15 procedurally drawn images through the real workers: captions → a tiny "
               "LoRA → 4 images with it → a 9:16 video with voice-over and subtitles → a draft TikTok post on the "
               "calendar. About 20 s on this machine: the models are tiny and random, so the output is noise by "
               "design. Set the model settings to real ones for real results.")
    shown = _shown_demo()
    running = shown is not None and shown.status in ACTIVE
    if st.button("Run the demo", key="home.demo.run", type="primary", icon=":material/play_arrow:",
                 disabled=running, help="A demo is running" if running else None):
        try:
            with st.spinner("Drawing the 15 demo images…"):
                started = demo.start_demo()
        except StudioError as error:
            st.error(literal(error), icon=":material/power_off:")
        else:
            st.session_state[DEMO] = started.id
            st.rerun()  # draw the button disabled and the live view polling
    if shown is not None:
        demo_progress(shown)


def demo_progress(shown: Pipeline) -> None:
    """The demo's stages, refreshed every second on their own (the rest of the page does not rerun)
    until it ends; then the whole page reruns once, so the glance shows what it made."""

    def body() -> None:
        pipeline = pipelines.get_pipeline(shown.id)
        _demo_view(pipeline)
        if pipeline.status not in ACTIVE and st.session_state.get(_WATCHING) == shown.id:
            del st.session_state[_WATCHING]
            st.rerun()

    active = shown.status in ACTIVE
    if active:
        st.session_state[_WATCHING] = shown.id
    fragment(run_every=1 if active else None)(body)()


def _demo_view(pipeline: Pipeline) -> None:
    with st.container(border=True):
        left, right = st.columns([4, 1])
        left.progress(pipeline.progress, text=f"Demo `{pipeline.id[:8]}` · {round(pipeline.progress * 100)} %")
        with right:
            status_badge(pipeline.status)
        for stage in demo.demo_stages(pipeline):
            line = f"{STAGE_ICONS.get(stage.status, '')} **{stage.name}** · {stage.status}"
            if stage.seconds is not None:
                line += f" · {stage.seconds:.1f} s"
            st.markdown(line + (f" · {literal(stage.what)}" if stage.what else ""))
        if pipeline.error:
            st.error(f"{literal(pipeline.error_stage)}: {literal(pipeline.error)}")
            st.page_link(page_paths.AUTOMATION, label="Retry it from the failed stage on Automation",
                         icon=":material/account_tree:")
        if pipeline.status == JobStatus.SUCCEEDED:
            _demo_results(pipeline)


def _demo_results(pipeline: Pipeline) -> None:
    results = pipeline.results
    images = results.get("generation", {}).get("imageAssetIds", [])
    try:
        lora = get_lora(results["training"]["loraId"])
        st.page_link(page_paths.TRAINING, label=f"The LoRA “{literal(lora.name)}” on Training",
                     icon=":material/model_training:",
                     query_params={"run": lora.job_id})
    except (KeyError, NotFound):
        st.caption("Its LoRA was deleted since.")
    if images:
        st.page_link(page_paths.ASSETS, label=f"The {len(images)} images on Assets", icon=":material/perm_media:",
                     query_params={"asset": str(images[0])})
    st.page_link(page_paths.GENERATE, label="Generate more with the LoRA", icon=":material/image:")
    st.page_link(page_paths.VIDEOS, label="The video on Videos", icon=":material/movie:")
    post_id = results.get("post", {}).get("postId")
    st.page_link(page_paths.CALENDAR, label=f"The draft post on the Calendar (post {post_id})",
                 icon=":material/calendar_month:")


# --- the character at a glance --------------------------------------------------------------------------------


@st.cache_data(max_entries=256, show_spinner=False)
def _thumbnail(key: str, size: int, _asset: Asset) -> bytes:
    # Keyed by the thumbnail's storage key and the file's size (a rerun job rewrites the same key).
    return assets.read_thumbnail(_asset)


def _picture(asset: Asset | None, caption: str) -> None:
    if asset is None or not asset.thumbnail_key:
        st.markdown(":material/movie:")
    else:
        try:
            st.image(_thumbnail(asset.thumbnail_key, asset.size_bytes, asset), width="stretch")
        except StudioError:
            st.caption(":material/broken_image: file missing")
    st.caption(caption)


def _strip(title: str, pictures: list[tuple[Asset | None, str]], *, empty: str, page: str, label: str,
           icon: str) -> None:
    """A titled row of thumbnails with captions, then a link to the page that holds them all."""
    st.markdown(title)
    if not pictures:
        st.info(empty)
    for column, (asset, caption) in zip(st.columns(COLUMNS), pictures, strict=False):
        with column:
            _picture(asset, caption)
    st.page_link(page, label=label, icon=icon)


def _video_caption(item: VideoGlance) -> str:
    size = f"{item.video.width}×{item.video.height}" if item.video.width else ""
    return " · ".join(p for p in (f"{item.duration:.1f} s" if item.duration else "", size) if p)


def _lora_line(lora: LoraModel, promoted: LoraModel | None) -> str:
    mark = " · :material/star: **promoted**" if promoted is not None and lora.id == promoted.id else ""
    return f"{literal(lora.name)} · step {lora.step} · {aware(lora.created_at):%d %b %H:%M}{mark}"


def glance(view: Overview) -> None:
    st.subheader(f"{literal(view.character.name)} at a glance")
    if view.trigger_from_latest:
        st.caption(f"Trigger word: {code(view.trigger_word)} (the latest LoRA's: promote one on Training to make it "
                   "the character's and generation's default)")
    else:
        st.caption(f"Trigger word: {code(view.trigger_word)}" if view.trigger_word else
                   "No trigger word yet: set one on a dataset, or promote a LoRA trained on one.")
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Datasets** ({view.dataset_total})")
        if not view.datasets:
            st.info("No dataset yet. Run the demo above, or create one on Datasets.")
        for item in view.datasets:
            st.markdown(f"{literal(item.dataset.name)} · {item.images} images, {item.captioned} captioned")
        st.page_link(page_paths.DATASETS, label="Datasets", icon=":material/photo_library:")
    with right:
        st.markdown(f"**LoRA versions** ({view.lora_total})")
        if not view.loras:
            st.info("No LoRA yet. Train one on Training.")
        for lora in view.loras:
            st.markdown(_lora_line(lora, view.promoted))
        if view.promoted is not None and all(lora.id != view.promoted.id for lora in view.loras):
            st.markdown(_lora_line(view.promoted, view.promoted))
        if view.loras and view.promoted is None:
            st.caption("None promoted: promote one on Training to make it generation's default.")
        st.page_link(page_paths.TRAINING, label="Training", icon=":material/model_training:")

    _strip(f"**Recent images** ({view.image_total})", [(image, literal(image.prompt[:60])) for image in view.images],
           empty="No images yet. Make some on Generate.", page=page_paths.ASSETS, label="Assets",
           icon=":material/perm_media:")
    _strip(f"**Recent videos** ({view.video_total})", [(item.poster, _video_caption(item)) for item in view.videos],
           empty="No videos yet. Make one on Videos.", page=page_paths.VIDEOS, label="Videos", icon=":material/movie:")

    left, right = st.columns(2)
    with left:
        _next_posts(view)
    with right:
        _work(view)


def _next_posts(view: Overview) -> None:
    st.markdown("**Next posts**")
    if not view.upcoming:
        st.info("Nothing scheduled. Drafts wait on the Calendar: plan posts or produce content for a slot there.")
    zone = ZoneInfo(get_settings().timezone)
    for post in view.upcoming:
        when = aware(post.scheduled_at).astimezone(zone)
        st.write(f"{when:%a %d %b %H:%M} · {Platform(post.platform).label} · {literal(post.caption[:60])}")
    st.page_link(page_paths.CALENDAR, label="Calendar", icon=":material/calendar_month:")


def _work(view: Overview) -> None:
    st.markdown(f"**Running now** · {view.running_total} running, {view.queued_total} queued")
    if not view.running_jobs and not view.active_pipelines:
        st.info("No pipeline running, no job running. n8n, the Automation page or the demo start them.")
    for job in view.running_jobs:
        activity = literal(job.progress_message or job.stage or "")
        st.progress(job.progress, text=f"{job.kind} `{job.id[:8]}` · {activity}")
    for pipeline in view.active_pipelines:
        label = f"{pipeline.kind} `{pipeline.id[:8]}` · {pipeline.stage or pipeline.status}"
        st.progress(pipeline.progress, text=label)
    left, right = st.columns(2)
    with left:
        st.page_link(page_paths.JOBS, label="Jobs", icon=":material/work_history:")
    with right:
        st.page_link(page_paths.AUTOMATION, label="Automation", icon=":material/account_tree:")
