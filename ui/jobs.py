"""The Jobs page's parts: a form that enqueues a test job, the filters, the live job table and one
job's live detail. Keys start with "jobs."."""

from __future__ import annotations

import json
from dataclasses import dataclass

import streamlit as st

from core.errors import StudioError
from core.jobs import lifecycle as jobs
from core.jobs.kinds import all_specs
from core.models import Job, JobStatus
from core.pagination import Page
from ui.auth import fragment, guard
from ui.feedback import job_action, show_flash
from ui.text import literal, plain
from ui.widgets import live_log, pick, status_badge

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
SELECTED = "jobs.selected"  # the job to open (set by the test-job form and the Assets page's "Open on Jobs")
_ACTION_ERROR = "jobs.action_error"
_LINKED = "jobs.linked"  # the ?job= link this session has applied (applied once, so the filters stay free)


@dataclass(frozen=True)
class JobQuery:
    """What the filters ask for: the list is read again with it on each refresh."""

    statuses: list[str]
    kinds: list[str]
    id_prefix: str | None
    page: int
    page_size: int

    def read(self) -> Page[Job]:
        return jobs.list_jobs(statuses=self.statuses, kinds=self.kinds, id_prefix=self.id_prefix, page=self.page,
                              page_size=self.page_size)


def apply_link() -> None:
    """Call before the filters: a ?job= link (from a pipeline's stage) filters the list to that job and opens it."""
    requested = st.query_params.get("job")
    if requested and requested != st.session_state.get(_LINKED):
        st.session_state[_LINKED] = st.session_state[SELECTED] = requested
        st.session_state["jobs.id"] = requested[:32]


def enqueue_form() -> None:
    with st.expander("Start a test job"):
        kind = st.selectbox("Kind", ["noop", "sleep"], key="jobs.new.kind")
        payload_text = st.text_area("Payload (JSON)",
                                    value='{"seconds": 5, "steps": 10}' if kind == "sleep" else "{}",
                                    key=f"jobs.new.payload.{kind}")  # per kind: a keyed widget ignores a new value=
        if st.button("Enqueue", key="jobs.new.submit"):
            _enqueue(kind, payload_text)


def _enqueue(kind: str, payload_text: str) -> None:
    try:
        job = jobs.create_job(kind, json.loads(payload_text or "{}"))
        st.session_state[SELECTED] = job.id
        st.toast(f"Job {job.id[:8]} queued")
    except json.JSONDecodeError as error:
        st.error(f"The payload is not valid JSON: {literal(error)}")
    except StudioError as error:
        st.error(literal(error))


def job_filters() -> JobQuery:
    filters = st.columns([2, 2, 2, 1])
    statuses = filters[0].multiselect("Status", [s.value for s in JobStatus], key="jobs.status")
    kinds = filters[1].multiselect("Kind", [s.kind for s in all_specs()], key="jobs.kind")
    id_prefix = filters[2].text_input("Job id starts with", key="jobs.id", max_chars=32)
    page_size = filters[3].selectbox("Per page", [25, 50, 100], key="jobs.page_size")
    return JobQuery(statuses=statuses, kinds=kinds, id_prefix=id_prefix or None,
                    page=st.session_state.get("jobs.page", 1), page_size=page_size)


def _job_rows(listed: Page[Job]) -> list[dict[str, object]]:
    return [
        {
            "id": job.id[:8],
            "kind": job.kind,
            "status": job.status,
            "progress": job.progress,
            "stage": job.stage or "",
            "attempts": f"{job.attempts}/{job.max_attempts}",
            "created": jobs.aware(job.created_at),
            "error": plain((job.error or "")[:120]),
        }
        for job in listed.items
    ]


def _job_table(query: JobQuery) -> None:
    """The listed jobs, read again on each refresh so statuses and progress move without a page rerun."""
    st.dataframe(
        _job_rows(query.read()),
        hide_index=True,
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
            "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        },
    )


def job_table(query: JobQuery, listed: Page[Job]) -> None:
    """The table and its pager; ``listed``: the jobs as this run read them."""
    # Refreshed on its own only while a listed job can still change (an idle list costs nothing).
    fragment(run_every=3 if any(job.status in ACTIVE for job in listed.items) else None)(_job_table)(query)
    st.number_input(f"Page (of {listed.pages}) · {listed.total} job(s)", min_value=1, max_value=listed.pages,
                    key="jobs.page")


def job_picker(listed: Page[Job]) -> str:
    return str(pick("Open job", [job.id for job in listed.items], lambda i: f"{i[:8]}", state=SELECTED,
                    key="jobs.open"))


@fragment(run_every=2)
def job_detail(job_id: str) -> None:
    job = jobs.get_job(job_id)
    head = st.columns([3, 1, 1, 1])
    head[0].subheader(f"{job.kind} job {job.id[:8]}")
    with head[1]:
        status_badge(job.status)
    if job.status in ACTIVE:
        head[2].button("Cancel", key="jobs.cancel", on_click=guard(job_action),
                       args=(_ACTION_ERROR, jobs.cancel_job, job.id))
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        head[3].button("Retry", key="jobs.retry", on_click=guard(job_action),
                       args=(_ACTION_ERROR, jobs.retry_job, job.id))
    show_flash(_ACTION_ERROR)
    st.progress(job.progress, text=literal(job.progress_message or job.stage or job.status))
    if job.error:
        st.error(f"Failed at stage '{literal(job.error_stage)}': {literal(job.error)}")
    st.caption(f"Job {job.id} · queue {job.queue} · attempt {job.attempts}/{job.max_attempts} · "
               f"worker {job.worker or '—'}")

    live_log(job_id, key="jobs")
    with st.expander("Payload and result"):
        st.json({"payload": job.payload, "result": job.result, "checkpoint": job.checkpoint})
