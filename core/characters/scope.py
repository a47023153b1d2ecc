"""The character a piece of work is for: the one place that scopes lists and stamps new rows.

The UI enters ``character_scope(<the switcher's character>)`` around each page run, callback and fragment
(app.py, ``ui.auth``); the API and the CLI around a request naming ``character``. Inside it, list
functions show only that character's rows (``scoped``) and new rows belong to it (``owner``). Outside any
scope (workers, tests of one function) nothing is filtered: a worker acts for the character on its job row.

A ContextVar, not a global: each Streamlit session runs in its own thread, each API request in its own
thread-pool call, so two users on two characters never see each other's scope.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy import Select

_CURRENT: ContextVar[int | None] = ContextVar("studio_character_scope", default=None)

Q = TypeVar("Q", bound=Select[Any])


@contextmanager
def character_scope(character_id: int | None) -> Iterator[None]:
    """Work for ``character_id`` inside the block (None: no scope, every character's rows)."""
    token = _CURRENT.set(character_id)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def scoped_character_id() -> int | None:
    """The character of the enclosing scope, or None outside one."""
    return _CURRENT.get()


def scoped(query: Q, column: Any) -> Q:
    """``query`` limited to the scope's character's rows (``column`` is the table's ``character_id``)."""
    character_id = _CURRENT.get()
    return query if character_id is None else query.where(column == character_id)


def owner(character_id: int | None) -> int | None:
    """The character a new row belongs to: the one named, else the scope's."""
    return character_id if character_id is not None else _CURRENT.get()


def in_scope(column: Any) -> list[Any]:
    """The WHERE conditions (none or one) that keep a query to the scope's character's rows."""
    character_id = _CURRENT.get()
    return [] if character_id is None else [column == character_id]
