"""Validation shared by the things a user names (configs, collections, datasets)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
