"""Small reusable widgets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

import streamlit as st

from core.jobs import logs as joblogs
from core.jobs.lifecycle import aware, cancel_job
from core.models import Job, JobStatus
from core.pagination import Page
from ui import page_paths
from ui.auth import fragment, guard
from ui.text import literal, plain

# The colours st.badge accepts.
BadgeColour = Literal["red", "orange", "yellow", "blue", "green", "violet", "gray", "grey", "primary"]

STATUS_COLOURS: dict[str, BadgeColour] = {
    "queued": "gray",
    "running": "blue",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "orange",
}


class _Stored(Protocol):
    id: int | None


def stored_id(row: _Stored) -> int:
    """The id of a row read from the database: SQLModel types it ``int | None`` for rows not saved yet."""
    if row.id is None:
        raise ValueError(f"{type(row).__name__} has no id: it was never saved")
    return row.id


def pick(label: str, options: list[Any], labels: Callable[[Any], str], *, state: str, key: str) -> Any:
    """A selectbox that follows ``state`` (which other code may change) and writes the user's choice back.

    A keyed selectbox keeps its own value across reruns and ignores ``index=``: code that opens something
    (a dataset just created, a job just queued) must set ``state``, and this makes the box show it."""
    if st.session_state.get(state) in options:
        st.session_state[key] = st.session_state[state]

    def remember() -> None:
        st.session_state[state] = st.session_state[key]

    chosen = st.selectbox(label, options, format_func=labels, key=key, on_change=guard(remember))
    st.session_state[state] = chosen
    return chosen


def status_badge(status: str) -> None:
    st.badge(status, color=STATUS_COLOURS.get(status, "gray"))


def coming_soon(title: str, issue: int, what: list[str]) -> None:
    """A page whose capability lands with a later issue: says what is coming, shows no fake data."""
    st.title(title)
    st.info(f"This part of the studio arrives with issue #{issue}. Nothing here is simulated.")
    st.markdown("\n".join(f"- {line}" for line in what))


# Images handed to the video page ("make a video from selected"): a list of asset ids.
VIDEO_HANDOFF_KEY = "videos.source_asset_ids"


def hand_to_video_page(asset_ids: list[int]) -> None:
    st.session_state[VIDEO_HANDOFF_KEY] = list(asset_ids)
    st.switch_page(page_paths.VIDEOS)


def unfinished_job(job: Job, *, waiting: str, cancel_key: str) -> bool:
    """A queued or running job's progress and Cancel button, or a failed job's error; True when one was shown
    (the caller then has no result to draw)."""
    if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        st.progress(job.progress, text=literal(job.progress_message or waiting))
        if st.button("Cancel", key=cancel_key):
            cancel_job(job.id)
        return True
    if job.status == JobStatus.FAILED:
        st.error(literal(job.error or "failed"))
        return True
    return False


def live_job_list(list_page: Callable[[int], Page[Job]], render_job: Callable[[Job], None], *, page_key: str,
                  empty: str, header: Callable[[], None] | None = None, side_by_side: bool = False) -> None:
    """A paginated list of jobs that refreshes every second while one of the shown jobs is queued or running.
    ``side_by_side``: the jobs wrap in rows (each drawn as wide as its content) instead of one under another."""

    def body() -> None:
        page = list_page(st.session_state.get(page_key, 1))
        if header is not None:
            header()
        if not page.items:
            st.info(empty)
        with st.container(horizontal=side_by_side):
            for job in page.items:
                render_job(job)
        if page.pages > 1:
            st.number_input(f"Page (of {page.pages})", 1, page.pages, key=page_key)

    active = any(j.status in (JobStatus.QUEUED, JobStatus.RUNNING)
                 for j in list_page(st.session_state.get(page_key, 1)).items)
    fragment(run_every=1 if active else None)(body)()


def live_log(job_id: str, *, key: str, tail: int = 300) -> None:
    """A job's log with a level filter and a download, reading only the lines after its cursor on each
    rerun (the one log viewer of the Jobs page and the run views)."""
    level = st.segmented_control("Log level", joblogs.LEVELS, default="info", key=f"{key}.level")
    cache = st.session_state.setdefault(f"{key}.log", {"job": None, "cursor": 0, "lines": []})
    if cache["job"] != job_id:
        cache.update(job=job_id, cursor=0, lines=[])
    page = joblogs.read_logs(job_id, after=cache["cursor"], limit=1000)
    cache["cursor"] = page.cursor
    cache["lines"] = (cache["lines"] + [(e.level, f"{aware(e.created_at):%H:%M:%S} {e.level:<7} {e.message}")
                                        for e in page.entries])[-2000:]
    threshold = joblogs.LEVELS.index(level or "debug")
    shown = [text for lvl, text in cache["lines"] if joblogs.LEVELS.index(lvl) >= threshold]
    st.code(plain("\n".join(shown[-tail:])) or "(no log lines yet)", language=None)
    st.download_button("Download log", "\n".join(shown), file_name=f"job-{job_id}.log", key=f"{key}.download")
