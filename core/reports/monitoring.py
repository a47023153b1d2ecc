"""What the Monitoring page shows: queues, workers, job statistics, service health and hardware.

Pure functions returning dataclasses; no Streamlit. Every database query here is an index scan
(see ``core/migrations/versions/0007_job_finished_index.py`` and tests/test_monitoring.py), and
every list is bounded. Redis is read the way Dramatiq's Lua dispatch script writes it:

- ``<ns>:<queue>``           list of ready message ids      → ``ready``
- ``<ns>:<queue>.msgs``      hash of the queue's messages   → ready + fetched-but-unacked (``in_flight``)
- ``<ns>:<queue>.DQ.msgs``   hash of delayed messages       → ``delayed``
- ``<ns>:<queue>.XQ``        sorted set of dead letters     → ``dead``

GPU figures come from NVML through :data:`gpu_reader`, a module-level function tests replace.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import redis
from sqlalchemy import func, select
from sqlmodel import col

from core.config import get_settings
from core.db import session_scope
from core.errors import StudioError
from core.infra.redis import get_redis, redis_key
from core.jobs import queue as core_queue
from core.jobs.kinds import Queue
from core.jobs.lifecycle import aware
from core.models import Job, JobStatus, utcnow
from core.reports import health as core_health

WINDOWS: dict[str, timedelta] = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
DURATION_SAMPLE = 2_000  # finished jobs per kind the percentiles are computed from (the latest ones)
LOST_HORIZON_S = 3_600.0  # a worker silent for longer is forgotten
_SEEN_KEY = "monitor:workers-seen"  # hash: worker id → its last presence announcement we read


class ServiceDown(StudioError):
    """A service the page reads (Redis, the database) did not answer."""


# --- queues -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueStat:
    name: str
    ready: int  # waiting in the list, not yet fetched by a worker
    in_flight: int  # fetched by a worker, not yet acknowledged
    delayed: int  # waiting for their time (retry backoff, scheduled)
    dead: int  # dead-lettered
    oldest_queued_age_s: float | None  # the oldest job whose row says queued, from the database
    oldest_queued_job_id: str | None = None


def _oldest_queued_statement(queue_name: str) -> Any:
    # Served by ix_job_status_queue_created: one index seek per queue.
    return (
        select(col(Job.id), col(Job.created_at))
        .where(col(Job.status) == JobStatus.QUEUED.value, col(Job.queue) == queue_name)
        .order_by(col(Job.created_at))
        .limit(1)
    )


def _queue_names() -> list[str]:
    names = list(Queue.ALL)
    names += [q for q in get_settings().queues if q not in names]
    return names


def queue_stats() -> list[QueueStat]:
    names = _queue_names()
    try:
        namespace = core_queue.get_broker().namespace
        pipe = get_redis().pipeline(transaction=False)
        for name in names:
            base = f"{namespace}:{name}"
            pipe.llen(base)
            pipe.hlen(f"{base}.msgs")
            pipe.hlen(f"{base}.DQ.msgs")
            pipe.zcard(f"{base}.XQ")
        counts = pipe.execute()
    except (redis.RedisError, OSError) as error:
        raise ServiceDown(f"Redis is unreachable: {type(error).__name__}: {error}") from error
    now = utcnow()
    oldest: dict[str, tuple[str, datetime]] = {}
    with session_scope() as session:
        for name in names:
            row = session.execute(_oldest_queued_statement(name)).first()
            if row is not None:
                oldest[name] = (row[0], aware(row[1]) or now)
    stats = []
    for index, name in enumerate(names):
        ready, stored, delayed, dead = (int(c) for c in counts[index * 4:index * 4 + 4])
        job = oldest.get(name)
        stats.append(QueueStat(
            name=name, ready=ready, in_flight=max(stored - ready, 0), delayed=delayed, dead=dead,
            oldest_queued_age_s=(now - job[1]).total_seconds() if job else None,
            oldest_queued_job_id=job[0] if job else None,
        ))
    return stats


# --- workers ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningJob:
    id: str
    kind: str
    progress: float
    started_at: datetime | None


@dataclass(frozen=True)
class WorkerStat:
    id: str
    host: str
    pid: int
    queues: list[str]
    threads: int
    state: str  # "alive" | "lost"
    heartbeat_age_s: float
    started_at: float
    jobs: list[RunningJob] = field(default_factory=list)


def _stale_after_s() -> float:
    """A presence older than two missed beats means the worker stopped announcing itself."""
    return core_queue.WorkerPresence.interval_s * 2 + 1


def _process_gone(host: str, pid: int) -> bool:
    """True only when the worker ran on this machine and its process no longer exists (or is a zombie)."""
    if host != socket.gethostname():
        return False
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _running_jobs() -> dict[str, list[RunningJob]]:
    # Served by ix_job_status_heartbeat; running jobs are bounded by the workers' threads.
    statement = (
        select(col(Job.id), col(Job.kind), col(Job.progress), col(Job.started_at), col(Job.worker))
        .where(col(Job.status) == JobStatus.RUNNING.value)
        .order_by(col(Job.heartbeat_at))
        .limit(500)
    )
    by_worker: dict[str, list[RunningJob]] = {}
    with session_scope() as session:
        for job_id, kind, progress, started_at, worker in session.execute(statement).all():
            by_worker.setdefault(worker or "", []).append(RunningJob(job_id, kind, progress, aware(started_at)))
    return by_worker


def worker_stats(*, lost_horizon_s: float = LOST_HORIZON_S) -> list[WorkerStat]:
    """Workers announcing themselves (alive) and those that stopped within the horizon (lost).

    Presence keys expire shortly after a worker dies, so every read remembers the announcements it
    saw in a Redis hash; a remembered worker without a fresh announcement is shown as lost.
    """
    now = time.time()
    seen_key = redis_key(_SEEN_KEY)
    try:
        present = core_queue.list_workers()
        client = get_redis()
        if present:
            client.hset(seen_key, mapping={w.id: json.dumps(w.__dict__) for w in present})
        # redis types replies as bytes | str whatever the client; this one (no decode_responses) gives bytes
        remembered = {k.decode(): json.loads(v) for k, v in client.hgetall(seen_key).items()}  # type: ignore[union-attr]
    except (redis.RedisError, OSError) as error:
        raise ServiceDown(f"Redis is unreachable: {type(error).__name__}: {error}") from error

    infos: dict[str, dict[str, Any]] = dict(remembered)
    infos.update({w.id: w.__dict__ for w in present})
    present_ids = {w.id for w in present}
    forget: list[str] = []
    running = _running_jobs()
    stats = []
    for worker_id, info in infos.items():
        age = max(now - float(info.get("last_seen", 0)), 0.0)
        alive = (worker_id in present_ids and age <= _stale_after_s()
                 and not _process_gone(info.get("host", ""), int(info.get("pid", 0))))
        if not alive and age > lost_horizon_s:
            forget.append(worker_id)
            continue
        stats.append(WorkerStat(
            id=worker_id, host=info.get("host", ""), pid=int(info.get("pid", 0)),
            queues=list(info.get("queues", [])), threads=int(info.get("threads", 0)),
            state="alive" if alive else "lost", heartbeat_age_s=age,
            started_at=float(info.get("started_at", 0)), jobs=running.get(worker_id, []),
        ))
    if forget:
        try:
            get_redis().hdel(seen_key, *forget)
        except (redis.RedisError, OSError):
            pass  # forgotten on a later read
    stats.sort(key=lambda w: (w.state != "alive", w.host, w.pid))
    return stats


# --- job statistics -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindStat:
    kind: str
    succeeded: int
    failed: int
    cancelled: int
    finished: int  # succeeded + failed
    failure_rate: float  # failed / finished (0 when none finished)
    throughput_per_hour: float  # finished per hour over the window
    p50_s: float | None  # run time (started → finished) of succeeded jobs, latest DURATION_SAMPLE
    p95_s: float | None
    sample: int  # how many durations the percentiles come from


@dataclass(frozen=True)
class JobStats:
    window: str
    since: datetime
    kinds: list[KindStat]


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of ascending values (p in 0–100): always one of the values."""
    if not sorted_values:
        return None
    rank = max(math.ceil(p / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def _counts_statement(since: datetime) -> Any:
    # Served by ix_job_status_finished: one range scan per terminal status.
    terminal = [JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value]
    return (
        select(col(Job.kind), col(Job.status), func.count())
        .where(col(Job.status).in_(terminal), col(Job.finished_at) >= since)
        .group_by(Job.kind, Job.status)
    )


def _durations_statement(kind: str, since: datetime, limit: int = DURATION_SAMPLE) -> Any:
    # Served by ix_job_kind_status_finished: the latest `limit` succeeded jobs of the kind, newest first.
    return (
        select(col(Job.started_at), col(Job.finished_at))
        .where(col(Job.kind) == kind, col(Job.status) == JobStatus.SUCCEEDED.value, col(Job.finished_at) >= since)
        .order_by(col(Job.finished_at).desc())
        .limit(limit)
    )


def job_stats(window: str = "24h", *, now: datetime | None = None) -> JobStats:
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; one of {', '.join(WINDOWS)}")
    now = now or utcnow()
    since = now - WINDOWS[window]
    hours = WINDOWS[window].total_seconds() / 3600
    counts: dict[str, dict[str, int]] = {}
    durations: dict[str, list[float]] = {}
    with session_scope() as session:
        for kind, status, count in session.execute(_counts_statement(since)).all():
            counts.setdefault(kind, {})[status] = int(count)
        for kind in counts:
            values = []
            for started, finished in session.execute(_durations_statement(kind, since)).all():
                if started is not None and finished is not None:
                    values.append(max((aware(finished) - aware(started)).total_seconds(), 0.0))
            durations[kind] = sorted(values)
    kinds = []
    for kind in sorted(counts):
        by_status = counts[kind]
        succeeded, failed = by_status.get("succeeded", 0), by_status.get("failed", 0)
        finished = succeeded + failed
        values = durations[kind]
        kinds.append(KindStat(
            kind=kind, succeeded=succeeded, failed=failed, cancelled=by_status.get("cancelled", 0),
            finished=finished, failure_rate=failed / finished if finished else 0.0,
            throughput_per_hour=finished / hours, p50_s=percentile(values, 50), p95_s=percentile(values, 95),
            sample=len(values),
        ))
    return JobStats(window=window, since=since, kinds=kinds)


@dataclass(frozen=True)
class Failure:
    id: str
    kind: str
    status: str
    stage: str | None
    error: str
    finished_at: datetime | None


def _failures_statement(limit: int) -> Any:
    # Served by ix_job_status_finished, read backwards.
    return (
        select(col(Job.id), col(Job.kind), col(Job.status), col(Job.error_stage), col(Job.error), col(Job.finished_at))
        .where(col(Job.status) == JobStatus.FAILED.value)
        .order_by(col(Job.finished_at).desc())
        .limit(limit)
    )


def latest_failures(limit: int = 10) -> list[Failure]:
    limit = min(max(limit, 1), 100)
    with session_scope() as session:
        rows = session.execute(_failures_statement(limit)).all()
    return [Failure(id=r[0], kind=r[1], status=r[2], stage=r[3], error=(r[4] or "")[:500],
                    finished_at=aware(r[5])) for r in rows]


# --- health ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskStat:
    name: str
    path: str
    free_bytes: int
    total_bytes: int

    @property
    def used_fraction(self) -> float:
        return 1 - self.free_bytes / self.total_bytes if self.total_bytes else 0.0


@dataclass(frozen=True)
class Health:
    checks: list[core_health.Check]
    disks: list[DiskStat]


def _existing(path: Path) -> Path:
    """The folder itself, or its nearest existing parent (a folder not made yet lives on that disk)."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _disk(name: str, path: Path) -> DiskStat:
    usage = shutil.disk_usage(_existing(path))
    return DiskStat(name=name, path=str(path), free_bytes=usage.free, total_bytes=usage.total)


def health() -> Health:
    settings = get_settings()
    folders = [("data", settings.data_dir)]
    if settings.storage_backend == "local":
        folders.append(("storage", settings.effective_storage_dir))
    folders.append(("models", settings.models_dir))
    if hf_home := os.environ.get("HF_HOME"):
        folders.append(("model cache", Path(hf_home)))
    return Health(checks=core_health.check_all(include_workers=False),
                  disks=[_disk(name, path) for name, path in folders])


# --- hardware ---------------------------------------------------------------------------------------------


class GpuUnavailable(StudioError):
    """No GPU can be read here: no NVML library, no driver, or no device."""


@dataclass(frozen=True)
class GpuStat:
    index: int
    name: str
    utilization_pct: float
    memory_used_mib: float
    memory_total_mib: float
    temperature_c: float | None


@dataclass(frozen=True)
class Hardware:
    cpu_percent: float
    cpu_count: int
    ram_used_bytes: int
    ram_total_bytes: int
    gpus: list[GpuStat]
    no_gpu_reason: str | None  # set when there is no GPU to show: the page says so instead of zeros


def read_nvml_gpus() -> list[GpuStat]:
    """Every visible NVIDIA GPU through NVML (package ``nvidia-ml-py``); raises GpuUnavailable without one."""
    try:
        import pynvml  # optional (nvidia-ml-py): only machines with an NVIDIA driver need it
    except ImportError:
        raise GpuUnavailable("NVML is not installed (pip install nvidia-ml-py)") from None
    try:
        pynvml.nvmlInit()
    except Exception as error:  # noqa: BLE001 (NVMLError subclasses per cause; any means no GPU)
        raise GpuUnavailable(f"no NVIDIA driver: {error}") from None
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                temperature: float | None = float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))
            except Exception:  # noqa: BLE001 (not every GPU reports it)
                temperature = None
            gpus.append(GpuStat(
                index=index, name=name.decode() if isinstance(name, bytes) else str(name),
                utilization_pct=float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                memory_used_mib=memory.used / 2**20, memory_total_mib=memory.total / 2**20,
                temperature_c=temperature,
            ))
        return gpus
    finally:
        pynvml.nvmlShutdown()


# The edge to the hardware: tests replace it with a fake to render the page "with a GPU".
gpu_reader: Callable[[], list[GpuStat]] = read_nvml_gpus

psutil.cpu_percent(interval=None)  # the first reading is meaningless: take it now, not on the page


def hardware() -> Hardware:
    memory = psutil.virtual_memory()
    try:
        gpus = gpu_reader()
        reason = None if gpus else "no NVIDIA GPU on this machine"
    except GpuUnavailable as error:
        gpus, reason = [], str(error)
    return Hardware(
        cpu_percent=psutil.cpu_percent(interval=None), cpu_count=psutil.cpu_count() or 1,
        ram_used_bytes=memory.total - memory.available, ram_total_bytes=memory.total,
        gpus=gpus, no_gpu_reason=reason,
    )
