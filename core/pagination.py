"""One page of a list: every list in the studio is paginated the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


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
    """A valid (page, page_size): pages start at 1, sizes stay within 1..max_page_size."""
    return max(1, page), max(1, min(page_size, max_page_size))
