"""Pickers the Training page's sections share: the chosen dataset and config, and a pager that stays in
range (the selectbox that follows state other code changes is ``ui.widgets.pick``)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.errors import NotFound
from core.models import LoraConfig
from core.training import runs as training
from core.training.configs import get_config, get_default_config, params_of
from core.training.params import LoraParams
from ui.text import plain

DATASET = "training.dataset_id"  # also set by the Datasets page's "Train a LoRA" button
CONFIG = "training.config_id"


def clamp_page(key: str, pages: int) -> bool:
    """A filter can leave fewer pages than the page number the user was on: go to the last one."""
    if st.session_state.get(key, 1) > pages:
        st.session_state[key] = pages
        return True
    return False


def runs_offline(params: LoraParams) -> bool:
    """Whether the base model is a folder on this machine (the tiny demo model is), so no download."""
    return Path(training.resolve_base_model(params.base_model)).is_dir()


def config_label(config: LoraConfig) -> str:
    """A config as a selectbox option (plain text: options never render Markdown)."""
    return plain(config.name) + (" ★ default" if config.is_default else "") + (
        " · runs offline" if runs_offline(params_of(config)) else "")


def chosen_config() -> LoraConfig | None:
    try:
        return get_config(st.session_state[CONFIG]) if st.session_state.get(CONFIG) else get_default_config()
    except NotFound:
        return None
