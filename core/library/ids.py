"""Lists of asset ids as callers send them (a leaf: assets, collections and posts all take such lists)."""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import InvalidInput

MAX_IDS_PER_CALL = 1_000


def unique_asset_ids(asset_ids: Sequence[int]) -> list[int]:
    ids = list(dict.fromkeys(int(i) for i in asset_ids))
    if len(ids) > MAX_IDS_PER_CALL:
        raise InvalidInput(f"at most {MAX_IDS_PER_CALL} assets at a time")
    return ids


def describe_ids(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in sorted(ids)[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
