"""Validation shared by the things a user names (configs, collections, datasets)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

# ASCII digits only: str.isdigit() is also true for "²" and other scripts' digits, which int() refuses,
# and int() alone takes "1_000" and " 7 ".
_INTEGER = re.compile(r"-?[0-9]+")
_MAX_DIGITS = 4000  # below Python's int() conversion limit (4300 digits)


def parse_int(text: str | None, *, signed: bool = False) -> int | None:
    """The integer a query parameter, header or line holds, or None when it is not one: the one way the studio
    reads integers from text it did not write."""
    if text is None or len(text) > _MAX_DIGITS or not _INTEGER.fullmatch(text):
        return None
    if text.startswith("-") and not signed:
        return None
    return int(text)


def printable(name: str) -> str:
    if any(not c.isprintable() for c in name):
        raise ValueError("must not contain control characters")
    return name


class NamedFields(BaseModel):
    """A name (1–120 printable characters, trimmed) and a free description."""

    model_config = ConfigDict(str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=120)
    description: str = Field(default="", max_length=2000)

    @field_validator("name")
    @classmethod
    def _printable_name(cls, name: str) -> str:
        return printable(name)
