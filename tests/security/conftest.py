"""One studio per database for the whole hostile-input corpus: the real app server (server.py, with the
/api routes) in its own process, Redis, a local object store and an S3 server (moto), all sharing one
configuration. Cases share it, so a case that wrote anything would show in the next census too."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import TEST_API_TOKEN, _reset_caches
from tests.factories import upcoming_week
from tests.s3_server import S3Endpoint, reset_s3_server, run_s3_server
from tests.security.harness import S3_BUCKET, Arena

WEBHOOK_SECRET = "whsec-hostile-0123456789"
PUBLIC_URL = "https://studio.example.test"
AUTH = {"Authorization": f"Bearer {TEST_API_TOKEN}"}
CONTENT_BODY = dict(zip(("start", "end"), upcoming_week(), strict=True),
                    theme="summer hikes", platforms=["instagram"])


@pytest.fixture(scope="package")
def s3_endpoint() -> Iterator[S3Endpoint]:
    with run_s3_server() as endpoint:
        yield endpoint


def _environment(tmp: Path, database_url: str, redis_url: str, s3: S3Endpoint) -> dict[str, str]:
    return {
        "STUDIO_ENV": "development",
        "STUDIO_DATA_DIR": str(tmp / "data"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STUDIO_REDIS_NAMESPACE": f"h{uuid.uuid4().hex[:10]}",
        "STUDIO_STORAGE_BACKEND": "local",
        "STUDIO_S3_ENDPOINT": s3.endpoint,
        "STUDIO_S3_BUCKET": S3_BUCKET,
        "STUDIO_S3_ACCESS_KEY": s3.access_key,
        "STUDIO_S3_SECRET_KEY": s3.secret_key,
        "STUDIO_API_TOKEN": TEST_API_TOKEN,
        "STUDIO_AUTH_DISABLED": "true",
        "STUDIO_PUBLIC_URL": PUBLIC_URL,
        # Signed pipeline starts are required, so the header cases meet the strict path.
        "STUDIO_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STUDIO_WEBHOOK_REQUIRE_SIGNATURE": "true",
        # The corpus sends ~100 writes a minute; the rate limit is not what these cases test.
        "STUDIO_API_WRITES_PER_MINUTE": "100000",
        "STUDIO_API_READS_PER_MINUTE": "100000",
        "STUDIO_PUBLIC_REQUESTS_PER_MINUTE": "100000",
        # Configured (never called: every OAuth case is refused before the provider is reached).
        "STUDIO_META_APP_ID": "meta-app", "STUDIO_META_APP_SECRET": "meta-secret-0123456789",
        "STUDIO_GOOGLE_CLIENT_ID": "google-client", "STUDIO_GOOGLE_CLIENT_SECRET": "google-secret-0123456789",
    }


def _signed_start(base: str) -> tuple[str, tuple[bytes, dict[str, str]]]:
    from core.infra.signing import sign

    body = json.dumps(CONTENT_BODY).encode()
    stamp, signature = sign(WEBHOOK_SECRET, body)
    headers = {**AUTH, "Content-Type": "application/json", "X-Studio-Timestamp": stamp,
               "X-Studio-Signature": signature}
    response = httpx.post(f"{base}/api/pipelines/content", content=body, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"], (body, headers)


def _apply(patch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Exactly this configuration: no STUDIO_* variable of the caller's shell leaks in."""
    for name in [n for n in os.environ if n.startswith("STUDIO_")]:
        patch.delenv(name)
    for name, value in env.items():
        patch.setenv(name, value)
    _reset_caches()


@pytest.fixture(scope="package", params=["sqlite", "postgres"])
def arena_services(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str,
                   s3_endpoint: S3Endpoint) -> Iterator[Arena]:
    """The studio and its fixtures, made once per database. The environment is set only while they are made
    (the server process keeps its copy); each test applies it again (``arena``), so no other test sees it."""
    from tests.services import create_database, run_app_server

    tmp = tmp_path_factory.mktemp(f"hostile-{request.param}")
    if request.param == "postgres":
        database_url = create_database(request.getfixturevalue("postgres_admin_url"), f"h_{uuid.uuid4().hex[:12]}")
    else:
        database_url = f"sqlite:///{tmp / 'studio.db'}"
    env = _environment(tmp, database_url, redis_url, s3_endpoint)
    with ExitStack() as running:
        with pytest.MonkeyPatch.context() as patch:
            _apply(patch, env)
            from core.config import get_settings
            from core.datasets.datasets import all_images, create_dataset, import_files
            from core.db import upgrade_schema
            from core.infra.storage import make_object_store
            from core.jobs import lifecycle as jobs
            from core.publishing.oauth import start_authorization
            from tests.factories import image_bytes

            upgrade_schema()
            settings = get_settings()
            reset_s3_server(s3_endpoint)  # the S3 server outlives an arena: start each with an empty bucket
            make_object_store(settings.model_copy(update={"storage_backend": "s3"})).ensure_bucket()
            dataset = create_dataset(name="Ava", trigger_word="ohwx")
            import_files(dataset.id, [("a.png", image_bytes(64, 64, seed=1)),
                                      ("b.png", image_bytes(64, 64, seed=2))])
            image = all_images(dataset.id)[0]
            job = jobs.create_job("noop", {"note": "fixture"})
            state = parse_qs(urlsplit(start_authorization("facebook")).query)["state"][0]
            base = running.enter_context(run_app_server(log=tmp / "server.log"))
            client = running.enter_context(httpx.Client(base_url=base, timeout=60))
            pipeline_id, signed = _signed_start(base)
        _reset_caches()
        yield Arena(base=base, http=client, env=env, public_url=PUBLIC_URL,
                    storage_dir=settings.effective_storage_dir, s3=s3_endpoint, dataset_id=dataset.id,
                    image_id=image.id, image_key=image.key, job_id=job.id, pipeline_id=pipeline_id,
                    signed_start=signed, meta_state=state)


@pytest.fixture
def arena(arena_services: Arena, monkeypatch: pytest.MonkeyPatch) -> Iterator[Arena]:
    _apply(monkeypatch, arena_services.env)
    yield arena_services
    _reset_caches()  # the monkeypatch then restores the environment; nothing cached keeps this one


@pytest.fixture(params=["local", "s3"])
def storage_backend(request: pytest.FixtureRequest, arena: Arena, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Upload cases run against both backends (this process only; the server keeps the local store)."""
    from core.config import reload_settings
    from core.infra.storage import reset_object_store

    monkeypatch.setenv("STUDIO_STORAGE_BACKEND", request.param)
    reload_settings()
    reset_object_store()
    yield request.param
    monkeypatch.setenv("STUDIO_STORAGE_BACKEND", "local")
    reload_settings()
    reset_object_store()
