"""The Runs section: the list of training runs, and one run's live view (loss chart, sample grid,
checkpoints with download and promote, log, settings)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.characters import likeness
from core.datasets.datasets import get_dataset
from core.datasets.images import format_size
from core.errors import NotFound
from core.jobs.lifecycle import aware, cancel_job, retry_job
from core.library import assets
from core.loras import files as lora_files
from core.loras import kohya
from core.models import Asset, Job, JobStatus, LoraModel
from core.training import runs as training
from core.training import views as training_views
from core.training.configs import get_config
from ui import page_paths
from ui.auth import fragment, guard
from ui.feedback import job_action, run_action, show_flash
from ui.text import literal, plain
from ui.training.choices import clamp_page
from ui.training.navigation import FLASH, LIVE_FLASH, RUN, link_run
from ui.widgets import live_log, pick, status_badge

RUN_TABS = ("Loss", "Samples", "Checkpoints", "Log", "Settings")
SAMPLE_COLUMNS = 6  # sample steps per row of the grid (and the default: the newest ones)
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def runs_section() -> None:
    show_flash(FLASH)
    with st.expander("All runs", expanded=RUN not in st.session_state):
        columns = st.columns([4, 1])
        statuses = columns[0].multiselect("Status", [s.value for s in JobStatus], key="training.runs.status")
        page_size = columns[1].selectbox("Per page", [10, 25, 50], key="training.runs.page_size")
        page = training.list_runs(statuses=statuses, page=st.session_state.get("training.runs.page", 1),
                                  page_size=page_size)
        if clamp_page("training.runs.page", page.pages):
            page = training.list_runs(statuses=statuses, page=page.pages, page_size=page_size)
        st.dataframe([{
            "name": plain(job.payload.get("name") or job.id[:8]), "status": job.status, "progress": job.progress,
            "final loss": (job.result or {}).get("final_loss"), "created": aware(job.created_at),
        } for job in page.items], hide_index=True, column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
            "final loss": st.column_config.NumberColumn("final loss", format="%.4f"),
            "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm"),
        })
        st.number_input(f"Page (of {page.pages}) · {page.total} run(s)", 1, page.pages, key="training.runs.page")
    runs = {job.id: job for job in page.items}
    wanted = st.session_state.get(RUN)
    if wanted and wanted not in runs:
        try:
            runs = {wanted: training.get_run(wanted), **runs}
        except NotFound:
            st.warning(f"Run {wanted} does not exist (any more).")
            st.session_state.pop(RUN, None)
    if not runs:
        st.info("No training runs yet: start one in New run.")
        return
    run_id = pick("Open run", list(runs), lambda i: plain(f"{runs[i].payload.get('name') or i[:8]} ({runs[i].status})"),
                   state=RUN, key="training.runs.open")
    link_run(run_id)
    run_view(run_id)


def run_view(job_id: str) -> None:
    """The run's live view; it refreshes every 2 s only while the run is queued or running."""
    job = training.get_run(job_id)
    active = job.status in ACTIVE
    fragment(run_every=2 if active else None)(_live_run)(job_id, active)


def _live_run(job_id: str, was_active: bool) -> None:
    job = training.get_run(job_id)
    if was_active != (job.status in ACTIVE):
        st.rerun()  # the whole page, so the refresh timer is set up again (or not) for the new status
    head = st.columns([6, 1, 1])
    head[0].subheader(literal(job.payload.get("name") or f"Run {job.id[:8]}"))
    with head[1]:
        status_badge(job.status)
    if job.status in ACTIVE:
        head[2].button("Cancel", key="training.run.cancel", on_click=guard(job_action),
                       args=(LIVE_FLASH, cancel_job, job.id))
    elif job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        head[2].button("Retry", key="training.run.retry", on_click=guard(job_action),
                       args=(LIVE_FLASH, retry_job, job.id))
    show_flash(LIVE_FLASH, toast=True)
    st.progress(job.progress, text=literal(job.progress_message or job.stage or job.status))
    if job.error:
        st.error(f"Failed at stage '{literal(job.error_stage)}': {literal(job.error)}")
    if job.result:
        _result_metrics(job.result)
    # Stateful tabs: only the open one is drawn (no sample images read every 2 s while the chart is
    # shown) and the choice survives the page rerun that ends the live refresh.
    tabs = dict(zip(RUN_TABS, st.tabs(RUN_TABS, key="training.run.tab", on_change="rerun"), strict=True))
    with tabs["Loss"]:
        if tabs["Loss"].open:
            steps = likeness.run_likeness(job_id)
            if steps:  # likeness per step beside the loss, and the checkpoint it recommends
                _recommendation(job, likeness.recommend_checkpoint(job_id))
                left, right = st.columns(2)
                with left:
                    _loss_chart(job_id)
                with right:
                    st.plotly_chart(likeness_figure(steps, likeness.threshold_of(job.character_id)),
                                    key="training.run.likeness")
            else:
                _loss_chart(job_id)
    with tabs["Samples"]:
        if tabs["Samples"].open:
            _sample_grid(job)
    with tabs["Checkpoints"]:
        if tabs["Checkpoints"].open:
            _checkpoints(job)
    with tabs["Log"]:
        if tabs["Log"].open:
            live_log(job_id, key="training.run", tail=40)
            st.page_link(page_paths.JOBS, label="Full log on the Jobs page", icon=":material/work_history:")
    with tabs["Settings"]:
        if tabs["Settings"].open:
            st.caption(f"Dataset {literal(_name_of(get_dataset, job.payload.get('dataset_id')))} · "
                       f"config {literal(_name_of(get_config, job.payload.get('config_id')))} · job {job.id}")
            st.json(job.payload.get("params") or {}, expanded=False)


