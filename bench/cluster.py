"""Scale-out and faults across hosts: the studio on 1, 2 and 4 worker hosts made of network namespaces.

The hosts are the CI test's (``tests/cluster/``): a services host (Redis, PostgreSQL), an S3 host, an app host
(server.py) and worker hosts, each ``python -m workers run --queues cpu,default`` with its own data folder and S3
storage, talking over a bridge. Per host count it measures jobs/s for 200 ms I/O-bound jobs (``sleep``) and for no-op
jobs, the efficiency against ideal linear scaling (N × the 1-host rate), then SIGKILLs a busy worker process and, from
2 hosts on, cuts a busy host's link; redelivery = fault → the next attempt claimed. Then the fault table on the
largest cluster: Redis restarted empty (alone, and 2 s after a worker was killed), PostgreSQL restarted, the app
host restarted while jobs made through its API run, and again while content pipelines started through it run (plan
→ tiny SD 1.5 images on a GPU-queue host → schedule), S3 unreachable for 20 s while a GPU-queue host generates and
uploads images (tiny SD 1.5 on the CPU). Every row checks that nothing was lost or done twice (rows and
S3 objects). Needs root (network namespaces). Exits 1 when a check fails or a redelivery took over 30 s.

    .venv/bin/python bench/cluster.py                                 # hosts 1,2,4, every fault
    .venv/bin/python bench/cluster.py --hosts 1,2 --faults none --io-jobs 60
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse
import time
from dataclasses import dataclass, field

ALL_FAULTS = ["kill-then-redis-loss", "redis-loss", "postgres-restart", "app-restart", "pipelines-app-restart",
              "s3-outage"]
NEEDS_APP = {"app-restart", "pipelines-app-restart"}
NEEDS_GPU_HOST = {"pipelines-app-restart", "s3-outage"}


@dataclass
class Row:
    hosts: int
    io_per_s: float = 0.0
    noop_per_s: float = 0.0
    io_efficiency: float = 0.0
    noop_efficiency: float = 0.0
    kills: int = 0
    partitions: int = 0
    lost: int = 0
    duplicated: int = 0
    redelivery_s: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _warm_up(run_batch, noop_job, sleep_job, hosts: list[str], threads: int) -> None:
    """Until every host has run jobs on all its threads, on both queues: a new host's first jobs (its
    database connections, one per thread, and first imports) stay out of the timing. A single batch of
    4 × hosts no-op jobs did not do it: a host prefetches 2 × threads messages, so the host that was up
    already could take the whole batch, and the no-op jobs warmed one or two connections of the
    ``default`` queue's consumer, not the ``cpu`` queue's four threads that the timed I/O jobs use."""
    for _ in range(6):
        io = run_batch(lambda: sleep_job(0.1), 2 * threads * len(hosts))
        run_batch(noop_job, 2 * threads * len(hosts))
        if all(io.hosts[host] >= threads for host in hosts):
            return
    print(f"warm-up: not every host ran {threads} jobs: {dict(io.hosts)}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", default="1,2,4", help="worker host counts, ascending (at most 4)")
    parser.add_argument("--io-jobs", type=int, default=100, help="200 ms jobs per worker host")
    parser.add_argument("--noop-jobs", type=int, default=150, help="no-op jobs per worker host")
    parser.add_argument("--threads", type=int, default=4, help="worker threads per host (STUDIO_CPU_WORKER_THREADS)")
    parser.add_argument("--faults", default="all", help="'all', 'none' or names: " + ", ".join(
        ALL_FAULTS))
    args = parser.parse_args()
    counts = sorted({int(n) for n in args.hosts.split(",")})
    assert 1 <= counts[0] and counts[-1] <= 4, "1 to 4 worker hosts"

    import core.catalogue  # noqa: F401  (registers every job kind, as the programs' entry points do)
    from tests.cluster import faults
    from tests.cluster.hosts import Cluster, worker_name
    from tests.cluster.scenarios import (
        TAKEOVER_GOAL_S,
        noop_job,
        percentile,
        run_batch,
        sleep_job,
        use_cluster,
        wait_hosts,
    )

    wanted = (ALL_FAULTS if args.faults == "all"
              else [] if args.faults == "none" else args.faults.split(","))
    # Publishing dry-run: the pipelines' posts are scheduled without a connected account (no platform is called).
    cluster = Cluster(workers=counts[-1], queues="cpu,default", env={"STUDIO_CPU_WORKER_THREADS": str(args.threads),
                                                                     "STUDIO_PUBLISH_DRY_RUN": "true"})
    rows: list[Row] = []
    fault_results: list[faults.FaultResult] = []
    began = time.monotonic()
    with cluster, use_cluster(cluster):
        started = 0
        for n in counts:
            for k in range(started + 1, n + 1):
                cluster.start_worker_host(worker_name(k))
            started = n
            wait_hosts([worker_name(k) for k in range(1, n + 1)])
            _warm_up(run_batch, noop_job, sleep_job, [worker_name(k) for k in range(1, n + 1)], args.threads)
            row = Row(hosts=n)
            io = run_batch(lambda: sleep_job(0.2), args.io_jobs * n)
            noop = run_batch(noop_job, args.noop_jobs * n)
            row.io_per_s, row.noop_per_s = io.per_s, noop.per_s
            base = rows[0] if rows else row
            row.io_efficiency = row.io_per_s / (n / base.hosts * base.io_per_s)
            row.noop_efficiency = row.noop_per_s / (n / base.hosts * base.noop_per_s)
            print(f"[cluster {time.monotonic() - began:5.0f} s] {n} host(s): {io.per_s:.1f} io jobs/s "
                  f"{dict(io.hosts)}, {noop.per_s:.1f} noop jobs/s", flush=True)
            chaos = [faults.worker_kill(cluster)] + ([faults.link_cut(cluster)] if n >= 2 else [])
            row.kills, row.partitions = 1, int(n >= 2)
            for result in chaos:
                row.lost += len(result.check.lost)
                row.duplicated += len(result.check.duplicated)
                row.redelivery_s += result.redelivery_s
                row.problems += result.check.lost + result.check.duplicated
                print(f"[cluster {time.monotonic() - began:5.0f} s]   {result.name}: {result.note}; redelivery "
                      f"{[round(s, 1) for s in result.redelivery_s]} s", flush=True)
            rows.append(row)
        if NEEDS_APP & set(wanted):
            cluster.start_app()
        if NEEDS_GPU_HOST & set(wanted):
            from workers.ml.tiny_models import ensure_tiny_models

            faults.start_gpu_host(cluster, ensure_tiny_models(cluster.root / "tiny-models")["sd15"])
        for name in wanted:
            result = faults.FAULTS[name](cluster)
            fault_results.append(result)
            print(f"[cluster {time.monotonic() - began:5.0f} s] {result.name}: {result.note}", flush=True)

    ideal = args.threads / 0.2
    print(f"\nworker hosts: `python -m workers run --queues cpu,default`, {args.threads} threads each "
          f"(ideal {ideal:.0f} I/O jobs/s per host); PostgreSQL, Redis and S3 on their own hosts; "
          f"{args.io_jobs}/{args.noop_jobs} jobs per host\n")
    print("| hosts | I/O jobs/s | I/O efficiency | no-op jobs/s | no-op efficiency | kills | partitions | lost "
          "| duplicated | redelivery p50 | redelivery max |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.hosts} | {row.io_per_s:.1f} | {row.io_efficiency:.2f}x | {row.noop_per_s:.1f} | "
              f"{row.noop_efficiency:.2f}x | {row.kills} | {row.partitions} | {row.lost} | {row.duplicated} | "
              f"{_seconds(percentile(row.redelivery_s, 50))} s | {_seconds(max(row.redelivery_s, default=None))} s |")
    if fault_results:
        print(f"\n| fault ({counts[-1]} worker hosts) | jobs | lost | duplicated | redelivery p50 | redelivery max "
              "| note |")
        print("|---|---|---|---|---|---|---|")
        for result in fault_results:
            print(f"| {result.name} | {result.jobs} | {len(result.check.lost)} | {len(result.check.duplicated)} | "
                  f"{_seconds(result.p50_s)} s | {_seconds(result.max_s)} s | {result.note} |")
    problems = [p for row in rows for p in row.problems]
    problems += [p for result in fault_results for p in result.check.lost + result.check.duplicated]
    slow = [s for row in rows for s in row.redelivery_s] + [s for r in fault_results for s in r.redelivery_s]
    for problem in problems:
        print(problem)
    print(f"\nwall {time.monotonic() - began:.0f} s")
    return 1 if problems or any(s > TAKEOVER_GOAL_S for s in slow) else 0


if __name__ == "__main__":
    sys.exit(main())
