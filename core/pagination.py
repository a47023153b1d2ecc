"""One page of a list: every list in the studio is paginated the same way.

Every list function passes its ``page`` and ``page_size`` through :func:`clamp` before building its
query, and every log reader its cursor through :func:`clamp_cursor`: whatever number a page input, the
API or the CLI hands over, the database only ever sees an OFFSET and a cursor it can hold (an
integer past 2**63 - 1 is an overflow error on SQLite and PostgreSQL alike, a 500 for the caller).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# Far past any real list (a million pages of 100 is 10**8 rows), and small enough that
# OFFSET = (page - 1) × page_size stays a 64-bit integer for any page size a list allows.
MAX_PAGE = 1_000_000
# The largest integer SQLite stores and PostgreSQL's BIGINT holds (job-log cursors are BIGINT).
MAX_CURSOR = 2**63 - 1


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def clamp(page: int, page_size: int, *, max_page_size: int) -> tuple[int, int]:
    """A valid (page, page_size): pages run from 1 to MAX_PAGE, sizes stay within 1..max_page_size.

    A page past the end of the list is still a valid request (its items are empty); the answer's
    ``page`` tells a caller which page it was served."""
    return max(1, min(page, MAX_PAGE)), max(1, min(page_size, max_page_size))


def clamp_cursor(after: int) -> int:
    """A cursor the database can compare: below 0 reads from the start, past MAX_CURSOR finds nothing newer."""
    return max(0, min(after, MAX_CURSOR))
