"""Job log lines: durable in the database, live in a bounded Redis stream per job.

A line's database id is also its stream id (``<id>-0``) and the tail cursor, so a reader
can switch between the two sources without losing its place: the stream serves live tails,
the database serves history and everything after a Redis restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import redis
from sqlalchemy import select

from core.config import get_settings
from core.db import session_scope
from core.models import JobLog, utcnow
from core.queue import get_redis, redis_key

LEVELS = ("debug", "info", "warning", "error")
_logger = logging.getLogger("studio.jobs")


@dataclass(frozen=True)
class LogEntry:
    id: int
    level: str
    message: str
    created_at: datetime


def _stream_key(job_id: str) -> str:
    return redis_key("joblog", job_id)


def append_log(job_id: str, message: str, *, level: str = "info") -> LogEntry:
    level = level if level in LEVELS else "info"
    with session_scope() as session:
        row = JobLog(job_id=job_id, level=level, message=message[:10_000], created_at=utcnow())
        session.add(row)
        session.flush()
        entry = LogEntry(id=int(row.id or 0), level=row.level, message=row.message, created_at=row.created_at)
    _logger.log(logging.getLevelName(level.upper()), "[job %s] %s", job_id, entry.message)
    try:
        get_redis().xadd(
            _stream_key(job_id),
            {"level": entry.level, "message": entry.message, "ts": entry.created_at.isoformat()},
            id=f"{entry.id}-0",
            maxlen=get_settings().job_log_stream_maxlen,
            approximate=True,
        )
    except redis.RedisError:
        pass  # the database copy is the durable one; tails fall back to it
    return entry


def _from_stream(job_id: str, after: int, limit: int) -> list[LogEntry] | None:
    """Lines after the cursor from Redis, or None when the stream cannot vouch for completeness."""
    client = get_redis()
    key = _stream_key(job_id)
    first = client.xrange(key, "-", "+", count=1)
    if not first or int(first[0][0].split(b"-")[0]) > after:
        return None  # missing, or trimmed past the cursor: history lives in the database
    entries = client.xrange(key, f"({after}-0", "+", count=limit)
    return [
        LogEntry(
            id=int(stream_id.split(b"-")[0]),
            level=fields[b"level"].decode(),
            message=fields[b"message"].decode(),
            created_at=datetime.fromisoformat(fields[b"ts"].decode()),
        )
        for stream_id, fields in entries
    ]


def _from_database(job_id: str, after: int, limit: int) -> list[LogEntry]:
    with session_scope() as session:
        rows = session.execute(
            select(JobLog.id, JobLog.level, JobLog.message, JobLog.created_at)
            .where(JobLog.job_id == job_id, JobLog.id > after)
            .order_by(JobLog.id)
            .limit(limit)
        ).all()
    return [LogEntry(id=r.id, level=r.level, message=r.message, created_at=r.created_at) for r in rows]


@dataclass(frozen=True)
class LogPage:
    entries: list[LogEntry]
    cursor: int  # pass back as ``after`` to continue; unchanged when nothing new arrived


def read_logs(job_id: str, *, after: int = 0, limit: int = 500, min_level: str = "debug") -> LogPage:
    """Lines with an id above ``after``, oldest first, at or above ``min_level``."""
    limit = max(1, min(limit, 5_000))
    entries: list[LogEntry] | None = None
    if after > 0:
        try:
            entries = _from_stream(job_id, after, limit)
        except redis.RedisError:
            entries = None
    if entries is None:
        entries = _from_database(job_id, after, limit)
    threshold = LEVELS.index(min_level) if min_level in LEVELS else 0
    cursor = entries[-1].id if entries else after
    return LogPage([e for e in entries if LEVELS.index(e.level) >= threshold], cursor)


def tail_logs(job_id: str, *, lines: int = 20) -> list[LogEntry]:
    """The newest lines of a job's log, oldest first, without walking its history from a cursor."""
    with session_scope() as session:
        rows = session.execute(
            select(JobLog.id, JobLog.level, JobLog.message, JobLog.created_at)
            .where(JobLog.job_id == job_id).order_by(JobLog.id.desc()).limit(max(1, lines))
        ).all()
    return [LogEntry(id=r.id, level=r.level, message=r.message, created_at=r.created_at) for r in reversed(rows)]
