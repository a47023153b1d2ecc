"""Chaos fixtures: a Redis and a PostgreSQL of the chaos tests' own, which they may crash and restart
(the session servers of ``tests/conftest.py`` are shared with every other test), and the long form's switch."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.chaos.servers import PostgresServer, RedisServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-long", action="store_true", default=False,
                     help="run the 1,000-job chaos form (also: STUDIO_CHAOS_LONG=1)")


def _long(config: pytest.Config) -> bool:
    # getoption with a default: the option exists only when this folder's conftest loads at startup.
    return bool(config.getoption("--chaos-long", default=False)) or os.environ.get("STUDIO_CHAOS_LONG") == "1"


@pytest.fixture(scope="session")
def long_chaos(pytestconfig: pytest.Config) -> bool:
    return _long(pytestconfig)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``chaos_long`` are deselected (not skipped: a skip would read as a pass) outside the long form."""
    if _long(config):
        return
    kept = [item for item in items if item.get_closest_marker("chaos_long") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


@pytest.fixture(scope="session")
def chaos_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(chaos_redis: RedisServer) -> str:
    """Every chaos test's studio and workers use the restartable Redis (same port after a restart)."""
    return chaos_redis.url


@pytest.fixture(scope="session")
def chaos_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_admin_url(chaos_postgres: PostgresServer) -> str:
    return chaos_postgres.admin_url
