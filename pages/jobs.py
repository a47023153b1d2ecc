"""Jobs: every background job, filterable and paginated, with live progress and logs."""

import json
from collections.abc import Callable

import streamlit as st

from core.errors import StudioError
from core.jobs import lifecycle as jobs
from core.jobs.kinds import all_specs
from core.models import JobStatus
from ui.widgets import live_log, status_badge

st.title("Jobs")

with st.expander("Start a test job"):
    kind = st.selectbox("Kind", ["noop", "sleep"], key="jobs.new.kind")
    payload_text = st.text_area("Payload (JSON)", value='{"seconds": 5, "steps": 10}' if kind == "sleep" else "{}",
                                key=f"jobs.new.payload.{kind}")  # per kind: a keyed widget ignores a new value=
    if st.button("Enqueue", key="jobs.new.submit"):
        try:
            job = jobs.create_job(kind, json.loads(payload_text or "{}"))
            st.session_state["jobs.selected"] = job.id
            st.toast(f"Job {job.id[:8]} queued")
        except json.JSONDecodeError as error:
            st.error(f"The payload is not valid JSON: {error}")
        except StudioError as error:
            st.error(str(error))

filters = st.columns([2, 2, 2, 1])
statuses = filters[0].multiselect("Status", [s.value for s in JobStatus], key="jobs.status")
kinds = filters[1].multiselect("Kind", [s.kind for s in all_specs()], key="jobs.kind")
id_prefix = filters[2].text_input("Job id starts with", key="jobs.id", max_chars=32)
page_size = filters[3].selectbox("Per page", [25, 50, 100], key="jobs.page_size")
page_number = st.session_state.get("jobs.page", 1)
result = jobs.list_jobs(statuses=statuses, kinds=kinds, id_prefix=id_prefix or None,
                        page=page_number, page_size=page_size)

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def job_table() -> None:
    """The listed jobs, read again on each refresh so statuses and progress move without a page rerun."""
    current = jobs.list_jobs(statuses=statuses, kinds=kinds, id_prefix=id_prefix or None,
                             page=page_number, page_size=page_size)
    rows = [
        {
            "id": job.id[:8],
            "kind": job.kind,
            "status": job.status,
            "progress": job.progress,
            "stage": job.stage or "",
            "attempts": f"{job.attempts}/{job.max_attempts}",
            "created": jobs.aware(job.created_at),
            "error": (job.error or "")[:120],
        }
        for job in current.items
    ]
    st.dataframe(
        rows,
        hide_index=True,
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
            "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        },
    )


# Refreshed on its own only while a listed job can still change (an idle list costs nothing).
st.fragment(run_every=3 if any(job.status in ACTIVE for job in result.items) else None)(job_table)()
st.number_input(f"Page (of {result.pages}) · {result.total} job(s)", min_value=1, max_value=result.pages,
                key="jobs.page")

if not result.items:
    st.info("No jobs match these filters.")
    st.stop()

ids = [job.id for job in result.items]
selected = st.session_state.get("jobs.selected")
default_index = ids.index(selected) if selected in ids else 0
job_id = st.selectbox("Open job", ids, index=default_index, format_func=lambda i: f"{i[:8]}", key="jobs.open")


def _act(action: Callable[[str], object], job_id: str) -> None:
    try:
        action(job_id)
    except StudioError as error:
        st.session_state["jobs.action_error"] = str(error)


@st.fragment(run_every=2)
def job_detail(job_id: str) -> None:
    job = jobs.get_job(job_id)
    head = st.columns([3, 1, 1, 1])
    head[0].subheader(f"{job.kind} job {job.id[:8]}")
    with head[1]:
        status_badge(job.status)
    if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        head[2].button("Cancel", key="jobs.cancel", on_click=_act, args=(jobs.cancel_job, job.id))
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        head[3].button("Retry", key="jobs.retry", on_click=_act, args=(jobs.retry_job, job.id))
    if message := st.session_state.pop("jobs.action_error", None):
        st.error(message)
    st.progress(job.progress, text=job.progress_message or job.stage or job.status)
    if job.error:
        st.error(f"Failed at stage '{job.error_stage}': {job.error}")
    st.caption(f"Job {job.id} · queue {job.queue} · attempt {job.attempts}/{job.max_attempts} · "
               f"worker {job.worker or '—'}")

    live_log(job_id, key="jobs")
    with st.expander("Payload and result"):
        st.json({"payload": job.payload, "result": job.result, "checkpoint": job.checkpoint})


job_detail(job_id)
