"""Where a character's default voice is chosen: one picker, used by the character editor.

The voices come from ``core.video.voices.list_voices`` (espeak-ng and VITS). Cloned voices plug in here as their
own block (another option source beside ``list_voices``), so the editor does not change when they arrive.
"""

from __future__ import annotations

import streamlit as st

from core.errors import StudioError
from core.video.voices import list_voices
from ui.text import plain

STUDIO_DEFAULT = ""  # the character has no voice of its own: videos use the studio's default voice


def _voice_options(current: str) -> dict[str, str]:
    try:
        voices = {v.id: v.label for v in list_voices()}
    except StudioError:  # espeak-ng missing: the editor still opens, with the stored voice kept
        voices = {}
    options = {STUDIO_DEFAULT: "Studio default voice", **voices}
    if current and current not in options:
        options[current] = current  # a voice this list does not know (a cloned one, a removed one): kept
    return options


def voice_picker(current: str, *, key: str) -> str:
    """A selectbox of voices starting at ``current``; returns the chosen voice id ('' = studio default)."""
    options = _voice_options(current)
    ids = list(options)
    return str(st.selectbox("Default voice", ids, index=ids.index(current), format_func=lambda v: plain(options[v]),
                            key=key, help="The voice its videos are read in, unless a video picks another."))
