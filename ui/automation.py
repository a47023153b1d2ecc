"""The Automation page's parts: how n8n reaches the studio, a form that starts a LoRA pipeline, and the
pipelines list (live while one runs) with cancel and retry."""

from __future__ import annotations

import streamlit as st

from core.automation import pipelines
from core.config import get_settings
from core.datasets.datasets import list_datasets
from core.errors import StudioError
from core.models import JobStatus, Pipeline
from ui.auth import fragment
from ui.pipelines import pipeline_stages
from ui.text import literal, plain
from ui.widgets import status_badge

PAGE = "automation.page"
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def connection_help() -> None:
    settings = get_settings()
    base = settings.public_url.rstrip("/")
    with st.expander("Connecting n8n", icon=":material/cable:"):
        st.markdown(
            "Import the workflows in `n8n/` (see `n8n/README.md`), create a **Header Auth** credential named "
            "`Authorization` with the value `Bearer <STUDIO_API_TOKEN>`, and set `STUDIO_URL` for n8n to:")
        st.code(base, language=None)
        st.markdown("Routes: `POST /api/pipelines/lora`, `POST /api/pipelines/content`, `GET /api/pipelines/{id}`, "
                    "`GET /api/pipelines`, `POST /api/pipelines/{id}/cancel`, `POST /api/pipelines/{id}/retry`.")
        signed = "required" if settings.webhook_require_signature else (
            "checked when sent" if settings.webhook_secret.get_secret_value() else "off (no STUDIO_WEBHOOK_SECRET)")
        st.caption(f"HMAC signatures: {signed} · at most {settings.pipelines_max_running} pipelines run at once")


def start_form() -> None:
    """Start a LoRA pipeline from the page (what n8n's lora-pipeline workflow sends)."""
    datasets = {d.id: d.name for d in list_datasets(page_size=200).items if d.image_count}
    with st.expander("Start a LoRA pipeline", icon=":material/play_circle:"):
        if not datasets:
            st.info("Upload a dataset first (Datasets page).")
            return
        with st.form("automation.start"):
            dataset_id = st.selectbox("Dataset", list(datasets), format_func=lambda i: plain(datasets[i]),
                                      key="automation.dataset")
            name = st.text_input("Training name", value="pipeline run", key="automation.name")
            prompts = st.text_area("Test prompts (one per line, 1–10)", value="portrait on a beach\nin a forest",
                                   key="automation.prompts")
            video = st.checkbox("Make a video from the images", value=True, key="automation.video")
            dry_run = st.checkbox("Dry run (the tiny models: seconds, not hours)", value=True, key="automation.dry_run")
            priority = st.slider("Priority", 1, 10, 5, key="automation.priority")
            submitted = st.form_submit_button("Start", type="primary", key="automation.submit")
        if submitted:
            body = {"datasetId": dataset_id, "trainingName": name, "generateVideo": video, "dryRun": dry_run,
                    "testPrompts": [line for line in prompts.splitlines() if line.strip()], "priority": priority}
            try:
                pipeline, _ = pipelines.create_pipeline("lora", body)
            except StudioError as error:
                st.error(literal(error))
            else:
                st.success(f"Pipeline {pipeline.id[:8]} is {pipeline.status}.")


def _actions(pipeline: Pipeline) -> None:
    try:
        if pipeline.status in ACTIVE and st.button("Cancel", key=f"automation.cancel.{pipeline.id}"):
            pipelines.cancel_pipeline(pipeline.id)
            st.rerun()
        if pipeline.status in (JobStatus.FAILED, JobStatus.CANCELLED) and st.button(
                "Retry from the failed stage", key=f"automation.retry.{pipeline.id}"):
            pipelines.retry_pipeline(pipeline.id)
            st.rerun()
    except StudioError as error:
        st.error(literal(error))


def _pipeline(pipeline: Pipeline, *, newest: bool) -> None:
    with st.container(border=True):
        with st.container(horizontal=True, vertical_alignment="center"):
            st.markdown(f"**{pipeline.kind}** `{pipeline.id[:8]}`" + (" · dry run" if pipeline.dry_run else ""))
            status_badge(pipeline.status)
            _actions(pipeline)
        st.progress(pipeline.progress, text=f"{round(pipeline.progress * 100)} %"
                    + (f" · {literal(pipeline.stage)}" if pipeline.stage and pipeline.status in ACTIVE else ""))
        # The newest and any unfinished or failed one open; older successes fold away to keep the list short.
        with st.expander("Stages", expanded=newest or pipeline.status != JobStatus.SUCCEEDED):
            pipeline_stages(pipeline, key=f"automation.raw.{pipeline.id}")


def pipeline_list() -> None:
    """The newest pipelines; refreshes every two seconds while one of them is queued or running."""

    def body() -> None:
        page = pipelines.list_pipelines(page=st.session_state.get(PAGE, 1), page_size=10)
        if not page.items:
            st.info("No pipelines yet. Start one above, from n8n, or with `POST /api/pipelines/lora`.")
        for index, pipeline in enumerate(page.items):
            _pipeline(pipeline, newest=index == 0)
        if page.pages > 1:
            st.number_input(f"Page (of {page.pages})", 1, page.pages, key=PAGE)

    shown = pipelines.list_pipelines(page=st.session_state.get(PAGE, 1), page_size=10).items
    fragment(run_every=2 if any(p.status in ACTIVE for p in shown) else None)(body)()
