"""Page benchmark: server-side render time of the Monitoring and Jobs pages on a full database vs an empty one.

Each database (a fresh SQLite file, and with ``--postgres`` a fresh PostgreSQL database made through that
admin URL) is migrated and measured empty first — the baseline — then filled with 10,000 jobs (mixed kinds,
statuses and durations over 7 days) and 100,000 job log lines, and measured again. A render is one
AppTest run of the whole app script with the page open (sidebar health checks included), timed after a
warm-up; the table shows the median and best of N. The last column says whether the query plans of the
page's main queries use indexes (SQLite ``EXPLAIN QUERY PLAN``; PostgreSQL ``EXPLAIN`` after ANALYZE).

    .venv/bin/python bench/pages.py [--runs 15] [--jobs 10000] [--logs 100000] [--assets 10000]
    .venv/bin/python bench/pages.py --postgres postgresql+psycopg://user:pw@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/queue.py would shadow the standard
# library's `queue` module (which redis imports). Put the project root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse
import logging
import os
import random
import socket
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from typing import Any

GOAL_MS = 300.0
PAGES = {"monitoring": "pages/monitoring.py", "jobs": "pages/jobs.py", "home": "pages/home.py"}
STATUSES = [("succeeded", 80), ("failed", 10), ("cancelled", 4), ("queued", 4), ("running", 2)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def use_database(url: str) -> None:
    from core.config import reload_settings
    from core.db import dispose_engines, upgrade_schema
    from core.infra.redis import reset_clients

    os.environ["DATABASE_URL"] = url
    reload_settings()
    dispose_engines()
    reset_clients()
    upgrade_schema()


def fill(jobs: int, logs: int, assets: int = 0, seed: int = 7) -> None:
    """Jobs over the last 7 days with realistic durations, their log lines and assets, in bulk inserts."""
    from sqlalchemy import insert

    from core.catalogue import all_specs
    from core.db import session_scope
    from core.models import Asset, Job, JobLog, new_id, utcnow

    rng = random.Random(seed)
    specs = list(all_specs())
    statuses = [s for s, weight in STATUSES for _ in range(weight)]
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for _ in range(jobs):
        spec = rng.choice(specs)
        status = rng.choice(statuses)
        created = now - timedelta(seconds=rng.uniform(0, 7 * 86400))
        started = created + timedelta(seconds=rng.uniform(0.05, 30)) if status != "queued" else None
        duration = rng.lognormvariate(3, 1.2)  # median ≈ 20 s, long tail
        finished = started + timedelta(seconds=duration) if started and status != "running" else None
        rows.append({
            "id": new_id(), "kind": spec.kind, "queue": spec.queue, "status": status, "payload": {},
            "progress": 1.0 if status == "succeeded" else rng.random(), "attempts": 1, "max_attempts": 3,
            "cancel_requested": status == "cancelled", "created_at": created, "updated_at": finished or created,
            "enqueued_at": created, "started_at": started, "finished_at": finished,
            "heartbeat_at": finished or started, "worker": "bench:1" if status == "running" else None,
            "error": "RuntimeError: CUDA out of memory" if status == "failed" else None,
            "error_stage": "run" if status == "failed" else None,
        })
    log_rows: list[dict[str, Any]] = []
    per_job = max(logs // max(jobs, 1), 1)
    for index in range(logs):
        job = rows[(index // per_job) % len(rows)]
        moment = job["created_at"] + timedelta(milliseconds=index % per_job)
        log_rows.append({"job_id": job["id"], "cursor": int(moment.timestamp() * 1000) * 10_000 + index % per_job,
                         "created_at": moment, "level": "info", "message": f"step {index % per_job} of {per_job}"})
    asset_kinds = [("image", "generated", "image/png"), ("video", "video", "video/mp4"), ("lora", "lora", "")]
    asset_rows = [{"kind": kind, "source": source, "key": f"bench/{i:06d}", "content_type": content_type,
                   "size_bytes": 1000 + i, "prompt": f"prompt {i}", "meta": {},
                   "created_at": now - timedelta(seconds=rng.uniform(0, 30 * 86400))}
                  for i, (kind, source, content_type) in ((i, asset_kinds[i % 3]) for i in range(assets))]
    with session_scope() as session:
        for start in range(0, len(rows), 2000):
            session.execute(insert(Job.__table__), rows[start:start + 2000])
        for start in range(0, len(asset_rows), 2000):
            session.execute(insert(Asset.__table__), asset_rows[start:start + 2000])
        for start in range(0, len(log_rows), 10_000):
            session.execute(insert(JobLog.__table__), log_rows[start:start + 10_000])


def analyze() -> None:
    from sqlalchemy import text

    from core.db import get_engine

    with get_engine().begin() as connection:
        connection.execute(text("ANALYZE"))


def main_queries() -> list[Any]:
    """The statements that dominate each page: monitoring's job statistics and the job list."""
    from sqlalchemy import func, select

    from core.models import Job, utcnow
    from core.reports import monitoring

    # The page opens on the 24 h window. (For 7 d on this 7-day table PostgreSQL rightly prefers a sequential
    # scan: the window holds ~90 % of the rows.)
    since = utcnow() - monitoring.WINDOWS["24h"]
    return [
        monitoring._counts_statement(since),
        monitoring._durations_statement("sleep", since),
        monitoring._failures_statement(10),
        monitoring._oldest_queued_statement("cpu"),
        select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(50),  # the Jobs page's list
        select(func.count()).select_from(Job).where(Job.status.in_(["failed"])),  # its filtered count
    ]


