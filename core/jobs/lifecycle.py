"""THE job lifecycle: create → enqueue → claim → run (progress, logs, checkpoints) → finish.

The database row is the source of truth; the broker only carries job ids. Every write a
running attempt makes is fenced by its attempt number, so a worker that lost its lease (it
hung, or was presumed dead and its job redelivered) can never overwrite the newer attempt.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Generic, TypeVar, cast, overload

import redis
from pydantic import ValidationError
from sqlalchemy import ColumnElement, Update, bindparam, func, insert, or_, select, update
from sqlalchemy.engine import CursorResult, Result
from sqlmodel import col

from core.characters.scope import in_scope, owner
from core.config import get_settings
from core.db import autocommit, get_or_raise, session_scope
from core.errors import (
    Conflict,
    InvalidInput,
    JobCancelled,
    JobInterrupted,
    JobLeaseLost,
    NotFound,
    describe_failure,
    describe_validation_error,
    referenced_by,
)
from core.infra.logging_setup import job_context
from core.infra.redis import get_redis, redis_key
from core.jobs import logs as joblogs
from core.jobs import queue, retry
from core.jobs.kinds import JobSpec, Payload, get_spec
from core.models import TERMINAL_STATUSES, Job, JobStatus, utcnow
from core.pagination import Page, clamp

_logger = logging.getLogger("studio.jobs")
_WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"

P = TypeVar("P", bound=Payload)
# A handler declares the payload it reads: ``def train(ctx: JobContext[TrainPayload])``.
Handler = Callable[["JobContext[Any]"], dict[str, Any] | None]


@overload
def aware(moment: datetime) -> datetime: ...
@overload
def aware(moment: None) -> None: ...
@overload
def aware(moment: datetime | None) -> datetime | None: ...
def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without a zone; every stored time is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def validate_payload(spec: JobSpec[P], payload: dict[str, Any] | None) -> P:
    try:
        return spec.payload_model.model_validate(payload or {})
    except ValidationError as error:
        raise InvalidInput(f"invalid payload for {spec.kind!r}: {describe_validation_error(error)}") from None


# --- creating and inspecting jobs -------------------------------------------------------------------


def _enqueue(job: Job, *, delay_ms: int | None = None, touch: bool = True) -> bool:
    """Hand a queued job to the broker. False when Redis is unreachable: the reconciler retries.

    ``enqueued_at`` tells the reconciler how long a queued job has been the broker's business;
    it is refreshed here unless the caller already set it in the row it just wrote.
    """
    try:
        queue.enqueue(job.id, kind=job.kind, queue=job.queue, delay_ms=delay_ms)
    except (redis.RedisError, OSError) as error:
        _logger.warning("job %s stays queued; broker unreachable (%s)", job.id, type(error).__name__)
        return False
    if touch:
        with session_scope() as session:
            session.execute(update(Job).where(col(Job.id) == job.id).values(enqueued_at=utcnow()))
    return True


def new_job(
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    parent_id: str | None = None,
    pipeline_id: str | None = None,
    character_id: int | None = None,
) -> Job:
    """A validated, queued Job row, not yet saved: for callers that save it in their own transaction
    (with the row that points at it) and then call :func:`enqueue_new`."""
    spec = get_spec(kind)
    # Whatever a kind's preparation looks up, it is named by the payload: missing, it is bad input (422).
    with referenced_by("payload"):
        validated, prepared_character = spec.prepare_payload(validate_payload(spec, payload))
    # model_validate builds the same ORM-ready row as Job(...) in about 60 % of the time (per job created).
    return Job.model_validate({
        "kind": spec.kind,
        "queue": spec.queue_for(validated),
        "payload": validated.model_dump(mode="json"),
        "max_attempts": spec.max_attempts,
        "time_limit_s": spec.time_limit_s,
        "parent_id": parent_id,
        "pipeline_id": pipeline_id,
        # Named by the caller, else by what the payload names (a dataset's character), else the scope's.
        "character_id": owner(character_id if character_id is not None else prepared_character),
        "enqueued_at": utcnow(),
    })


def enqueue_new(job: Job) -> None:
    """Hand a just-saved job to the broker; if Redis is down, the reconciler enqueues it later."""
    _enqueue(job, touch=False)


def create_job(
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    parent_id: str | None = None,
    pipeline_id: str | None = None,
    character_id: int | None = None,
) -> Job:
    """Validate, persist as queued, then enqueue. Invalid input raises InvalidInput and writes nothing."""
    job = new_job(kind, payload, parent_id=parent_id, pipeline_id=pipeline_id, character_id=character_id)
    # One prebuilt INSERT, not a Session's unit of work: creating is half of every job's database cost.
    with autocommit() as connection:
        connection.execute(_INSERT, {column.key: getattr(job, column.key) for column in _JOBS.columns})
    enqueue_new(job)
    return job


def get_job(job_id: str) -> Job:
    return get_or_raise(Job, job_id, f"job {job_id!r}")


def resolve_job_id(prefix: str) -> str:
    """Accept a unique prefix of a job id (the CLI shows ids shortened)."""
    prefix = prefix.strip().lower()
    if not prefix or not all(c in "0123456789abcdef" for c in prefix):
        raise InvalidInput(f"{prefix!r} is not a job id")
    with session_scope() as session:
        ids = session.execute(select(col(Job.id)).where(col(Job.id).startswith(prefix)).limit(2)).scalars().all()
    if not ids:
        raise NotFound(f"no job id starts with {prefix!r}")
    if len(ids) > 1:
        raise InvalidInput(f"{prefix!r} matches several jobs; give more characters")
    return ids[0]


def list_jobs(
    *,
    statuses: list[str] | None = None,
    kinds: list[str] | None = None,
    id_prefix: str | None = None,
    pipeline_id: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> Page[Job]:
    """Newest first, filtered and paginated (page size at most 200)."""
    page, page_size = clamp(page, page_size, max_page_size=200)
    conditions: list[ColumnElement[bool]] = []
    if statuses:
        conditions.append(col(Job.status).in_(statuses))
    if kinds:
        conditions.append(col(Job.kind).in_(kinds))
    if id_prefix:
        conditions.append(col(Job.id).startswith(id_prefix.strip().lower()))
    if pipeline_id:
        conditions.append(col(Job.pipeline_id) == pipeline_id)
    conditions += in_scope(col(Job.character_id))
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(Job).where(*conditions)).scalar_one()
        items = (
            session.execute(
                select(Job)
                .where(*conditions)
                .order_by(col(Job.created_at).desc(), col(Job.id).desc())
                .offset((page - 1) * page_size)
                .limit(page_size)
            )
            .scalars()
            .all()
        )
    return Page(items=list(items), total=int(total), page=page, page_size=page_size)


def count_by_status() -> dict[str, int]:
    with session_scope() as session:
        rows = session.execute(select(col(Job.status), func.count()).group_by(col(Job.status))).all()
    return {status: int(count) for status, count in rows}


# --- cancel and retry -------------------------------------------------------------------------------


def cancel_job(job_id: str) -> Job:
    """A queued job is cancelled at once; a running one is asked to stop at its next checkpoint."""
    now = utcnow()
    with session_scope() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise NotFound(f"job {job_id!r} does not exist")
        if job.status in TERMINAL_STATUSES:
            raise Conflict(f"job {job_id} already {job.status}; nothing to cancel")
        job.cancel_requested = True
        job.updated_at = now
        if job.status == JobStatus.QUEUED:
            job.status = JobStatus.CANCELLED
            job.finished_at = now
    joblogs.append_log(job_id, "cancel requested", level="warning", durable=True)
    return get_job(job_id)


def retry_job(job_id: str) -> Job:
    """Run a failed or cancelled job again; a handler with a checkpoint resumes from it."""
    with session_scope() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise NotFound(f"job {job_id!r} does not exist")
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise Conflict(f"only failed or cancelled jobs can be retried; job {job_id} is {job.status}")
        spec = get_spec(job.kind)
        job.status = JobStatus.QUEUED
        job.cancel_requested = False
        job.error = None
        job.error_stage = None
        job.finished_at = None
        job.enqueued_at = None
        job.max_attempts = retry.max_attempts_for_manual_retry(job.attempts, spec.max_attempts)
        job.updated_at = utcnow()
    joblogs.append_log(job_id, "retry requested", level="info", durable=True)
    queued = get_job(job_id)  # as queued: once enqueued, a worker may claim it before a read here
    _enqueue(job)
    return queued


# --- running a job (worker side) ----------------------------------------------------------------------


_JOBS = Job.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation; not in its stubs
_INSERT = insert(_JOBS)
# Built once: constructing SQLAlchemy statements per call costs more than running them here.
_FENCED_UPDATE = (
    update(_JOBS)
    .where(
        _JOBS.c.id == bindparam("fence_id"),
        _JOBS.c.attempts == bindparam("fence_attempt"),
        _JOBS.c.status == JobStatus.RUNNING.value,
    )
    .returning(_JOBS.c.cancel_requested)
)
_CLAIM = (
    update(_JOBS)
    .where(
        _JOBS.c.id == bindparam("claim_id"),
        or_(
            _JOBS.c.status == JobStatus.QUEUED.value,
            (_JOBS.c.status == JobStatus.RUNNING.value)
            & or_(_JOBS.c.heartbeat_at.is_(None), _JOBS.c.heartbeat_at < bindparam("stale_before")),
        ),
    )
    .values(
        status=JobStatus.RUNNING.value,
        attempts=_JOBS.c.attempts + 1,
        worker=bindparam("claim_worker"),
        started_at=func.coalesce(_JOBS.c.started_at, bindparam("claim_now")),
        heartbeat_at=bindparam("claim_now"),
        updated_at=bindparam("claim_now"),
    )
    .returning(*(_JOBS.c[name] for name in ("id", "kind", "queue", "payload", "checkpoint", "attempts",
                                            "max_attempts", "cancel_requested", "pipeline_id")))
)


@dataclass
class ClaimedJob:
    """What an attempt needs of its job, as the claim's RETURNING gave it (no ORM object per job)."""

    id: str
    kind: str
    queue: str
    payload: dict[str, Any]
    checkpoint: dict[str, Any] | None
    attempts: int  # this attempt's number: it fences every write the attempt makes
    max_attempts: int
    cancel_requested: bool
    pipeline_id: str | None


