"""One worker process: a Dramatiq Worker consuming chosen queues, and a supervisor of such processes.

Dramatiq's own CLI master exits when one of its children is SIGKILLed, so the studio runs
its worker processes itself: the supervisor restarts any that die, runs the reconciler and the
scheduler on timers in threads of their own, and forwards SIGTERM for a graceful stop (in-flight
messages are handed back).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import dramatiq

from core.automation.scheduler import scheduler_tick
from core.config import get_settings
from core.jobs.kinds import Queue
from core.jobs.lifecycle import reconcile, request_shutdown
from core.jobs.queue import WorkerPresence, get_broker
from core.jobs.routing import ModelRouter, install_router
from workers.actors import declare_actors
from workers.gpu_slots import slot_count
from workers.gpus import detect_gpus
from workers.metrics import install_worker_metrics
from workers.ml.preload import preload_ml_libraries

_logger = logging.getLogger("studio.workers")


@dataclass(frozen=True)
class WorkerGroup:
    name: str
    queues: tuple[str, ...]
    threads: int
    prefetch: int

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "workers", "worker",
            "--queues", ",".join(self.queues),
            "--threads", str(self.threads),
            "--prefetch", str(self.prefetch),
        ]


def default_groups(queues: list[str] | None = None) -> list[WorkerGroup]:
    """GPU work gets its own process with one thread and prefetch 1; CPU and default share one."""
    settings = get_settings()
    queues = queues or settings.queues
    unknown = sorted(set(queues) - set(Queue.ALL))
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(Queue.ALL)}")
    groups = []
    if Queue.GPU in queues:
        # One thread per GPU slot, and no message fetched beyond them: the rest stay queued in Redis.
        slots = slot_count()
        groups.append(WorkerGroup("gpu", (Queue.GPU,), slots, slots))
    others = tuple(q for q in queues if q != Queue.GPU)
    if others:
        groups.append(WorkerGroup("+".join(others), others, settings.cpu_worker_threads, 0))
    return groups


class StopRequest:
    """Set by SIGTERM or SIGINT; the main thread polls it with short sleeps.

    Not a threading.Event: its set() takes a lock, and a second signal arriving while the first
    handler held that lock ran the handler again inside it, which deadlocked the process. That
    happened on Ctrl-C: the whole group gets SIGINT, and the supervisor then sends its workers SIGTERM.
    The worker never stopped, and 40 s later the supervisor killed it. A plain flag takes no lock.
    """

    poll_s = 0.2

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> StopRequest:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._handle)
        return self

    def _handle(self, *_: object) -> None:
        self.requested = True

    def wait(self, timeout_s: float | None = None) -> bool:
        """Sleeps until a stop is requested (True) or ``timeout_s`` passes (False)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.requested:
            left = self.poll_s if deadline is None else min(self.poll_s, deadline - time.monotonic())
            if left <= 0:
                return False
            time.sleep(left)
        return True


def run_worker(queues: list[str], threads: int, prefetch: int) -> None:
    """Consume until SIGTERM/SIGINT, then stop gracefully."""
    settings = get_settings()
    broker = get_broker()
    install_worker_metrics(broker, settings)
    gpus = [gpu.as_dict() for gpu in detect_gpus()] if Queue.GPU in queues else []
    presence = WorkerPresence(queues, threads, gpus)
    router = None
    if Queue.GPU in queues:
        # What this worker holds is in its presence record; gpu jobs go first to a worker holding their model.
        router = ModelRouter(presence.info.id)
        presence.models = router.held
        presence.in_use = router.in_use
        router.on_change(presence.announce)
        install_router(router)
    declare_actors(broker, router)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(
        broker, queues=set(queues), worker_threads=threads, worker_timeout=settings.worker_idle_poll_ms
    )
    if prefetch:
        worker.queue_prefetch = prefetch
    if Queue.GPU in queues:
        preload_ml_libraries()  # before any worker thread: lazy imports are not thread-safe
    stop = StopRequest().install()
    worker.start()
    presence.start()
    _logger.info("worker %s consuming %s with %d thread(s)", presence.info.id, ",".join(queues), threads)
    stop.wait()
    _logger.info("worker %s stopping", presence.info.id)
    request_shutdown()  # running jobs hand themselves back at their next progress call
    presence.stop()
    worker.stop(timeout=30_000)
    broker.close()


