"""The hostile-input harness: a running studio (real app server, database, Redis, local store and S3),
a case format, and the before/after census that proves a refused input wrote nothing.

A case submits one input through a real entry point and turns what came back into an :class:`Outcome`
(an HTTP status and the ``error`` text, an exception type and its message, a CLI exit code and its
output). The test then checks the status, that the message names the problem, that nothing leaked a
traceback or a 500, and that every table's row count and the set of stored objects are unchanged,
except for the changes a case declares (each with its reason in the corpus).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import func, select
from sqlmodel import SQLModel

from core.db import session_scope
from core.errors import StudioError
from core.infra.storage import S3ObjectStore
from tests.s3_server import S3Endpoint

S3_BUCKET = "hostile"


@dataclass
class Arena:
    """What every case may use: the server, the fixtures made before any case, and a scratch slot."""

    base: str  # the real app server (server.py), e.g. http://127.0.0.1:PORT
    http: httpx.Client
    env: dict[str, str]  # the studio's configuration (each test applies it)
    public_url: str
    storage_dir: Path
    s3: S3Endpoint
    dataset_id: int
    image_id: int
    image_key: str  # an object that exists in the local store
    job_id: str  # a queued job
    pipeline_id: str  # a pipeline started by a signed request ...
    signed_start: tuple[bytes, dict[str, str]]  # ... with these bytes and headers (the replay case resends them)
    meta_state: str  # an OAuth state issued for Facebook Login, still unused
    prepared: Any = None  # what the running case's ``prepare`` returned


@dataclass(frozen=True)
class Outcome:
    status: int | str  # HTTP status, CLI exit code, or the exception type's name ("stored" / "imported" for accepts)
    message: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    name: str
    category: str  # upload | caption | prompt | body | header | id | oauth | cli
    act: Callable[[Arena], Outcome]
    status: int | str
    phrase: str  # must appear in the message (case-insensitive): the error names the problem
    prepare: Callable[[Arena], Any] | None = None  # runs before the census (e.g. a fresh dataset)
    rows: Mapping[str, int] = field(default_factory=dict)  # declared row-count changes, table -> delta
    objects: int = 0  # declared change in the number of stored objects
    check: Callable[[Arena, Outcome], None] | None = None  # more assertions on what was stored

    def __str__(self) -> str:
        return self.name


# --- the census -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Census:
    rows: dict[str, int]
    objects: frozenset[str]


def count_rows() -> dict[str, int]:
    with session_scope() as session:
        return {name: session.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in SQLModel.metadata.tables.items()}


def local_objects(root: Path) -> set[str]:
    """Every file under the local store's root, temporary files of a half-done write included."""
    return {f"local:{Path(folder, name).relative_to(root)}" for folder, _, names in os.walk(root) for name in names}


def s3_objects(endpoint: S3Endpoint) -> set[str]:
    store = S3ObjectStore(endpoint.endpoint, endpoint.access_key, endpoint.secret_key, S3_BUCKET)
    return {f"s3:{info.key}" for info in store.list("", limit=100_000)}


def census(arena: Arena) -> Census:
    return Census(count_rows(), frozenset(local_objects(arena.storage_dir) | s3_objects(arena.s3)))


# --- entry points → outcomes --------------------------------------------------------------------------


def http_outcome(response: httpx.Response) -> Outcome:
    try:
        body = response.json()
    except ValueError:
        body = None
    message = body["error"] if isinstance(body, dict) and "error" in body else response.text[:2000]
    return Outcome(response.status_code, message, {"headers": response.headers, "body": body})


def oauth_outcome(response: httpx.Response) -> Outcome:
    """The callback answers with a redirect to the Accounts page carrying ``oauth_error``."""
    location = response.headers.get("location", "")
    query = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
    return Outcome(response.status_code, query.get("oauth_error", response.text[:2000]),
                   {"location": location, "headers": response.headers})


def call(function: Callable[[], Any]) -> Outcome:
    """A core function the pages call: a typed studio error is the refusal; anything else is a bug."""
    try:
        result = function()
    except StudioError as error:
        return Outcome(type(error).__name__, str(error))
    return Outcome("ok", repr(result), {"result": result})


def assert_clear_refusal(case: Case, outcome: Outcome) -> None:
    assert outcome.status == case.status, f"{case.name}: expected {case.status!r}, got {outcome.status!r}: " \
                                          f"{outcome.message[:500]}"
    assert case.phrase.lower() in outcome.message.lower(), f"{case.name}: {case.phrase!r} not in {outcome.message!r}"
    assert "Traceback" not in outcome.message and 'File "' not in outcome.message, outcome.message
    if isinstance(outcome.status, int) and outcome.status >= 100:
        assert outcome.status < 500, f"{case.name}: server error {outcome.status}"


def assert_unchanged(case: Case, before: Census, after: Census) -> None:
    row_changes = {name: after.rows[name] - before.rows[name] for name in before.rows
                   if after.rows[name] != before.rows[name]}
    assert row_changes == dict(case.rows), f"{case.name}: rows changed {row_changes}, declared {dict(case.rows)}"
    added, removed = after.objects - before.objects, before.objects - after.objects
    assert not removed, f"{case.name}: objects removed {sorted(removed)}"
    assert len(added) == case.objects, f"{case.name}: objects added {sorted(added)}, declared {case.objects}"


def run_case(arena: Arena, case: Case) -> Outcome:
    arena.prepared = case.prepare(arena) if case.prepare else None
    before = census(arena)
    outcome = case.act(arena)
    after = census(arena)
    assert_clear_refusal(case, outcome)
    assert_unchanged(case, before, after)
    if case.check is not None:
        case.check(arena, outcome)
    return outcome
