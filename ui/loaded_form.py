"""Form fields that code loads values into (a template picked, a reused image, a post moved by a drag).

Each load moves the fields it sets to fresh widget keys, and the widgets are drawn with the loaded
value as their default. Writing the value into a fixed key instead loses a race: a click sent before
the load has reached the browser carries the browser's old values back, and Streamlit lets them win
(on Generate, a template picked and Generate pressed at once queued the previous template's size).
The browser holds no value for a fresh key, so it has nothing stale to send back. Fields a load
leaves alone keep their keys, so typing in them goes on undisturbed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from ui.session import ReadOnlySessionState


class LoadedForm:
    """The fields under ``prefix``; their load counts and last loaded values live in session state."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._loads = f"{prefix}.loaded"  # field name -> (times loaded, value last loaded)

    def key(self, name: str, state: ReadOnlySessionState | None = None) -> str:
        """The field's widget key now. ``state``: the session state to read (a test's AppTest), else this one."""
        read: ReadOnlySessionState = st.session_state if state is None else state
        loaded = read[self._loads] if self._loads in read else {}
        return f"{self.prefix}.{name}.v{loaded[name][0] if name in loaded else 0}"

    def value(self, name: str, default: Any = None) -> Any:
        """What the field's widget holds, else what was last loaded into it, else ``default``."""
        loaded = st.session_state.get(self._loads, {})
        return st.session_state.get(self.key(name), loaded[name][1] if name in loaded else default)

    def load(self, values: Mapping[str, Any]) -> None:
        """Set fields from code: each named field moves to a fresh key whose widget starts at its value."""
        loaded = dict(st.session_state.get(self._loads, {}))
        for name, value in values.items():
            loaded[name] = (loaded[name][0] + 1 if name in loaded else 1, value)
        st.session_state[self._loads] = loaded
