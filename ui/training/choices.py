"""Pickers the Training page's sections share: the chosen dataset and config, a selectbox that follows
state other code changes, and a pager that stays in range."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from core.errors import NotFound
from core.models import LoraConfig
from core.training import runs as training
from core.training.configs import get_config, get_default_config, params_of
from core.training.params import LoraParams

DATASET = "training.dataset_id"  # also set by the Datasets page's "Train a LoRA" button
CONFIG = "training.config_id"


def clamp_page(key: str, pages: int) -> bool:
    """A filter can leave fewer pages than the page number the user was on: go to the last one."""
    if st.session_state.get(key, 1) > pages:
        st.session_state[key] = pages
        return True
    return False


def pick(label: str, options: list[Any], labels: Callable[[Any], str], *, state: str, key: str) -> Any:
    """A selectbox that follows ``state`` (which other code may change) and writes the user's choice back."""
    if st.session_state.get(state) in options:
        st.session_state[key] = st.session_state[state]

    def remember() -> None:
        st.session_state[state] = st.session_state[key]

    chosen = st.selectbox(label, options, format_func=labels, key=key, on_change=remember)
    st.session_state[state] = chosen
    return chosen


def runs_offline(params: LoraParams) -> bool:
    """Whether the base model is a folder on this machine (the tiny demo model is), so no download."""
    return Path(training.resolve_base_model(params.base_model)).is_dir()


def config_label(config: LoraConfig) -> str:
    return config.name + (" ★ default" if config.is_default else "") + (
        " · runs offline" if runs_offline(params_of(config)) else "")


def chosen_config() -> LoraConfig | None:
    try:
        return get_config(st.session_state[CONFIG]) if st.session_state.get(CONFIG) else get_default_config()
    except NotFound:
        return None
