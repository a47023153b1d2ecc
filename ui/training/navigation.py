"""Which section of the Training page shows, and which run: a ?run= link or a just-submitted run
opens the Runs section; the open run is mirrored to the URL. Also the keys of the page's flashes."""

from __future__ import annotations

import streamlit as st

SECTIONS = {"new": "New run", "runs": "Runs", "configs": "Configs", "import": "Import LoRA"}
SECTION = "training.section"
GOTO = "training.goto"  # a section to open on the next run, before the selector exists
RUN = "training.run"  # the run shown in the run view (mirrored to the ?run= query parameter)
FLASH = "training.flash"  # a message shown once after an action that reruns the page (ui.feedback)
LIVE_FLASH = "training.run.flash"  # the same, for the live run view (shown as a toast)
_LINKED = "training.linked_run"  # the run id this session last put in the URL


def apply_navigation() -> None:
    """Call before the section selector: a ?run= link or a just-submitted run opens that run."""
    requested = st.query_params.get("run")
    # Only a link this session did not write itself counts (the URL lags one run behind a pick).
    if requested and requested != st.session_state.get(_LINKED):
        st.session_state[RUN] = st.session_state[_LINKED] = requested
        st.session_state[SECTION] = "runs"
    if target := st.session_state.pop(GOTO, None):
        st.session_state[SECTION] = target
    st.session_state.setdefault(SECTION, "new")


def link_run(run_id: str | None) -> None:
    """Put the open run in the URL (so it can be shared or reloaded), or take it out."""
    st.session_state[_LINKED] = run_id
    if run_id:
        st.query_params["run"] = run_id
    else:
        st.query_params.pop("run", None)
