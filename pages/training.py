"""Training: a wizard for new LoRA runs, live views of runs (loss, samples, checkpoints), and the configs."""

import streamlit as st

from ui.training.configs import configs_section
from ui.training.imports import import_section
from ui.training.navigation import SECTION, SECTIONS, apply_navigation, link_run
from ui.training.runs import runs_section
from ui.training.wizard import wizard

st.title("Training")

apply_navigation()  # a ?run= link or a just-submitted run opens the Runs section
# A segmented control rather than tabs: only the chosen section runs, so a hidden run view
# does not keep refreshing, and the section can be switched from code (after a submit).
section = st.segmented_control("Section", list(SECTIONS), format_func=SECTIONS.__getitem__, required=True,
                               key=SECTION, label_visibility="collapsed")

if section == "runs":
    runs_section()
else:
    link_run(None)
    if section == "configs":
        configs_section()
    elif section == "import":
        import_section()
    else:
        wizard()
