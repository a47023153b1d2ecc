"""The prompt library: named snippets ("golden hour lighting, 85mm") inserted into prompts.

Snippets for the negative prompt are kept apart (``negative=True``) so each picker shows only
the ones that belong in its box.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from core.db import get_or_raise, session_scope
from core.errors import Conflict, InvalidInput
from core.models import PromptSnippet
from core.pagination import Page, clamp

MAX_TEXT = 1000


def _clean(name: str, text: str) -> tuple[str, str]:
    name, text = name.strip(), " ".join(text.split())
    if not name or len(name) > 120:
        raise InvalidInput("a snippet needs a name of 1 to 120 characters")
    if not text or len(text) > MAX_TEXT:
        raise InvalidInput(f"a snippet needs a text of 1 to {MAX_TEXT} characters")
    return name, text


def create_snippet(*, name: str, text: str, negative: bool = False) -> PromptSnippet:
    name, text = _clean(name, text)
    try:
        with session_scope() as session:
            snippet = PromptSnippet(name=name, text=text, negative=negative)
            session.add(snippet)
            session.flush()
            session.refresh(snippet)
            return snippet
    except IntegrityError:
        raise Conflict(f"a snippet named {name!r} already exists") from None


def delete_snippet(snippet_id: int) -> None:
    with session_scope() as session:
        session.delete(get_or_raise(PromptSnippet, snippet_id, "snippet"))


def list_snippets(*, negative: bool | None = None, page: int = 1, page_size: int = 100) -> Page[PromptSnippet]:
    page, page_size = clamp(page, page_size, max_page_size=200)
    conditions = [] if negative is None else [col(PromptSnippet.negative).is_(negative)]
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(PromptSnippet).where(*conditions)).scalar_one()
        items = list(session.execute(
            select(PromptSnippet).where(*conditions).order_by(PromptSnippet.name)
            .offset((page - 1) * page_size).limit(page_size)
        ).scalars())
    return Page(items=items, total=int(total), page=page, page_size=page_size)


def insert_snippet(prompt: str, snippet: str) -> str:
    """The prompt with the snippet appended as one more comma-separated part (once)."""
    def parts(text: str) -> list[str]:
        return [part.strip() for part in text.split(",") if part.strip()]

    have, add = parts(prompt), parts(snippet)
    if any(have[i:i + len(add)] == add for i in range(len(have) - len(add) + 1)):
        return prompt
    return ", ".join([*have, *add])
