"""Chaos report: mixed jobs through real supervised workers while worker processes are SIGKILLed and
Redis restarts with its data lost; prints jobs, kills, restarts, lost, duplicated, redelivery p50/max.

The engine is the one the CI test runs (``tests/chaos/engine.py``); this runs its long form by default
with the studio's production timings (reconcile every 15 s), in a temp folder with its own redis-server.

    .venv/bin/python bench/chaos.py                          # 1,000 jobs, 20 kills, 1 Redis restart, SQLite
    .venv/bin/python bench/chaos.py --jobs 150 --kills 3 --kill-every 8
    .venv/bin/python bench/chaos.py --postgres               # the same on a throwaway PostgreSQL
    .venv/bin/python bench/chaos.py --database-url postgresql+psycopg://user@host/db
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse
import os
import shutil
import tempfile
from contextlib import ExitStack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--kill-every", type=float, default=6.0, help="seconds between SIGKILLs")
    parser.add_argument("--supervisors", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=1200.0, help="seconds to wait for the last jobs")
    parser.add_argument("--database-url", default="", help="default: SQLite in the temp folder")
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL for the run")
    parser.add_argument("--reconcile-interval", type=float, default=None, help="default: the studio's (15 s)")
    args = parser.parse_args()

    import core.catalogue  # noqa: F401  (registers every job kind, as the programs' entry points do)
    from tests.chaos.engine import ChaosPlan, link_tiny_sd15, model_environment, run_chaos
    from tests.chaos.servers import RedisServer

    tmp = Path(tempfile.mkdtemp(prefix="studio-chaos-"))
    redis_server = RedisServer(tmp / "redis")
    redis_server.start()
    stack = ExitStack()
    try:
        if args.postgres:
            from tests.services import create_database, run_postgres

            args.database_url = create_database(stack.enter_context(run_postgres()), "chaos")
        from workers.ml.tiny_models import ensure_tiny_models

        tiny = ensure_tiny_models(tmp / "tiny-models")
        os.environ.update({
            "STUDIO_ENV": "development", "STUDIO_DATA_DIR": str(tmp / "data"), "REDIS_URL": redis_server.url,
            "STUDIO_REDIS_NAMESPACE": "chaos", "STUDIO_STORAGE_BACKEND": "local", "STUDIO_LOG_LEVEL": "WARNING",
            "DATABASE_URL": args.database_url or f"sqlite:///{tmp / 'studio.db'}", **model_environment(tiny),
        })
        if args.reconcile_interval:
            os.environ["STUDIO_RECONCILE_INTERVAL_S"] = str(args.reconcile_interval)
        from core.config import reload_settings
        from core.db import upgrade_schema

        reload_settings()
        upgrade_schema()
        link_tiny_sd15(tiny)
        plan = ChaosPlan(jobs=args.jobs, kills=args.kills, kill_every_s=args.kill_every,
                         supervisors=args.supervisors, deadline_s=args.deadline)
        load_before = os.getloadavg()[0]
        report = run_chaos(plan, restart_redis=redis_server.restart_empty)
        print(report.table())
        print(f"database {args.database_url.split(':', 1)[0] if args.database_url else 'sqlite'}; load average "
              f"(1 min) {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
        for problem in report.duplicated + [f"{job_id}: lost" for job_id in report.lost]:
            print(problem)
    finally:
        redis_server.close()
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