@lru_cache(maxsize=64)
def _fenced_update(columns: tuple[str, ...]) -> Update:
    """The fenced UPDATE setting these columns, built once per set of columns (a few dozen at most):
    building a statement per write cost as much as running it."""
    return _FENCED_UPDATE.values({name: bindparam(f"set_{name}", type_=_JOBS.c[name].type) for name in columns})


class JobContext(Generic[P]):
    """What a handler sees of its job: payload, progress, logs, stage, checkpoint, cancellation."""

    def __init__(self, job: ClaimedJob, payload: P, attempt: int) -> None:
        self.job_id = job.id
        self.kind = job.kind
        self.payload = payload
        self.attempt = attempt
        self.checkpoint: dict[str, Any] | None = job.checkpoint
        self.current_stage: str | None = None
        self.cancel_requested = False
        self.lease_lost = False
        self._last_progress_write = 0.0
        self.finished_as: JobStatus | None = None  # the final status this attempt wrote, if it landed

    # Every write below is fenced: it only lands while this attempt still owns the job.
    def _write(self, **values: Any) -> None:
        values.setdefault("updated_at", utcnow())
        params = {f"set_{name}": value for name, value in values.items()}
        with autocommit() as connection:
            row = connection.execute(
                _fenced_update(tuple(values)), {**params, "fence_id": self.job_id, "fence_attempt": self.attempt}
            ).first()
        if row is None:
            self.lease_lost = True
        elif row[0]:
            self.cancel_requested = True

    def check_cancelled(self) -> None:
        """Raise if this attempt should stop now: cancelled, taken over, or its worker is stopping."""
        if self.lease_lost:
            raise JobLeaseLost(f"job {self.job_id} attempt {self.attempt} was taken over")
        if self.cancel_requested:
            raise JobCancelled(f"job {self.job_id} was cancelled")
        if _shutting_down.is_set():
            raise JobInterrupted(f"job {self.job_id} interrupted: its worker is shutting down")

    def stage(self, name: str) -> None:
        self.current_stage = name
        self._write(stage=name)
        self.log(f"stage: {name}")
        self.check_cancelled()

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        """Record progress (0–1); also the place where cancellation is noticed.

        Writes are throttled to five a second; ``force`` writes anyway, so a cancel is seen at
        once (training forces it every step, so a cancel stops it within one step).
        """
        now = time.monotonic()
        final = fraction >= 1.0
        if final or force or now - self._last_progress_write >= 0.2:
            self._last_progress_write = now
            values: dict[str, Any] = {"progress": min(max(fraction, 0.0), 1.0), "heartbeat_at": utcnow()}
            if message is not None:
                values["progress_message"] = message[:500]
            self._write(**values)
        self.check_cancelled()

    def log(self, message: str, *, level: str = "info") -> None:
        joblogs.append_log(self.job_id, message, level=level)

    def save_checkpoint(self, data: dict[str, Any]) -> None:
        self.checkpoint = data
        self._write(checkpoint=data, heartbeat_at=utcnow())
        self.check_cancelled()


