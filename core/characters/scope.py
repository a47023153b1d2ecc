"""The character a piece of work is for: the one place that scopes lists and stamps new rows.

The UI enters ``character_scope(<the switcher's character>)`` around each page run, callback and fragment
(app.py, ``ui.auth``), and registers its session's character as the fallback (a page Streamlit runs on a page
switch sees it too); the API and the CLI enter it around a request naming ``character``. Inside it, list
functions show only that character's rows (``scoped``) and new rows belong to it (``owner``). Outside any
scope (workers, tests of one function) nothing is filtered: a worker acts for the character on its job row.

A ContextVar, not a global: each Streamlit session runs in its own thread, each API request in its own
thread-pool call, so two users on two characters never see each other's scope.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy import Select, or_

_CURRENT: ContextVar[int | None] = ContextVar("studio_character_scope", default=None)
# The UI's session character, asked when no scope is entered (ui.session registers it; it answers None outside a
# Streamlit script run, so API requests and workers in the same process are never scoped by a UI session).
_session_provider: Callable[[], int | None] | None = None

Q = TypeVar("Q", bound=Select[Any])


@contextmanager
def character_scope(character_id: int | None) -> Iterator[None]:
    """Work for ``character_id`` inside the block (None: no scope, every character's rows)."""
    token = _CURRENT.set(character_id)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def set_session_provider(provider: Callable[[], int | None]) -> None:
    """Register where the UI keeps its session's character (called once, by ui.session)."""
    global _session_provider
    _session_provider = provider


def scoped_character_id() -> int | None:
    """The character of the enclosing scope, else the UI session's, else None (no scope)."""
    character_id = _CURRENT.get()
    if character_id is None and _session_provider is not None:
        return _session_provider()
    return character_id


def _mine(column: Any, character_id: int) -> Any:
    # Rows of no character are nobody's to hide: studio-wide work (notifications, scheduled publishing) and rows
    # made outside any scope. Migration 0010 gave every older row to the first character.
    return or_(column == character_id, column.is_(None))


def scoped(query: Q, column: Any) -> Q:
    """``query`` limited to the scope's character's rows (``column`` is the table's ``character_id``) and the
    rows of no character."""
    character_id = scoped_character_id()
    return query if character_id is None else query.where(_mine(column, character_id))


def owner(character_id: int | None) -> int | None:
    """The character a new row belongs to: the one named, else the scope's."""
    return character_id if character_id is not None else scoped_character_id()


def in_scope(column: Any) -> list[Any]:
    """The WHERE conditions (none or one) that keep a query to the scope's character's rows."""
    character_id = scoped_character_id()
    return [] if character_id is None else [_mine(column, character_id)]