def _name_of(getter: Callable[[Any], Any], item_id: Any) -> str:
    """A lineage name for display; the dataset or config may have been deleted since the run."""
    try:
        return repr(getter(item_id).name) if item_id else "—"
    except NotFound:
        return f"#{item_id} (deleted)"


def _result_metrics(result: dict[str, Any]) -> None:
    figures = st.columns(5)
    if (loss := result.get("final_loss")) is not None:
        figures[0].metric("Final loss", f"{loss:.4f}")
    if result.get("eval_loss_start") is not None and result.get("eval_loss_end") is not None:
        figures[1].metric("Eval loss", f"{result['eval_loss_end']:.4f}",
                          delta=f"{result['eval_loss_end'] - result['eval_loss_start']:+.4f}", delta_color="inverse")
    if result.get("steps"):
        figures[2].metric("Steps", f"{result['steps']:,}")
    if result.get("steps_per_second"):
        figures[3].metric("Steps/s", f"{result['steps_per_second']:.2f}")
    if result.get("seconds"):
        figures[4].metric("Duration", training_views.format_duration(result["seconds"]),
                          help=f"device: {result.get('device', '?')}")


def loss_figure(series: training.MetricSeries, smoothing: float) -> go.Figure:
    """Raw loss (faint), its EMA, and the learning rate on a second axis."""
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(go.Scatter(x=series.steps, y=series.loss, name="loss", mode="lines", opacity=0.35,
                                line={"width": 1}), secondary_y=False)
    figure.add_trace(go.Scatter(x=series.steps, y=training_views.ema(series.loss, smoothing),
                                name=f"loss (EMA {smoothing:.2f})", mode="lines", line={"width": 2}),
                     secondary_y=False)
    figure.add_trace(go.Scatter(x=series.steps, y=series.lr, name="learning rate", mode="lines",
                                line={"dash": "dot", "width": 1}), secondary_y=True)
    figure.update_xaxes(title_text="step")
    figure.update_yaxes(title_text="loss", secondary_y=False, rangemode="nonnegative")  # a loss is never below 0
    # From zero: a constant learning rate would otherwise get an axis of meaningless (even negative) ticks.
    top = max(series.lr, default=0.0) * 1.1 or 1.0
    figure.update_yaxes(title_text="learning rate", secondary_y=True, tickformat=".1e", showgrid=False,
                        range=[0, top])
    figure.update_layout(height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         legend={"orientation": "h", "y": 1.12})
    return figure


def likeness_figure(steps: list[likeness.StepLikeness], threshold: float) -> go.Figure:
    """Mean face distance of each sampled step's samples to the fingerprint (lower = more alike), the
    nearest training photo's distance (very low = the LoRA copies a photo) and the same-person threshold."""
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[s.step for s in steps], y=[s.mean_distance for s in steps], mode="lines+markers",
                                name="face distance to the character",
                                text=[", ".join(s.warnings) for s in steps], hovertemplate="%{y:.3f} %{text}"))
    figure.add_trace(go.Scatter(x=[s.step for s in steps],
                                y=[s.nearest_training["distance"] if s.nearest_training else None for s in steps],
                                mode="lines", line={"dash": "dot", "width": 1}, name="nearest training photo"))
    figure.add_hline(y=threshold, line={"dash": "dash", "width": 1}, annotation_text="same person below")
    figure.update_xaxes(title_text="step")
    figure.update_yaxes(title_text="face distance (lower = more alike)", rangemode="nonnegative")
    figure.update_layout(height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         legend={"orientation": "h", "y": 1.12})
    return figure


def _recommendation(job: Job, recommendation: likeness.Recommendation) -> None:
    if recommendation.lora_id is None:
        st.info(f"No recommended checkpoint: {literal(recommendation.reason)}.")
        return
    nearest = recommendation.nearest_training_distance
    columns = st.columns([5, 1], vertical_alignment="center")
    columns[0].success(
        f"Recommended checkpoint: step {recommendation.step} — {literal(recommendation.reason)}"
        + (f"; nearest training photo at face distance {nearest:.2f}" if nearest is not None else ""),
        icon=":material/recommend:")
    columns[1].button("Promote it", key="training.run.promote_recommended", on_click=guard(_promote),
                      args=(recommendation.lora_id,), type="primary",
                      help="Make the recommended checkpoint the LoRA generation uses by default.")