class _Heartbeats:
    """One thread per worker process keeps the leases of all its running attempts fresh."""

    def __init__(self) -> None:
        self._active: dict[str, JobContext[Any]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, ctx: JobContext[Any]) -> None:
        with self._lock:
            self._active[ctx.job_id] = ctx
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="job-heartbeats", daemon=True)
                self._thread.start()

    def remove(self, ctx: JobContext[Any]) -> None:
        with self._lock:
            if self._active.get(ctx.job_id) is ctx:
                del self._active[ctx.job_id]

    def _loop(self) -> None:
        while True:
            time.sleep(get_settings().job_heartbeat_s)
            with self._lock:
                contexts = list(self._active.values())
            for ctx in contexts:
                try:
                    ctx._write(heartbeat_at=utcnow())
                except Exception:
                    _logger.warning("heartbeat for job %s failed", ctx.job_id, exc_info=True)


_heartbeats = _Heartbeats()
_shutting_down = threading.Event()


def request_shutdown() -> None:
    """Ask every running attempt in this process to hand its job back at its next progress call.

    Workers call this on SIGTERM, so a deploy or restart does not wait for a long training run to
    end: the job is re-queued at once and resumes from its checkpoint on the next worker.
    """
    _shutting_down.set()


def shutting_down() -> bool:
    """True once this worker process was asked to stop (long jobs save a checkpoint and hand back)."""
    return _shutting_down.is_set()


