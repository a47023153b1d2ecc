"""The one reader of JSON objects from outside the studio (API and webhook bodies, the CLI's
``--payload``). Stricter than ``json.loads``: duplicate keys, NaN/Infinity, NUL characters and lone
surrogates are refused, and nesting deep enough to exhaust the parser is a clear error, not a crash."""

from __future__ import annotations

import json
import re
from typing import Any

from core.errors import InvalidInput

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def parse(text: str | bytes) -> Any:
    """``text`` as JSON, or InvalidInput saying what is wrong with it."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"malformed JSON: {error}") from None
    except RecursionError:
        raise InvalidInput("malformed JSON: nested too deeply") from None
    _check_strings(data)
    return data


def parse_object(text: str | bytes) -> dict[str, Any]:
    """A request body: a JSON object, or InvalidInput."""
    data = parse(text)
    if not isinstance(data, dict):
        raise InvalidInput("the JSON body must be an object")
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which duplicate wins (n8n's JS takes the last, others the first): refuse both.
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise InvalidInput(f"malformed JSON: duplicate key {key!r}")
        data[key] = value
    return data


def _no_constant(name: str) -> Any:
    raise InvalidInput(f"malformed JSON: {name} is not a JSON number")


def _check_strings(data: Any) -> None:
    """NUL (PostgreSQL text refuses it) and lone surrogates (no UTF-8 for them) anywhere, keys included.
    Iterative: the object may nest as deep as the parser allowed."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise InvalidInput("malformed JSON: NUL characters (\\u0000) are not allowed in strings")
            if not item.isascii() and _SURROGATE.search(item):
                raise InvalidInput("malformed JSON: a string holds a lone surrogate (\\ud800-\\udfff)")