def _loss_chart(job_id: str) -> None:
    series = training.metric_series(job_id, max_points=1_000)
    if not series.steps:
        st.info("No steps recorded yet.")
        return
    smoothing = st.slider("Smoothing", 0.0, 0.99, 0.9, 0.01, key="training.run.smoothing")
    st.plotly_chart(loss_figure(series, smoothing), key="training.run.chart")
    if series.bucket > 1:
        st.caption(f"Each point averages {series.bucket} steps.")


@st.cache_data(max_entries=512, show_spinner=False)
def _sample_png(key: str, size: int, _asset: Asset) -> bytes:
    # Keyed by storage key and size: a sample is rewritten only when a resumed run redoes its step.
    return assets.read_asset(_asset)


def _sample_grid(job: Job) -> None:
    show_all = st.toggle("All steps", key="training.run.samples_all",
                         help=f"Otherwise the last {SAMPLE_COLUMNS} sample steps.")
    grid = training.sample_grid(job.id, last_steps=None if show_all else SAMPLE_COLUMNS)
    if not grid.steps:
        every = training.run_params(job).sample_every
        st.info(f"No samples yet (every {every} steps)." if every else "This run renders no samples.")
        return
    # Rows of a fixed number of step columns, so images keep one size however many steps there are.
    for start in range(0, len(grid.steps), SAMPLE_COLUMNS):
        steps = grid.steps[start:start + SAMPLE_COLUMNS]
        for prompt_index, prompt in enumerate(grid.prompts):
            row = st.columns([2] + [1] * SAMPLE_COLUMNS)
            row[0].text(plain(prompt))  # st.text: prompts are user text, never markup
            for column, step in zip(row[1:], steps, strict=False):
                asset = grid.cell(prompt_index, step)
                if asset is None:
                    column.caption(f"step {step}: —")
                else:
                    column.image(_sample_png(asset.key, asset.size_bytes, asset), caption=f"step {step}",
                                 width="stretch")


def _promoted(lora_id: int) -> str:
    lora = training.promote_lora(lora_id)
    return f"Step {lora.step} is now the LoRA generation uses by default."


def _promote(lora_id: int) -> None:
    run_action(LIVE_FLASH, lambda: _promoted(lora_id))


def _file_name(job: Job, lora: LoraModel) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", job.payload.get("name") or "").strip("-.")[:80] or job.id[:8]
    return f"{stem}-step-{lora.step}.safetensors"


def _checkpoints(job: Job) -> None:
    page = training.list_loras(job_id=job.id, page=st.session_state.get("training.run.ckpt_page", 1), page_size=10)
    if not page.items:
        st.info(f"No checkpoints yet (every {training.run_params(job).checkpoint_every} steps).")
        return
    recommended = likeness.recommend_checkpoint(job.id).lora_id
    current = training.promoted_lora(job.character_id)
    if current is not None:
        st.caption(f"Generation uses {literal(repr(current.name))} by default.")
    widths = [1, 1, 1, 1.5, 2, 2.5, 2]  # the kohya button's label fits a 1280 px window
    for column, title in zip(st.columns(widths), ("step", "loss", "size", "", "", "", ""), strict=True):
        column.caption(title)
    for lora in page.items:
        row = st.columns(widths, vertical_alignment="center")
        row[0].text(str(lora.step))
        row[1].text("—" if lora.loss is None else f"{lora.loss:.4f}")
        row[2].text(format_size(lora.size_bytes))
        with row[3]:
            if lora.final:
                st.badge("final", color="blue")
            if lora.promoted:
                st.badge("promoted", color="green", icon=":material/star:")
            if lora.id == recommended:
                st.badge("recommended", color="violet", icon=":material/recommend:")
        # A callable: the weights are read from storage only when the button is clicked.
        row[4].download_button("Download", functools.partial(training.read_lora_weights, lora),
                               file_name=_file_name(job, lora), mime="application/octet-stream",
                               key=f"training.run.download.{lora.id}", on_click="ignore",
                               icon=":material/download:", help="diffusers format (the studio's own)")
        # ComfyUI, A1111/Forge, kohya sd-scripts and Civitai read the kohya format, not diffusers'.
        dit = lora.family in lora_files.DIT_FAMILIES
        row[5].download_button("kohya / ComfyUI" if dit else "kohya / A1111",
                               functools.partial(lora_files.kohya_bytes, lora),
                               file_name=kohya.file_name(_file_name(job, lora)), mime="application/octet-stream",
                               key=f"training.run.download_kohya.{lora.id}", on_click="ignore",
                               icon=":material/download:",
                               help="For ComfyUI and kohya-style tools" if dit
                               else "For ComfyUI, A1111, Forge and kohya sd-scripts")
        row[6].button("Promoted" if lora.promoted else "Promote", key=f"training.run.promote.{lora.id}",
                      disabled=lora.promoted, on_click=guard(_promote), args=(lora.id,),
                      help="Make this checkpoint the LoRA generation uses by default.")
    if page.pages > 1:
        st.number_input(f"Page (of {page.pages})", 1, page.pages, key="training.run.ckpt_page")