def _claim(job_id: str) -> tuple[ClaimedJob, int] | None:
    """Take the job for this attempt, or None when it is finished, cancelled or owned elsewhere.

    One atomic UPDATE … RETURNING both checks and takes the job, so two deliveries of the
    same message can never both run it.
    """
    settings = get_settings()
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.job_lease_s)
    with autocommit() as connection:
        row = connection.execute(
            _CLAIM,
            {"claim_id": job_id, "stale_before": stale_before, "claim_worker": _WORKER_ID, "claim_now": now},
        ).mappings().first()
    if row is not None:
        job = ClaimedJob(**row)
        return job, job.attempts
    try:
        current = get_job(job_id)
    except NotFound:
        _logger.warning("message for unknown job %s dropped", job_id)
        return None
    if current.status == JobStatus.RUNNING:
        # Another attempt holds a fresh lease. Look again once it would have expired, in case
        # that worker is dead and this message is its redelivery.
        heartbeat = aware(current.heartbeat_at) or now
        wait_s = settings.job_lease_s - (utcnow() - heartbeat).total_seconds() + 0.5
        queue.enqueue(job_id, kind=current.kind, queue=current.queue, delay_ms=int(max(wait_s, 0.5) * 1000))
    return None


def _finish(ctx: JobContext[Any], status: JobStatus, **values: Any) -> None:
    ctx._write(status=status, finished_at=utcnow(), **values)
    if not ctx.lease_lost:
        ctx.finished_as = status


