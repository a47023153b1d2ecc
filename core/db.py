"""Database engine, sessions and schema migrations.

SQLite is the embedded default; PostgreSQL is used through
``DATABASE_URL=postgresql+psycopg://…``. The schema is owned by Alembic
(``core/migrations``) and upgraded at start by the app, the workers and the tests.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, CursorResult, Engine, Result
from sqlmodel import Session, create_engine

from core.config import get_settings
from core.errors import NotFound

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

M = TypeVar("M")

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the UI read while a worker writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, *, autocommit: bool = False) -> Engine:
    # An autocommit engine's connections stay in that mode (switching a pooled connection per checkout
    # cost more than the statement it ran).
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10}, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, pool_recycle=1800, **options)


def get_engine(url: str | None = None, *, autocommit: bool = False) -> Engine:
    """One engine (and so one pool) per database URL per process, and one more for :func:`autocommit`."""
    url = url or get_settings().effective_database_url
    with _engines_lock:
        key = f"autocommit:{url}" if autocommit else url
        if key not in _engines:
            _engines[key] = make_engine(url, autocommit=autocommit)
        return _engines[key]


def dispose_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def autocommit() -> Iterator[Connection]:
    """A Core connection on which each statement commits by itself (no BEGIN … COMMIT around it).

    For hot paths that write with one prebuilt statement (the job lifecycle's create, claim and fenced
    writes): a single statement is atomic on its own, and without a Session, a BEGIN and a COMMIT it
    is one round trip on PostgreSQL and holds SQLite's write lock only while it runs (a transaction
    held it across Python code, which other threads' and processes' writes then waited for).
    """
    engine = get_engine(autocommit=True)
    if engine.dialect.name == "sqlite":
        # The caller's statement (and reading its RETURNING row, when SQLite commits it) runs inside the turn;
        # the pool's checkout and reset ran under it too before, a third of the time each write held the lock.
        with _sqlite_write_turn(engine):
            yield _thread_connection(engine)
        return
    with engine.connect() as connection:
        yield connection


_kept = threading.local()


def _thread_connection(engine: Engine) -> Connection:
    """This thread's own autocommit connection to a SQLite file, kept open between statements.

    A pool checkout and return cost a fifth of each hot-path write's CPU. A SQLite connection never goes
    stale (no server to restart), and in autocommit a failed statement leaves nothing open on it; each
    thread keeps one (a worker has a handful of threads), closed when another database is in use.
    """
    kept: Connection | None = getattr(_kept, "connection", None)
    if kept is not None and kept.engine is engine and not kept.closed and not kept.invalidated:
        return kept
    if kept is not None:
        kept.close()
    _kept.connection = engine.connect()
    return _kept.connection


class _WriteTurns:
    """Takes turns at a SQLite file's write lock: a thread lock within the process, ``flock`` across them.

    SQLite's own busy handler sleeps 1, 2, 5, 10… ms between tries, so under steady writes from several
    threads and processes a one-statement write waited milliseconds for a lock held for microseconds.
    Both locks here wake the next writer the moment the last one is done.
    """

    def __init__(self, path: Path) -> None:
        self._thread_lock = threading.Lock()
        self._file = open(path, "a")  # held open for the process's life: flock locks an open file

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._thread_lock:
            fcntl.flock(self._file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._file, fcntl.LOCK_UN)


_write_turns: dict[str, _WriteTurns] = {}


@contextmanager
def _sqlite_write_turn(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with _engines_lock:
        if database not in _write_turns:
            _write_turns[database] = _WriteTurns(Path(database + ".writers"))
        turns = _write_turns[database]
    with turns.turn():
        yield


def affected_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched.

    ``Session.execute`` is typed as returning a plain ``Result``; for those statements it is a
    ``CursorResult``, the one that carries the count.
    """
    return int(cast("CursorResult[Any]", result).rowcount or 0)


# Integer primary keys are 32-bit on PostgreSQL; a bigger id cannot exist (and would make the query fail).
MAX_ROW_ID = 2**31 - 1


def id_in_range(ident: object) -> bool:
    """False for an integer no row can have; looking it up raises OverflowError (SQLite) or DataError (PostgreSQL)."""
    return not isinstance(ident, int) or -MAX_ROW_ID - 1 <= ident <= MAX_ROW_ID


def get_or_raise(model: type[M], ident: object, what: str) -> M:
    """The row with this primary key, or NotFound naming it (``what`` reads like "job 'ab12'")."""
    if not id_in_range(ident):
        raise NotFound(f"{what} does not exist")
    with session_scope() as session:
        row = session.get(model, ident)
    if row is None:
        raise NotFound(f"{what} does not exist")
    return row


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed through attributes, not the ini, so '%' in passwords needs no escaping.
    config.attributes["database_url"] = url or get_settings().effective_database_url
    return config


def upgrade_schema(url: str | None = None) -> None:
    """Bring the schema to the newest migration; safe to call from every process."""
    command.upgrade(alembic_config(url), "head")


def ping() -> None:
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))
