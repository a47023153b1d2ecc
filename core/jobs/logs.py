"""Job log lines: live in a bounded Redis stream per job, durable in the database, written in batches.

A line is added to the job's stream at once (live tails see it within one poll) and kept in this
process's buffer until a background flusher writes it to the database with the others — every
``job_log_flush_s`` or ``job_log_flush_lines`` lines, when a job finishes, and when the process
exits — so a chatty job costs one insert per batch instead of one per line.

Each line's *cursor* is its stream id ``<ms>-<seq>`` as one number (ms × 10,000 + seq); it orders a
job's lines and is what a reader passes back to continue. Nothing is lost or doubled across the two
stores: the database holds a prefix of each job's lines (batches are written in order) and the
stream the newest ones, and a read joins them on the cursor. If Redis restarts, the lines not yet
written are still in the buffer and reach the database; if Redis is down, cursors come from the
clock and lines go to the database only.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import redis
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from core.config import get_settings
from core.db import session_scope
from core.infra.logging_setup import redact
from core.infra.redis import get_redis, redis_key
from core.models import JobLog, utcnow
from core.pagination import clamp_cursor

LEVELS = ("debug", "info", "warning", "error")
SEQ_SPACE = 10_000  # cursor = ms * SEQ_SPACE + seq
_logger = logging.getLogger("studio.jobs")


@dataclass(frozen=True)
class LogEntry:
    id: int  # the cursor
    level: str
    message: str
    created_at: datetime


def _stream_key(job_id: str) -> str:
    return redis_key("joblog", job_id)


def cursor_of(stream_id: bytes | str) -> int:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms) * SEQ_SPACE + int(seq or 0)


def stream_id_of(cursor: int) -> str:
    return f"{cursor // SEQ_SPACE}-{cursor % SEQ_SPACE}"


# --- writing ---------------------------------------------------------------------------------------------


class _Buffer:
    """Lines waiting for the database, per process; one daemon thread writes them in batches."""

    def __init__(self) -> None:
        self._lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_cursor: dict[str, int] = defaultdict(int)  # clock cursors when Redis is down

    def add(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._lines.append(row)
            full = len(self._lines) >= get_settings().job_log_flush_lines
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="joblog-flusher", daemon=True)
                self._thread.start()
        if full:
            self._wake.set()

    def clock_cursor(self, job_id: str) -> int:
        with self._lock:
            cursor = max(int(time.time() * 1000) * SEQ_SPACE, self._last_cursor[job_id] + 1)
            self._last_cursor[job_id] = cursor
            return cursor

    def _run(self) -> None:
        while True:
            self._wake.wait(get_settings().job_log_flush_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the database is down: keep the lines and try again on the next tick
                _logger.warning("could not write job log lines; keeping them for the next try", exc_info=True)

    def flush(self, job_id: str | None = None) -> int:
        """Write the buffered lines (of one job, or all) to the database, oldest first."""
        with self._lock:
            taken = [r for r in self._lines if job_id is None or r["job_id"] == job_id]
            if not taken:
                return 0
            self._lines = [r for r in self._lines if not (job_id is None or r["job_id"] == job_id)]
        try:
            _insert(taken)
        except Exception:
            with self._lock:  # back in front, in order, for the next flush
                self._lines = taken + self._lines
            raise
        return len(taken)


def _insert(rows: list[dict[str, Any]]) -> None:
    try:
        with session_scope() as session:
            session.execute(insert(JobLog), rows)
    except IntegrityError:
        # A cursor already stored (a line re-flushed after a lost commit, or a clock cursor that
        # collided with another process's): write one by one, skipping exact repeats.
        for row in rows:
            _insert_one(row)


def _insert_one(row: dict[str, Any]) -> None:
    for bump in range(SEQ_SPACE):
        try:
            with session_scope() as session:
                stored = session.execute(select(col(JobLog.message)).where(
                    col(JobLog.job_id) == row["job_id"], col(JobLog.cursor) == int(row["cursor"]) + bump
                )).scalar_one_or_none()
                if stored is not None and stored == row["message"]:
                    return  # this very line is already there
                if stored is None:
                    session.execute(insert(JobLog), [{**row, "cursor": int(row["cursor"]) + bump}])
                    return
        except IntegrityError:
            continue


_buffer = _Buffer()
atexit.register(lambda: _buffer.flush())


def flush(job_id: str | None = None) -> int:
    """Write buffered lines now (a finished job's, before it is reported; everything at shutdown)."""
    return _buffer.flush(job_id)


def append_log(job_id: str, message: str, *, level: str = "info", durable: bool = False) -> LogEntry:
    """Log a line for a job. ``durable`` writes it (and the job's buffered lines) to the database now:
    for lines written outside the worker running the job (cancel, retry, the reconciler)."""
    level = level if level in LEVELS else "info"
    message = redact(message)[:10_000]  # job logs are shown and downloaded: no secret may reach them
    now = utcnow()
    _logger.log(logging.getLevelName(level.upper()), "[job %s] %s", job_id, message)
    try:
        stream_id = get_redis().xadd(
            _stream_key(job_id), {"level": level, "message": message, "ts": now.isoformat()},
            maxlen=get_settings().job_log_stream_maxlen, approximate=True,
        )
        cursor = cursor_of(stream_id)
    except redis.RedisError:
        cursor = _buffer.clock_cursor(job_id)  # the database copy is the durable one; tails fall back to it
    _buffer.add({"job_id": job_id, "cursor": cursor, "level": level, "message": message, "created_at": now})
    if durable:
        _buffer.flush(job_id)
    return LogEntry(id=cursor, level=level, message=message, created_at=now)


# --- reading ---------------------------------------------------------------------------------------------


def _stream_reply(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    # The client does not decode responses (make_redis): XRANGE answers (id, fields) pairs of bytes.
    return cast("list[tuple[bytes, dict[bytes, bytes]]]", reply)


def _entry(stream_id: bytes, fields: dict[bytes, bytes]) -> LogEntry:
    return LogEntry(id=cursor_of(stream_id), level=fields[b"level"].decode(), message=fields[b"message"].decode(),
                    created_at=datetime.fromisoformat(fields[b"ts"].decode()))


def _stream_entries(job_id: str, after: int, limit: int) -> tuple[list[LogEntry], int | None]:
    """Stream lines after the cursor, and the stream's first cursor (None: no stream)."""
    client = get_redis()
    key = _stream_key(job_id)
    first = _stream_reply(client.xrange(key, "-", "+", count=1))
    if not first:
        return [], None
    entries = _stream_reply(client.xrange(key, f"({stream_id_of(after)}", "+", count=limit))
    return [_entry(stream_id, fields) for stream_id, fields in entries], cursor_of(first[0][0])


def _from_database(job_id: str, after: int, limit: int) -> list[LogEntry]:
    with session_scope() as session:
        rows = session.execute(
            select(col(JobLog.cursor), col(JobLog.level), col(JobLog.message), col(JobLog.created_at))
            .where(col(JobLog.job_id) == job_id, col(JobLog.cursor) > after)
            .order_by(col(JobLog.cursor))
            .limit(limit)
        ).all()
    return [LogEntry(id=r.cursor, level=r.level, message=r.message, created_at=r.created_at) for r in rows]


@dataclass(frozen=True)
class LogPage:
    entries: list[LogEntry]
    cursor: int  # pass back as ``after`` to continue; unchanged when nothing new arrived


def _read(job_id: str, after: int, limit: int) -> list[LogEntry]:
    try:
        live, first = _stream_entries(job_id, after, limit)
    except redis.RedisError:
        return _from_database(job_id, after, limit)
    if first is not None and first <= after:
        return live  # the stream holds everything after the cursor
    stored = _from_database(job_id, after, limit)
    last = stored[-1].id if stored else after
    # Stream lines count only where they continue what is stored: lines between the two may still be
    # in a writer's buffer (after a Redis restart), and a reader must never step past them. A job with
    # nothing stored yet and a stream never trimmed is the one exception: its stream is its whole log.
    continues = first is not None and (first <= last or (after == 0 and not stored and _untrimmed(job_id)))
    newer = [e for e in live if e.id > last] if continues else []
    return (stored + newer)[:limit]


def _untrimmed(job_id: str) -> bool:
    return get_redis().xlen(_stream_key(job_id)) < get_settings().job_log_stream_maxlen


def read_logs(job_id: str, *, after: int = 0, limit: int = 500, min_level: str = "debug") -> LogPage:
    """Lines with a cursor above ``after``, oldest first, at or above ``min_level``."""
    limit = max(1, min(limit, 5_000))
    after = clamp_cursor(after)
    entries = _read(job_id, after, limit)
    threshold = LEVELS.index(min_level) if min_level in LEVELS else 0
    cursor = entries[-1].id if entries else after
    return LogPage([e for e in entries if LEVELS.index(e.level) >= threshold], cursor)


def tail_logs(job_id: str, *, lines: int = 20) -> list[LogEntry]:
    """The newest lines of a job's log, oldest first (for a glance; readers that must miss nothing use
    :func:`read_logs` with a cursor)."""
    lines = max(1, lines)
    try:
        newest = _stream_reply(get_redis().xrevrange(_stream_key(job_id), "+", "-", count=lines))
        live = [_entry(i, f) for i, f in newest]
    except redis.RedisError:
        live = []
    with session_scope() as session:
        rows = session.execute(
            select(col(JobLog.cursor), col(JobLog.level), col(JobLog.message), col(JobLog.created_at))
            .where(col(JobLog.job_id) == job_id).order_by(col(JobLog.cursor).desc()).limit(lines)
        ).all()
    merged = {r.cursor: LogEntry(id=r.cursor, level=r.level, message=r.message, created_at=r.created_at)
              for r in rows}
    merged.update({e.id: e for e in live})
    return [merged[cursor] for cursor in sorted(merged)][-lines:]