def _retry_later(ctx: JobContext[Any], job: ClaimedJob, error: BaseException) -> None:
    delay_s = retry.backoff_s(ctx.attempt, get_settings())
    message = f"{type(error).__name__}: {error}"
    ctx._write(status=JobStatus.QUEUED, error=message, error_stage=ctx.current_stage, enqueued_at=utcnow())
    if ctx.lease_lost:
        return
    ctx.log(f"transient failure, retrying in {delay_s:.0f} s (attempt {ctx.attempt}/{job.max_attempts}): "
            f"{message}", level="warning")
    queue.enqueue(job.id, kind=job.kind, queue=job.queue, delay_ms=int(delay_s * 1000))


def _hand_back(ctx: JobContext[Any], job: ClaimedJob) -> None:
    ctx._write(status=JobStatus.QUEUED, max_attempts=retry.max_attempts_after_hand_back(job.max_attempts),
               enqueued_at=utcnow())
    if ctx.lease_lost:
        return
    ctx.log("worker shutting down: job handed back to the queue", level="warning")
    queue.enqueue(job.id, kind=job.kind, queue=job.queue)


FinishListener = Callable[[str, str], None]


@dataclass(frozen=True)
class _Listener:
    call: FinishListener
    kinds: frozenset[str] | None  # None: every kind
    pipeline_jobs_only: bool

    def wants(self, job: ClaimedJob) -> bool:
        if self.pipeline_jobs_only and job.pipeline_id is None:
            return False
        return self.kinds is None or job.kind in self.kinds


_finish_listeners: list[_Listener] = []


def on_job_finished(
    listener: FinishListener, *, kinds: Iterable[str] | None = None, pipeline_jobs_only: bool = False
) -> None:
    """Call ``listener(job_id, status)`` after a job this process ran reaches a final status.

    Follow-up work (attach media to a post, start a pipeline's next stage) hooks in here, so
    nothing polls; each listener must be idempotent, and a periodic sweep covers what a crash
    between the finish and the listener left undone. ``kinds`` and ``pipeline_jobs_only`` say which
    jobs a listener cares about, so every other job ends without its queries (most jobs concern none).
    """
    if any(known.call == listener for known in _finish_listeners):
        return
    _finish_listeners.append(_Listener(listener, frozenset(kinds) if kinds is not None else None,
                                       pipeline_jobs_only))


def _notify_finished(job: ClaimedJob, status: JobStatus) -> None:
    # The status is the one this attempt's fenced finish wrote: no need to read the row back.
    for listener in [known for known in _finish_listeners if known.wants(job)]:
        try:
            listener.call(job.id, status)
        except Exception:  # a follow-up's failure must not touch the finished job
            name = getattr(listener.call, "__name__", listener.call)
            _logger.warning("job-finished listener %s failed for job %s", name, job.id, exc_info=True)


def execute_job(job_id: str, handler: Handler) -> None:
    """Run one attempt of a job under the lifecycle. Safe to call twice with the same id."""
    claimed = _claim(job_id)
    if claimed is None:
        return
    job, attempt = claimed
    with job_context(job):  # every line logged during the attempt carries job_id, pipeline_id, actor
        _run_claimed(job, attempt, handler)


