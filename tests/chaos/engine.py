"""The chaos engine: mixed jobs through real supervised workers while worker processes are SIGKILLed
and Redis restarts with its data lost; then it counts what was lost, duplicated or slow to come back.

It runs in a configured studio (environment + migrated database, as the ``studio`` fixture or
``bench/chaos.py`` prepare it) and drives everything through core, as the app would:

1. build what the jobs need: one 2-image dataset per caption job, the tiny SD 1.5 for ``generate``;
2. start ``python -m workers run`` supervisors (they restart killed workers and reconcile);
3. create the jobs spread over the chaos window, SIGKILL the worker process of a random running job
   every ``kill_every_s`` and restart Redis empty once in the middle;
4. wait until every job is terminal, snapshot them, let the workers run on for ``settle_s`` and
   check that no finished job changed (ran or finished again) and that no side effect is doubled.

Redelivery time of a killed job = from the SIGKILL until its next attempt is claimed (``attempts``
went up), seen by a poller every 0.1 s.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.factories import days_from_today
from tests.services import stop_process_groups

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()

DEFAULT_MIX: tuple[tuple[str, float], ...] = (
    ("noop", 0.40), ("sleep", 0.40), ("caption", 0.07), ("generate", 0.08), ("plan", 0.05),
)


@dataclass(frozen=True)
class ChaosPlan:
    jobs: int = 1000
    kills: int = 20
    kill_every_s: float = 6.0
    redis_restarts: int = 1
    supervisors: int = 2  # each runs a gpu worker and a cpu+default worker process
    mix: tuple[tuple[str, float], ...] = DEFAULT_MIX
    deadline_s: float = 1200.0  # after the last job is created
    settle_s: float = 12.0  # > the 8 s lease: a stray redelivery of a finished job would show by then
    seed: int = 12

    @classmethod
    def short(cls) -> ChaosPlan:
        """The CI form: a few minutes on 2 shared cores."""
        return cls(jobs=150, kills=3, kill_every_s=8.0, deadline_s=150.0)

    @property
    def window_s(self) -> float:
        """Jobs are created, and workers killed, over this many seconds."""
        return max(self.kills, 1) * self.kill_every_s + self.kill_every_s / 2


@dataclass
class Redelivery:
    job_id: str
    kind: str
    killed_attempt: int
    killed_at: float
    seconds: float | None = None


@dataclass
class ChaosReport:
    jobs: int = 0
    kills: int = 0
    restarts: int = 0
    lost: list[str] = field(default_factory=list)  # never reached a terminal status
    duplicated: list[str] = field(default_factory=list)  # "job id: what happened twice"
    redeliveries: list[Redelivery] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def redelivery_s(self) -> list[float]:
        return sorted(r.seconds for r in self.redeliveries if r.seconds is not None)

    @property
    def p50_s(self) -> float | None:
        return statistics.median(self.redelivery_s) if self.redelivery_s else None

    @property
    def max_s(self) -> float | None:
        return max(self.redelivery_s) if self.redelivery_s else None

    def table(self) -> str:
        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        rows = [
            ("jobs", str(self.jobs)), ("kills", str(self.kills)), ("restarts", str(self.restarts)),
            ("lost", str(len(self.lost))), ("duplicated", str(len(self.duplicated))),
            ("redelivered", f"{len(self.redelivery_s)} of {len(self.redeliveries)} killed jobs"),
            ("redelivery p50 (s)", seconds(self.p50_s)), ("redelivery max (s)", seconds(self.max_s)),
            ("statuses", ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))),
            ("kinds", ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items()))),
            ("wall (s)", f"{self.seconds:.0f}"),
        ]
        for n, item in enumerate(sorted(self.redeliveries, key=lambda r: r.killed_at), start=1):
            rows.append((f"  killed {n}", f"{item.kind} attempt {item.killed_attempt} → {seconds(item.seconds)} s"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"| {name.ljust(width)} | {value} |" for name, value in rows)


# --- workers ------------------------------------------------------------------------------------------


class Fleet:
    """Supervisors (``python -m workers run``) in their own process groups, with this environment."""

    def __init__(self) -> None:
        self.supervisors: list[subprocess.Popen[bytes]] = []

    def start(self, count: int, queues: str = "gpu,cpu,default") -> None:
        for _ in range(count):
            self.supervisors.append(subprocess.Popen(
                [sys.executable, "-m", "workers", "run", "--queues", queues], cwd=ROOT, env=dict(os.environ),
                start_new_session=True,
            ))

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` is a worker process of one of our supervisors (we kill nothing else)."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        return parent in {s.pid for s in self.supervisors if s.poll() is None}

    def alive(self) -> bool:
        return all(s.poll() is None for s in self.supervisors)

    def stop(self) -> None:
        stop_process_groups(self.supervisors, timeout=60)


# --- the jobs -------------------------------------------------------------------------------------------


def model_environment(tiny_models: dict[str, Path]) -> dict[str, str]:
    """What the workers need to caption offline with the tiny BLIP (set it before ``run_chaos``)."""
    return {"STUDIO_CAPTION_MODEL": str(tiny_models["blip"]), "HF_HUB_OFFLINE": "1"}


def link_tiny_sd15(tiny_models: dict[str, Path]) -> None:
    """The tiny SD 1.5 where the seeded "tiny-lora" template looks for it (``models/tiny-sd15``)."""
    from core.config import get_settings

    target = get_settings().models_dir / "tiny-sd15"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(tiny_models["sd15"], target_is_directory=True)


def _choose_kinds(plan: ChaosPlan) -> list[str]:
    rng = random.Random(plan.seed)
    names, weights = zip(*plan.mix, strict=True)
    return rng.choices(names, weights=weights, k=plan.jobs)


def _caption_datasets(count: int) -> list[int]:
    from core.datasets.datasets import create_dataset, import_files
    from tests.factories import image_bytes

    ids = []
    for n in range(count):
        dataset = create_dataset(name=f"chaos {n}", trigger_word="ohwx")
        import_files(dataset.id, [(f"{i}.png", image_bytes(64, 64, seed=1000 * n + i)) for i in range(2)])
        ids.append(dataset.id)
    return ids


class JobMaker:
    """Creates job ``n`` of the mix through the same core calls the pages and the API use."""

    def __init__(self, plan: ChaosPlan) -> None:
        self.kinds = _choose_kinds(plan)
        self.datasets = iter(_caption_datasets(self.kinds.count("caption")))
        self.rng = random.Random(plan.seed + 1)
        self.ids: list[str] = []

    def make(self, n: int) -> str:
        from core.generation import requests as generation
        from core.jobs import lifecycle as jobs

        kind = self.kinds[n]
        if kind == "noop":
            job = jobs.create_job("noop", {"note": f"chaos {n}"})
        elif kind == "sleep":
            job = jobs.create_job("sleep", {"seconds": round(self.rng.uniform(0.5, 3.0), 2), "steps": 10})
        elif kind == "caption":
            job = jobs.create_job("caption", {"dataset_id": next(self.datasets), "batch_size": 1})
        elif kind == "generate":  # one image per batch, so a kill between them leaves a partial job
            job = generation.submit_generation(template="tiny-lora", prompt=f"chaos {n}", width=64, height=64,
                                               steps=2, seed=n, count=2, batch_size=1)
        else:
            start = days_from_today(30 + n)  # from the clock: a fixed day passes, and its posts fall due
            job = jobs.create_job("plan", {"theme": f"chaos {n}", "platforms": ["instagram"], "start": str(start),
                                           "end": str(start + timedelta(days=6)), "posts_per_week": 3,
                                           "planner": "template"})
        self.ids.append(job.id)
        return job.id


# --- chaos --------------------------------------------------------------------------------------------------


class RedeliveryWatch:
    """Polls the killed jobs' attempt numbers to time each one's next claim."""

    def __init__(self) -> None:
        self.items: list[Redelivery] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="redelivery-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, items: list[Redelivery]) -> None:
        with self._lock:
            self.items.extend(items)

    def _loop(self) -> None:
        from sqlalchemy import select
        from sqlalchemy.exc import OperationalError

        from core.db import session_scope
        from core.models import Job

        while not self._stop.wait(0.1):
            with self._lock:
                pending = {r.job_id: r for r in self.items if r.seconds is None}
            if not pending:
                continue
            try:
                with session_scope() as session:
                    rows = session.execute(select(Job.id, Job.attempts).where(Job.id.in_(pending))).all()
            except OperationalError:  # the database is being restarted: look again
                rows = []
            now = time.monotonic()
            for job_id, attempts in rows:
                if attempts > pending[job_id].killed_attempt:
                    pending[job_id].seconds = now - pending[job_id].killed_at

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def kill_a_busy_worker(fleet: Fleet, rng: random.Random) -> list[Redelivery]:
    """SIGKILL the worker process of a random running job; returns the jobs that process was running."""
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import Job, JobStatus

    with session_scope() as session:
        running = session.execute(select(Job.worker).where(Job.status == JobStatus.RUNNING)).scalars().all()
    pids = sorted({int(w.rsplit(":", 1)[1]) for w in running if w and w.startswith(f"{HOST}:")})
    pids = [pid for pid in pids if fleet.owns(pid)]
    if not pids:
        return []
    pid = rng.choice(pids)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # A dead process writes nothing more: what it was running stays "running" under its id until taken over.
    with session_scope() as session:
        rows = session.execute(
            select(Job.id, Job.kind, Job.attempts).where(Job.status == JobStatus.RUNNING,
                                                         Job.worker == f"{HOST}:{pid}")
        ).all()
    return [Redelivery(job_id=i, kind=k, killed_attempt=a, killed_at=killed_at) for i, k, a in rows]


def run_chaos(plan: ChaosPlan, *, restart_redis: Callable[[], None], log: Callable[[str], None] = print) -> ChaosReport:
    """Run the plan in the configured studio; ``restart_redis`` must restart it with its data lost."""
    report = ChaosReport()
    rng = random.Random(plan.seed + 2)
    maker = JobMaker(plan)
    report.kinds = Counter(maker.kinds)
    fleet = Fleet()
    watch = RedeliveryWatch()
    started = time.monotonic()
    try:
        fleet.start(plan.supervisors)
        watch.start()
        _drive(plan, maker, fleet, watch, rng, report, restart_redis, log)
        report.lost = _wait_terminal(maker.ids, time.monotonic() + plan.deadline_s, log)
        snapshot = _snapshot(maker.ids)
        time.sleep(plan.settle_s)  # workers and reconcilers keep running: nothing finished may change
        report.duplicated = _changed_since(snapshot) + _doubled_effects(maker.ids)
        if not fleet.alive():
            report.duplicated.append("a supervisor died during the run")
    finally:
        watch.stop()
        fleet.stop()
    report.jobs = len(maker.ids)
    report.redeliveries = watch.items
    report.statuses = Counter(s["status"] for s in _snapshot(maker.ids).values())
    report.seconds = time.monotonic() - started
    return report


def _drive(plan: ChaosPlan, maker: JobMaker, fleet: Fleet, watch: RedeliveryWatch, rng: random.Random,
           report: ChaosReport, restart_redis: Callable[[], None], log: Callable[[str], None]) -> None:
    """Create the jobs evenly over the window; kill every ``kill_every_s``; restart Redis between two kills."""
    begin = time.monotonic()
    kill_times = [(i + 1) * plan.kill_every_s for i in range(plan.kills)]
    restart_times = [(plan.kills // 2 + 0.5 + i) * plan.kill_every_s for i in range(plan.redis_restarts)]
    created = 0
    while created < plan.jobs or kill_times or restart_times:
        elapsed = time.monotonic() - begin
        due = plan.jobs if elapsed >= plan.window_s else int(plan.jobs * elapsed / plan.window_s) + 1
        while created < min(due, plan.jobs):
            maker.make(created)
            created += 1
        if kill_times and elapsed > plan.window_s + 120:
            log(f"[chaos] {len(kill_times)} kill(s) dropped: no job was running to kill")
            kill_times.clear()  # the jobs ran out before the kills did: report fewer kills, never hang
        if kill_times and elapsed >= kill_times[0]:
            killed = kill_a_busy_worker(fleet, rng)
            if killed:  # nothing running at this instant: try again on the next tick
                kill_times.pop(0)
                report.kills += 1
                watch.add(killed)
                log(f"[chaos {elapsed:5.1f} s] kill {report.kills}: {len(killed)} running job(s) "
                    f"({', '.join(r.kind for r in killed)})")
        if restart_times and elapsed >= restart_times[0]:
            restart_times.pop(0)
            restart_redis()
            report.restarts += 1
            log(f"[chaos {elapsed:5.1f} s] Redis restarted with its data lost")
        time.sleep(0.05)


def _wait_terminal(job_ids: list[str], deadline: float, log: Callable[[str], None]) -> list[str]:
    """Job ids still not terminal at the deadline (lost)."""
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import TERMINAL_STATUSES, Job

    pending = set(job_ids)
    last_note = 0.0
    while pending:
        with session_scope() as session:
            done = session.execute(
                select(Job.id).where(Job.id.in_(pending), Job.status.in_(list(TERMINAL_STATUSES)))
            ).scalars().all()
        pending -= set(done)
        if not pending or time.monotonic() > deadline:
            break
        if time.monotonic() - last_note > 15:
            last_note = time.monotonic()
            log(f"[chaos] waiting for {len(pending)} job(s) to finish")
        time.sleep(0.5)
    return sorted(pending)


def _snapshot(job_ids: list[str]) -> dict[str, dict[str, Any]]:
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import Job

    with session_scope() as session:
        rows = session.execute(
            select(Job.id, Job.status, Job.attempts, Job.finished_at, Job.result).where(Job.id.in_(job_ids))
        ).mappings().all()
    return {row["id"]: dict(row) for row in rows}


def _changed_since(before: dict[str, dict[str, Any]]) -> list[str]:
    """A finished job that was claimed or finished again since the snapshot ended more than once."""
    after = _snapshot(list(before))
    return [f"{job_id}: changed after it ended ({before[job_id]} → {after[job_id]})"
            for job_id in before if after[job_id] != before[job_id]]


def _doubled_effects(job_ids: list[str]) -> list[str]:
    """Side effects done twice (or, for a succeeded job, not exactly once)."""
    from sqlalchemy import func, select

    from core.db import session_scope
    from core.models import Asset, ContentPlan, DatasetImage, Job, JobStatus, Post

    problems: list[str] = []
    with session_scope() as session:
        jobs = session.execute(select(Job).where(Job.id.in_(job_ids))).scalars().all()
        assets = Counter(session.execute(select(Asset.job_id).where(Asset.job_id.in_(job_ids))).scalars())
        plans = Counter(session.execute(select(ContentPlan.job_id).where(ContentPlan.job_id.in_(job_ids))).scalars())
        posts = dict(session.execute(select(Post.plan_id, func.count()).group_by(Post.plan_id)).all())
        for job in jobs:
            succeeded = job.status == JobStatus.SUCCEEDED
            if job.kind == "sleep" and succeeded and job.result["attempt"] != job.attempts:
                problems.append(f"{job.id}: attempt {job.attempts} claimed after attempt {job.result['attempt']} "
                                "finished")
            elif job.kind == "generate":
                count = job.payload["count"]
                if assets[job.id] > count or (succeeded and assets[job.id] != count):
                    problems.append(f"{job.id}: {assets[job.id]} images stored for {count} asked")
            elif job.kind == "plan":
                if plans[job.id] > 1 or (succeeded and plans[job.id] != 1):
                    problems.append(f"{job.id}: {plans[job.id]} plans written")
                elif succeeded and posts.get(job.result["plan_id"], 0) != job.result.get("posts", 3):
                    # A redelivered plan job reuses the written plan and reports no count: the slots are 3.
                    problems.append(f"{job.id}: {posts.get(job.result['plan_id'], 0)} posts for "
                                    f"{job.result.get('posts', 3)} planned")
            elif job.kind == "caption" and succeeded:
                images = session.execute(
                    select(DatasetImage.caption_source).where(DatasetImage.dataset_id == job.payload["dataset_id"])
                ).scalars().all()
                if len(images) != 2 or set(images) != {"auto"}:
                    problems.append(f"{job.id}: dataset images after captioning: {images}")
    return problems
