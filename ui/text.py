"""User text on a page: the one way to show what a user, a file, a platform or a worker wrote.

Streamlit renders Markdown in messages (success, info, warning, error, toast), ``st.markdown``,
``st.caption``, ``st.write``, headers, widget labels, expander titles, tab names and page links: a
dataset named ``**x** [y](https://evil.example)`` would show bold text and a live link. And a
right-to-left override (U+202E) shows "gnp.exe" as "exe.png" wherever it is drawn.

- :func:`literal`: for any element that renders Markdown: the text, neutralised, with every Markdown
  character escaped, so it shows exactly as typed.
- :func:`plain`: for elements that show text as it is (``st.text``, ``st.code``, selectbox options,
  table cells): neutralised only, since an escape there would show as a backslash.
- :func:`code`: an inline code span inside Markdown (a trigger word), which no backtick can end.

Both apply :func:`core.datasets.images.printable` (the same policy file names get when they are stored):
control, bidi-override and zero-width characters become '?'. Quote only the user's part of a message:
``st.error(f"Dataset {literal(name)} is empty")``.
"""

from __future__ import annotations

import re

from core.datasets.images import printable

# Escaped only where they could start Markdown, so ordinary text ("SD 1.5 (copy)", "RuntimeError: boom",
# "warm-up", "snake_case") keeps its characters as they are.
_ANYWHERE = re.compile(r"[\\`*\[\]<>~$|@]")  # emphasis, code, links, HTML, strikethrough, LaTeX, tables, emails
_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")  # "_" that can open or close emphasis (not intraword)
_ENTITY = re.compile(r"&(?=#?\w+;)")  # "&amp;" would show as "&"
_URL = re.compile(r":(?=//)|(?<=\bwww)\.", re.IGNORECASE)  # bare URLs become links in GitHub-flavoured Markdown
_LINE_START = re.compile(r"^([ \t]*)(?:([#>+=-])|(\d+)([.)]))", re.MULTILINE)  # headings, quotes, lists


def plain(text: object) -> str:
    """User text for an element that shows text as it is: control and bidi characters neutralised."""
    return printable(str(text), multiline=True)


def literal(text: object) -> str:
    """User text for an element that renders Markdown: neutralised, and shown as typed, never as Markdown."""
    escaped = plain(text)
    for pattern in (_ANYWHERE, _UNDERSCORE, _ENTITY, _URL):
        escaped = pattern.sub(lambda found: "\\" + found.group(0), escaped)
    return _LINE_START.sub(_escape_line_start, escaped)


def _escape_line_start(found: re.Match[str]) -> str:
    indent, marker, number, delimiter = found.groups()
    return f"{indent}\\{marker}" if marker else f"{indent}{number}\\{delimiter}"


def code(text: object) -> str:
    """User text as an inline code span (a trigger word): shown as typed, inside a fence of more backticks
    than any run of them in the text, so none can end the span early."""
    shown = plain(text).replace("\n", " ").replace("\t", " ")
    fence = "`" * (max(map(len, re.findall("`+", shown)), default=0) + 1)
    padding = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{padding}{shown}{padding}{fence}"