def _run_claimed(job: ClaimedJob, attempt: int, handler: Handler) -> None:
    job_id = job.id
    spec = get_spec(job.kind)
    try:
        payload = spec.payload_model.model_validate(job.payload)
    except ValidationError as error:
        ctx = JobContext(job, spec.payload_model.model_construct(), attempt)
        _finish(ctx, JobStatus.FAILED, error=f"invalid payload: {describe_validation_error(error)}",
                error_stage="validate")
        return
    ctx = JobContext(job, payload, attempt)
    if job.cancel_requested:
        _finish(ctx, JobStatus.CANCELLED)
        return
    _heartbeats.add(ctx)
    try:
        result = handler(ctx)
    except JobCancelled:
        ctx.log("cancelled", level="warning")
        _finish(ctx, JobStatus.CANCELLED, error_stage=ctx.current_stage)
    except JobLeaseLost:
        _logger.warning("job %s attempt %s lost its lease; stopping", job_id, attempt)
    except JobInterrupted:
        _hand_back(ctx, job)
    except Exception as error:  # noqa: BLE001 (every failure is recorded on the job)
        if retry.retries_in_job(error, attempt, job.max_attempts):
            _retry_later(ctx, job, error)
        else:
            ctx.log("".join(traceback.format_exception(error)).rstrip(), level="error")
            _finish(ctx, JobStatus.FAILED, error=describe_failure(error),
                    error_stage=ctx.current_stage or "run")
    else:
        _finish(ctx, JobStatus.SUCCEEDED, result=result or {}, progress=1.0)
    finally:
        _heartbeats.remove(ctx)
        try:
            joblogs.flush(job_id)  # the job's last lines are stored before anyone acts on its end
        except Exception:  # the database is down: the flusher keeps them and tries again
            _logger.warning("could not store the last log lines of job %s yet", job_id, exc_info=True)
    if ctx.finished_as is not None and not ctx.lease_lost:
        _notify_finished(job, ctx.finished_as)


# --- reconciliation -------------------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    requeued: list[str] = field(default_factory=list)  # queued jobs whose message was lost
    orphaned: list[str] = field(default_factory=list)  # running jobs whose worker and message are gone
    timed_out: list[str] = field(default_factory=list)  # running past their kind's time limit
    expedited: list[str] = field(default_factory=list)  # a dead worker's jobs moved to the head of their queue

    @property
    def total(self) -> int:
        return len(self.requeued) + len(self.orphaned) + len(self.timed_out)


def _rows_matched(result: Result[Any]) -> int:
    # An UPDATE's result is a CursorResult (it carries the count); Session.execute is typed as a plain Result.
    return int(cast("CursorResult[Any]", result).rowcount or 0)


def _jobs_in(status: JobStatus, older_than: datetime, column: Any, batch: int = 500) -> list[list[Job]]:
    """Batches of jobs in a status whose ``column`` is before a moment (keyset-paginated)."""
    batches: list[list[Job]] = []
    last_id = ""
    while True:
        with session_scope() as session:
            rows = list(
                session.execute(
                    select(Job)
                    .where(col(Job.status) == status, or_(column.is_(None), column < older_than), col(Job.id) > last_id)
                    .order_by(col(Job.id))
                    .limit(batch)
                ).scalars()
            )
        if not rows:
            return batches
        batches.append(rows)
        last_id = rows[-1].id


# A queued pass that re-enqueues a whole backlog (Redis lost its data) takes seconds; the orphans of dead workers are
# looked for again this often meanwhile, so their takeover never waits for the end of that pass.
_ORPHAN_RECHECK_S = 2.0
_REQUEUE_BATCH = 100


def _reconcile_orphans(report: ReconcileReport) -> None:
    """Requeue running jobs whose lease expired and whose message is gone, at the head of their queues.

    The same staleness as a claim's takeover (the lease): a job whose heartbeat is older and whose message is gone
    (Redis lost it, or its worker died holding it) waits for nothing else. The attempt fence keeps a merely slow
    worker from writing over the next attempt, exactly as when a redelivery takes the job over.
    """
    orphan_before = utcnow() - timedelta(seconds=get_settings().job_lease_s)
    orphaned: list[str] = []
    for jobs in _jobs_in(JobStatus.RUNNING, orphan_before, Job.heartbeat_at):
        present = queue.messages_present([j.id for j in jobs])
        # The broker redelivers these to a live worker; a dead worker's message went back to the
        # tail of its queue, so bring it to the head rather than behind the whole backlog.
        for job_id in queue.move_to_front([job.id for job in jobs if present[job.id]]):
            if job_id not in report.expedited:
                report.expedited.append(job_id)
        for job in jobs:
            if present[job.id]:
                continue
            with session_scope() as session:
                moved = _rows_matched(session.execute(
                    update(Job)
                    .where(col(Job.id) == job.id, col(Job.attempts) == job.attempts,
                           col(Job.status) == JobStatus.RUNNING)
                    .values(status=JobStatus.QUEUED, updated_at=utcnow(), enqueued_at=utcnow())
                ))
            if moved and _enqueue(job, touch=False):
                orphaned.append(job.id)
    # An orphan was running already: it goes to the head of its queue, not behind a backlog (after a Redis data
    # loss the queued pass re-enqueues that whole backlog, which put orphans behind it: 60-66 s takeovers).
    queue.move_to_front(orphaned)
    report.orphaned += orphaned