def uses_indexes() -> tuple[bool, list[str]]:
    from core.db import get_engine

    engine = get_engine()
    plans = []
    with engine.connect() as connection:
        for statement in main_queries():
            sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
            prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
            plans.append(" | ".join(str(row[-1]) for row in connection.exec_driver_sql(prefix + sql)))
    if engine.dialect.name == "sqlite":
        # A temp B-tree for GROUP BY (a handful of kinds) or for the tie-breaking id is fine; a full sort is not.
        bad = [p for p in plans if "INDEX" not in p or "TEMP B-TREE FOR ORDER BY" in p
               or any(step.strip().startswith("SCAN job") and "INDEX" not in step for step in p.split("|"))]
    else:
        bad = [p for p in plans if "Index" not in p or "Seq Scan on job" in p]
    return not bad, bad


def time_page(page: str, runs: int) -> tuple[float, float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page(page).run()
    at.run()  # warm-up: imports, caches, prepared statements
    if at.exception:
        raise RuntimeError(f"{page} raised: {[e.message for e in at.exception]}")
    title = {"pages/monitoring.py": "Monitoring", "pages/jobs.py": "Jobs", "pages/home.py": "InfluencerAI Studio"}[page]
    if not at.title or at.title[0].value != title:
        raise RuntimeError(f"{page} did not render (title {[t.value for t in at.title]})")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        at.run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), min(times)


def measure(label: str, runs: int, jobs: int, logs: int, assets: int) -> list[dict[str, Any]]:
    results = []
    empty = {name: time_page(page, runs) for name, page in PAGES.items()}
    started = time.perf_counter()
    fill(jobs, logs, assets)
    if label == "postgresql":
        analyze()
    fill_s = time.perf_counter() - started
    indexed, bad = uses_indexes()
    for plan in bad:
        print(f"  ({label}) not an index scan: {plan}")
    for name, page in PAGES.items():
        median, best = time_page(page, runs)
        results.append({"database": label, "page": name, "median": median, "best": best,
                        "empty": empty[name][0], "indexed": indexed, "fill_s": fill_s})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--logs", type=int, default=100_000)
    parser.add_argument("--assets", type=int, default=10_000)
    parser.add_argument("--postgres", help="admin URL (may CREATE DATABASE); a fresh database is made and dropped")
    args = parser.parse_args()
    logging.getLogger("streamlit").setLevel(logging.ERROR)

    from workers.launcher import start_local_redis

    tmp = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    os.environ.update({
        "STUDIO_ENV": "development", "STUDIO_DATA_DIR": str(tmp), "REDIS_URL": redis_url,
        "STUDIO_REDIS_NAMESPACE": "bench", "STUDIO_STORAGE_BACKEND": "local", "STUDIO_AUTH_DISABLED": "true",
    })
    redis_process = start_local_redis(redis_url, tmp / "redis")
    results: list[dict[str, Any]] = []
    pg_name = f"bench_pages_{uuid.uuid4().hex[:8]}"
    try:
        use_database(f"sqlite:///{tmp / 'studio.db'}")
        results += measure("sqlite", args.runs, args.jobs, args.logs, args.assets)
        if args.postgres:
            import psycopg

            admin = args.postgres.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f'CREATE DATABASE "{pg_name}"')
            use_database(args.postgres.rsplit("/", 1)[0] + f"/{pg_name}")
            results += measure("postgresql", args.runs, args.jobs, args.logs, args.assets)
    finally:
        from core.db import dispose_engines

        dispose_engines()
        if args.postgres:
            import psycopg

            with psycopg.connect(args.postgres.replace("postgresql+psycopg://", "postgresql://"),
                                 autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{pg_name}"')
        redis_process.terminate()
        redis_process.wait()

    print(f"\nPage benchmark · {os.cpu_count()} CPU · {args.jobs:,} jobs + {args.logs:,} log lines over 7 days · "
          f"{args.assets:,} assets · "
          f"server-side AppTest render, best/median of {args.runs} after a warm-up\n")
    print(f"| {'database':<10} | {'page':<10} | {'median ms':>9} | {'best ms':>7} | {'empty db ms':>11} | "
          f"{'full / empty':>12} | {'goal 300 ms':>11} | {'indexed':>7} |")
    print(f"|{'-' * 12}|{'-' * 12}|{'-' * 11}|{'-' * 9}|{'-' * 13}|{'-' * 14}|{'-' * 13}|{'-' * 9}|")
    for r in results:
        print(f"| {r['database']:<10} | {r['page']:<10} | {r['median']:>9.0f} | {r['best']:>7.0f} | "
              f"{r['empty']:>11.0f} | {r['median'] / r['empty']:>11.2f}x | "
              f"{'met' if r['median'] <= GOAL_MS else 'MISSED':>11} | {'yes' if r['indexed'] else 'NO':>7} |")
    for database in dict.fromkeys(r["database"] for r in results):
        fill_s = next(r["fill_s"] for r in results if r["database"] == database)
        print(f"\n{database}: filling took {fill_s:.1f} s")


if __name__ == "__main__":
    main()
