"""Shared fixtures: real Redis and PostgreSQL servers, a fresh studio configuration per test,
and worker processes. Each test gets its own database and its own Redis namespace."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import core.catalogue  # noqa: F401  (registers every job kind, as each program's entry point does)
from tests.services import create_database, run_postgres, run_redis, stop_process_groups

pytest_plugins = ["tests.clock"]

ROOT = Path(__file__).resolve().parent.parent
TEST_API_TOKEN = "test-api-token-0123456789"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """STUDIO_TEST_REDIS_URL when given (a Redis the tests may flush), else a throwaway server."""
    if configured := os.environ.get("STUDIO_TEST_REDIS_URL"):
        yield configured
        return
    with run_redis() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """STUDIO_TEST_POSTGRES_URL (a role that may CREATE DATABASE) when given, else a throwaway cluster."""
    if configured := os.environ.get("STUDIO_TEST_POSTGRES_URL"):
        yield configured
        return
    with run_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite by default; parametrize with ["sqlite", "postgres"] (indirect) to run on both."""
    if request.param == "postgres":
        admin_url = request.getfixturevalue("postgres_admin_url")
        return create_database(admin_url, f"t_{uuid.uuid4().hex[:12]}")
    return f"sqlite:///{tmp_path / 'studio.db'}"


def _reset_caches() -> None:
    from core.config import reload_settings
    from core.db import dispose_engines
    from core.infra.redis import reset_clients
    from core.infra.storage import reset_object_store

    reload_settings()
    dispose_engines()
    reset_clients()
    reset_object_store()


@pytest.fixture
def studio(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str,
           database_url: str):
    """A configured, migrated studio: fresh database, own Redis namespace, local object store."""
    env = {
        "STUDIO_ENV": "development",
        "STUDIO_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STUDIO_REDIS_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
        "STUDIO_STORAGE_BACKEND": "local",
        "STUDIO_API_TOKEN": TEST_API_TOKEN,
        "STUDIO_AUTH_DISABLED": "true",
        "STUDIO_JOB_RETRY_BACKOFF_S": "0.2",
        "STUDIO_RECONCILE_INTERVAL_S": "2",
    }
    if zone := request.config.getoption("clock_zone"):
        env["STUDIO_TIMEZONE"] = zone  # tests/clock.py: the studio's zone for a run at an awkward moment
    for name in [n for n in os.environ if n.startswith("STUDIO_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _reset_caches()
    from core.config import get_settings
    from core.db import upgrade_schema

    upgrade_schema()
    yield get_settings()
    _reset_caches()


class WorkerProcesses:
    """Starts `python -m workers …` processes with the test's environment and stops them all."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers", *args], cwd=ROOT, env=dict(os.environ), start_new_session=True
        )
        self.processes.append(process)
        return process

    def worker(self, queues: str = "cpu,default", threads: int = 2) -> subprocess.Popen[bytes]:
        return self.start("worker", "--queues", queues, "--threads", str(threads))

    def supervisor(self, queues: str = "cpu,default") -> subprocess.Popen[bytes]:
        return self.start("run", "--queues", queues)

    def stop_all(self) -> None:
        stop_process_groups(self.processes)


@pytest.fixture
def workers(studio) -> Iterator[WorkerProcesses]:
    processes = WorkerProcesses()
    yield processes
    processes.stop_all()


def wait_until(predicate: Callable[[], object], timeout: float = 30, interval: float = 0.05,
               what: str = "condition") -> object:
    """Polls until predicate() is truthy; returns its value or fails the test with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def offline_hub() -> Iterator[None]:
    """No test may reach the hub; huggingface_hub reads the variable at import, so patch both."""
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny randomly initialised models built from configs, loaded through the real from_pretrained paths."""
    from workers.ml.tiny_models import ensure_tiny_models

    return ensure_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_wan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Wan 2.2 TI2V image-to-video folder (built apart: only the motion tests pay for it)."""
    from workers.ml.tiny_models import build_tiny_wan

    return build_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan")


@pytest.fixture(scope="session")
def fake_hub(tiny_models: dict[str, Path]) -> Iterator[object]:
    """A local server speaking the hub's HTTP API, serving the tiny SD 1.5 folder as studio/tiny-sd15."""
    from tests.fakes.hub import FakeHub

    server = FakeHub().start()
    server.repos["studio/tiny-sd15"] = tiny_models["sd15"]
    server.extra_files = {"v1-5-pruned.safetensors": 4_000_000_000, "unet/diffusion_pytorch_model.bin": 10,
                          "unet/diffusion_pytorch_model.fp16.safetensors": 10}
    yield server
    server.stop()


@pytest.fixture
def hub_studio(studio, fake_hub, monkeypatch: pytest.MonkeyPatch):
    """A studio whose hub endpoint is the fake hub (its recorded calls cleared)."""
    from core.config import reload_settings

    monkeypatch.setenv("STUDIO_HUB_ENDPOINT", fake_hub.url)
    reload_settings()
    fake_hub.clear()
    return fake_hub