class Periodic:
    """Calls ``task`` now and then every ``interval_s`` after each call ends, in a thread, until ``stop``.

    The reconciler and the scheduler run in these so that the supervisor's own loop only watches its workers: with the
    reconcile pass in that loop, a worker killed during a long pass (a backlog re-enqueued after a Redis data loss, a
    slow database) was restarted only when the pass ended, and its jobs waited for it (58 s in bench/chaos.py).
    """

    def __init__(self, name: str, task: Callable[[], None], interval_s: float, stop: StopRequest) -> None:
        self.task, self.interval_s, self._stop = task, interval_s, stop
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Periodic:
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.requested:
            self.task()  # logs its own failures
            if self._stop.wait(self.interval_s):
                return

    def join(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)


class Supervisor:
    """Keeps one process per worker group alive; reconciles job state and runs the scheduler on timers."""

    restart_backoff_max_s = 30.0
    # A process that lived this long came up fine: its death (SIGKILL, OOM) is no crash loop, and it is restarted
    # at once. Counting every death within 60 s as one made a host whose workers were killed a few times wait up to
    # 30 s with no worker at all, which delayed redelivery of its jobs past 60 s (bench/chaos.py).
    crash_loop_window_s = 10.0

    def __init__(self, groups: list[WorkerGroup], *, reconcile_interval_s: float | None = None) -> None:
        self.groups = groups
        self.reconcile_interval_s = reconcile_interval_s or get_settings().reconcile_interval_s
        self.scheduler_interval_s = get_settings().scheduler_interval_s
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._failures: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._stop = StopRequest()

    def _spawn(self, group: WorkerGroup) -> None:
        self.processes[group.name] = subprocess.Popen(group.command())
        self._started[group.name] = time.monotonic()
        _logger.info("started worker group %s (pid %d)", group.name, self.processes[group.name].pid)

    def _reconcile(self) -> None:
        try:
            report = reconcile()
        except Exception:
            _logger.warning("reconcile failed", exc_info=True)
            return
        if report.total or report.expedited:
            _logger.warning(
                "reconciled: %d requeued, %d orphaned, %d timed out, %d redelivered jobs moved to the queue head",
                len(report.requeued), len(report.orphaned), len(report.timed_out), len(report.expedited),
            )

    def _schedule(self) -> None:
        """Hand due posts to the workers and advance content production (safe with several supervisors)."""
        try:
            report = scheduler_tick()
        except Exception:
            _logger.warning("scheduler tick failed", exc_info=True)
            return
        if report.claimed or report.failed_swept:
            _logger.info("scheduler: %d post(s) handed to workers, %d stuck post(s) failed",
                         len(report.claimed), report.failed_swept)

    def run(self) -> int:
        self._stop.install()
        for group in self.groups:
            self._spawn(group)
        timers = [Periodic("reconciler", self._reconcile, self.reconcile_interval_s, self._stop).start(),
                  Periodic("scheduler", self._schedule, self.scheduler_interval_s, self._stop).start()]
        while not self._stop.wait(0.25):
            for group in self.groups:
                process = self.processes[group.name]
                code = process.poll()
                if code is None:
                    continue
                # Back off only when a group crash-loops (dies right after starting); any other death restarts at once.
                if time.monotonic() - self._started[group.name] > self.crash_loop_window_s:
                    self._failures[group.name] = 0
                failures = self._failures.get(group.name, 0) + 1
                self._failures[group.name] = failures
                delay = min(0.5 * 2 ** (failures - 1), self.restart_backoff_max_s) if failures > 3 else 0
                _logger.warning("worker group %s exited with %s; restarting in %.1f s", group.name, code, delay)
                if delay and self._stop.wait(delay):
                    break
                self._spawn(group)
        code = self.shutdown()
        for timer in timers:  # daemons: a pass still going after this is cut off (every step of it is idempotent)
            timer.join(5.0)
        return code

    def shutdown(self, timeout_s: float = 40.0) -> int:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        return 0
