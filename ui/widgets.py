"""Small reusable widgets."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core.models import Job, JobStatus
from core.pagination import Page

STATUS_COLOURS = {
    "queued": "gray",
    "running": "blue",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "orange",
}


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
    st.switch_page("pages/videos.py")


def live_job_list(list_page: Callable[[int], Page[Job]], render_job: Callable[[Job], None], *, page_key: str,
                  empty: str, header: Callable[[], None] | None = None) -> None:
    """A paginated list of jobs that refreshes every second while one of the shown jobs is queued or running."""

    def body() -> None:
        page = list_page(st.session_state.get(page_key, 1))
        if header is not None:
            header()
        if not page.items:
            st.info(empty)
        for job in page.items:
            render_job(job)
        if page.pages > 1:
            st.number_input(f"Page (of {page.pages})", 1, page.pages, key=page_key)

    active = any(j.status in (JobStatus.QUEUED, JobStatus.RUNNING)
                 for j in list_page(st.session_state.get(page_key, 1)).items)
    st.fragment(run_every=1 if active else None)(body)()
