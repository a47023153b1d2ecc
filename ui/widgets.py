"""Small reusable widgets."""

from __future__ import annotations

import streamlit as st

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
