"""The type of a session state that functions take as an argument: Streamlit's own (``st.session_state``),
or the one a test hands in (AppTest's, or a plain dict), so the logic can be tested without a page run; and the
session's current character (the sidebar switcher's), which scopes every page (``core.characters.scope``)."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, TypeAlias

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.characters.characters import current_character, default_character
from core.characters.scope import character_scope, set_session_provider

# Streamlit keys its session state by str or int (its ``Key``); the mappings are invariant in their key type.
StateKey: TypeAlias = str | int
SessionState: TypeAlias = MutableMapping[StateKey, Any]
ReadOnlySessionState: TypeAlias = Mapping[StateKey, Any]


# The switcher's character (an id): every page, callback and fragment runs inside ``character_scope`` of it.
CHARACTER_KEY = "studio.character_id"


def session_character_id(state: SessionState) -> int:
    """The session's character: the one picked in the switcher while it exists and is active, else the default."""
    picked = state.get(CHARACTER_KEY)
    if isinstance(picked, int):
        with character_scope(picked):
            character = current_character()  # the picked one, or the default when it no longer exists
        if character.id == picked and character.archived_at is None:
            return picked
    default = default_character().id or 0
    state[CHARACTER_KEY] = default
    return default


def set_session_character(state: SessionState, character_id: int) -> None:
    state[CHARACTER_KEY] = character_id


def _running_session_character() -> int | None:
    """The switcher's character while a Streamlit script (page, callback, fragment) runs; None elsewhere."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    picked = st.session_state.get(CHARACTER_KEY)  # checked by the switcher on every full run (app.py)
    return picked if isinstance(picked, int) else session_character_id(st.session_state)


set_session_provider(_running_session_character)