# Only one supervisor re-enqueues a lost backlog: each of them doing it doubled the messages after a Redis data loss
# (every copy but one is dropped at its claim, but workers spend the time fetching them while killed jobs wait).
# The lock lives as long as one batch may take, and each batch renews it; a holder that died frees it by expiring.
_REQUEUE_LOCK = "reconcile-requeue"
_REQUEUE_LOCK_S = 30.0


def _requeue_lost(report: ReconcileReport, grace: datetime) -> None:
    """Re-enqueue queued jobs whose message is gone (Redis lost them), unless another supervisor is at it."""
    lock = get_redis().lock(redis_key(_REQUEUE_LOCK), timeout=_REQUEUE_LOCK_S, blocking=False)
    if not lock.acquire():
        return  # another supervisor is re-enqueueing the backlog; it sees every queued job this one would
    try:
        checked = time.monotonic()
        for jobs in _jobs_in(JobStatus.QUEUED, grace, Job.enqueued_at, batch=_REQUEUE_BATCH):
            try:
                lock.reacquire()
            except redis.exceptions.LockError:
                return  # it expired: whoever holds it now goes on with the backlog
            present = queue.messages_present([j.id for j in jobs])
            requeued = [job.id for job in jobs if not present[job.id] and _enqueue(job, touch=False)]
            if requeued:  # one write per batch: a backlog of hundreds is re-enqueued in about a second
                with session_scope() as session:
                    session.execute(update(Job).where(col(Job.id).in_(requeued)).values(enqueued_at=utcnow()))
                report.requeued += requeued
            if time.monotonic() - checked >= _ORPHAN_RECHECK_S:
                _reconcile_orphans(report)
                checked = time.monotonic()
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass  # it expired (or Redis lost it) already: nothing of ours to free


def reconcile() -> ReconcileReport:
    """Repair what a crash or a Redis data loss left behind. Idempotent; run it as often as you like."""
    settings = get_settings()
    now = utcnow()
    report = ReconcileReport()

    _reconcile_orphans(report)
    _requeue_lost(report, now - timedelta(seconds=settings.reconcile_grace_s))

    with session_scope() as session:
        limited = session.execute(
            select(col(Job.id), col(Job.started_at), col(Job.time_limit_s), col(Job.attempts)).where(
                col(Job.status) == JobStatus.RUNNING, col(Job.time_limit_s).is_not(None)
            )
        ).all()
    for job_id, started_at, limit_s, attempts in limited:
        started = aware(started_at)
        assert started is not None and limit_s is not None  # a claim sets started_at; the query wants a limit
        if started + timedelta(seconds=limit_s) >= now:
            continue
        with session_scope() as session:
            session.execute(
                update(Job)
                .where(col(Job.id) == job_id, col(Job.attempts) == attempts, col(Job.status) == JobStatus.RUNNING)
                .values(status=JobStatus.FAILED, cancel_requested=True, finished_at=utcnow(),
                        error=f"exceeded its time limit of {limit_s} s", error_stage="time limit")
            )
        joblogs.append_log(job_id, f"failed: exceeded its time limit of {limit_s} s", level="error", durable=True)
        report.timed_out.append(job_id)
    return report
