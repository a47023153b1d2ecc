"""The type of a session state that functions take as an argument: Streamlit's own (``st.session_state``),
or the one a test hands in (AppTest's, or a plain dict), so the logic can be tested without a page run."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, TypeAlias

# Streamlit keys its session state by str or int (its ``Key``); the mappings are invariant in their key type.
StateKey: TypeAlias = str | int
SessionState: TypeAlias = MutableMapping[StateKey, Any]
ReadOnlySessionState: TypeAlias = Mapping[StateKey, Any]
