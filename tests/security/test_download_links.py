"""Download links are short-lived (STUDIO_DOWNLOAD_LINK_MINUTES, 15 by default), an expired one is refused by
the local store's signed route, S3 links carry the same lifetime, and the keys in shared links are unguessable."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

import core.infra.storage
from api.routes import api_routes
from core.config import reload_settings
from core.infra.storage import get_object_store, reset_object_store
from core.library import assets
from core.library.assets import AssetSource, store_image
from core.publishing import posts
from tests.factories import image_bytes
from tests.s3_server import S3Endpoint, reset_s3_server, run_s3_server

pytestmark = pytest.mark.clock  # also run at awkward moments (tests/clock.py): signed links that expire


class _Clock:
    """time.time() for core.infra.storage, moved forward by hand."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def image(studio):
    return store_image("uploads/link.png", image_bytes(64, 64, seed=5), source=AssetSource.UPLOAD)


def test_a_local_link_lives_fifteen_minutes_by_default(image):
    query = parse_qs(urlsplit(assets.download_url(image)).query)
    assert abs(int(query["expires"][0]) - (time.time() + 15 * 60)) < 60


def test_the_link_lifetime_is_a_setting(image, monkeypatch):
    monkeypatch.setenv("STUDIO_DOWNLOAD_LINK_MINUTES", "5")
    reload_settings()
    query = parse_qs(urlsplit(assets.download_url(image)).query)
    assert abs(int(query["expires"][0]) - (time.time() + 5 * 60)) < 60


def test_an_expired_local_link_is_refused_by_the_download_route(image, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(core.infra.storage, "time", clock)
    parts = urlsplit(assets.download_url(image))
    with TestClient(Starlette(routes=api_routes())) as client:
        fresh = client.get(f"{parts.path}?{parts.query}")
        assert fresh.status_code == 200 and fresh.content == get_object_store().get_bytes(image.key)
        clock.offset = 15 * 60 + 2  # a quarter of an hour later
        expired = client.get(f"{parts.path}?{parts.query}")
        assert expired.status_code == 403 and "expired" in expired.json()["error"]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[S3Endpoint]:
    with run_s3_server() as endpoint:
        yield endpoint


def test_an_s3_link_is_presigned_for_the_same_lifetime(studio, monkeypatch, s3_endpoint):
    reset_s3_server(s3_endpoint)
    for name, value in {"STUDIO_STORAGE_BACKEND": "s3", "STUDIO_S3_ENDPOINT": s3_endpoint.endpoint,
                        "STUDIO_S3_BUCKET": "links", "STUDIO_S3_ACCESS_KEY": s3_endpoint.access_key,
                        "STUDIO_S3_SECRET_KEY": s3_endpoint.secret_key}.items():
        monkeypatch.setenv(name, value)
    reload_settings()
    reset_object_store()
    get_object_store().ensure_bucket()
    try:
        image = store_image("uploads/s3-link.png", image_bytes(64, 64, seed=6), source=AssetSource.UPLOAD)
        query = parse_qs(urlsplit(assets.download_url(image)).query)
        # moto serves expired links anyway (tests/s3_server.py); real S3 and MinIO refuse them past X-Amz-Expires.
        assert query["X-Amz-Expires"] == [str(15 * 60)] and query["X-Amz-Signature"]
    finally:
        reset_object_store()


def test_the_instagram_copy_shared_with_meta_has_an_unguessable_key(image, tmp_path):
    from workers.publish import _as_jpeg

    post = posts.create_post(platform="instagram", scheduled_at=datetime.now(UTC) + timedelta(days=1),
                             caption="x", asset_ids=[image.id])
    png = tmp_path / "asset.png"
    png.write_bytes(image_bytes(64, 64, seed=5))
    _, url = _as_jpeg(post, image, png)
    key = urlsplit(url).path.removeprefix("/api/files/")
    assert re.fullmatch(rf"posts/{post.id}/instagram-{image.id}-[0-9a-f]{{32}}\.jpg", key), key
    _, again = _as_jpeg(post, image, png)
    assert urlsplit(again).path == urlsplit(url).path, "a retry overwrites the same object"


def test_generated_media_keys_carry_the_jobs_random_id(studio):
    from core.generation.requests import image_key
    from core.models import new_id

    job_id = new_id()
    assert re.fullmatch(r"[0-9a-f]{32}", job_id) and image_key(job_id, 0).startswith(f"jobs/{job_id}/")
