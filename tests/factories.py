"""Small builders of test inputs: real encoded images, zips and datasets."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, date, datetime, timedelta

import numpy as np
from PIL import Image

from core.db import session_scope
from core.models import Post, PostStatus


def image_bytes(width: int = 640, height: int = 640, *, seed: int = 0, fmt: str = "PNG", quality: int = 95) -> bytes:
    """A sharp, random-blocky picture (distinct per seed, so perceptual hashes differ)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
    picture = Image.fromarray(blocks).resize((width, height), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def upcoming_week(*, in_days: int = 30) -> tuple[str, str]:
    """A plan window of 7 days starting `in_days` from today (ISO dates).

    Derived from the clock, never fixed: a fixed date passes one day, and posts planned for it then fall due."""
    start = datetime.now(UTC).date() + timedelta(days=in_days)
    return str(start), str(start + timedelta(days=6))


def days_from_today(days: int) -> date:
    return datetime.now(UTC).date() + timedelta(days=days)


def published_posts(*, platform: str, account_id: int | None, asset_ids: list[int], times: list[datetime]) -> None:
    """Posts the studio already published (one per time), written straight to the posts table."""
    with session_scope() as session:
        session.add_all(Post(platform=platform, account_id=account_id, status=PostStatus.PUBLISHED, scheduled_at=at,
                             published_at=at, caption="Earlier", asset_ids=list(asset_ids), external_id=f"x{n}")
                        for n, at in enumerate(times))
