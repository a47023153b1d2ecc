"""What a stored caption may hold (a leaf: datasets cleans imported captions with it, and captions every edit)."""

from __future__ import annotations

import re

MAX_CAPTION_CHARS = 2000

# C0/C1 control characters and lone surrogates: PostgreSQL refuses NUL in text, and a surrogate has no UTF-8.
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def clean_caption(text: str) -> str:
    """Captions are single-line plain text: control characters become spaces, newlines and runs of spaces
    collapse to one space. Markup such as ``<b>`` is kept verbatim: pages show captions as text, never HTML."""
    return " ".join(_UNSTORABLE.sub(" ", text).split())[:MAX_CAPTION_CHARS]
