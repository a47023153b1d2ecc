"""Queue benchmark: pickup latency and no-op throughput, our job lifecycle vs a bare Dramatiq actor.

Both sides use the same Redis, the same broker settings and one worker process with the same
thread count, in the same run. Latency is enqueue → actor start for jobs sent one at a time
into idle workers; throughput is jobs/s from the first enqueue until the last one finished;
enqueue is how fast one sender put those jobs in (create_job for the studio: row + message).

    .venv/bin/python bench/queue.py                    # SQLite in a temp folder, own redis-server
    .venv/bin/python bench/queue.py --postgres         # a throwaway PostgreSQL (tests/services.py)
    .venv/bin/python bench/queue.py --database-url postgresql+psycopg://user@host/db
    .venv/bin/python bench/queue.py --profile          # where one job's time goes (pyinstrument), no table
    .venv/bin/python bench/queue.py --routing          # model loads, 2 gpu workers × 2 base models, ± routing

``--profile`` runs the studio's side in this process, without Dramatiq: create N no-op jobs, then
``execute_job`` each with the real handler and the workers' job-finished listeners, under pyinstrument.
``--routing`` runs tests/routing.py's engine: two gpu-queue Dramatiq workers, tiny SD 1.5 and SDXL
pipelines (each load made ``--load-delay`` s slower), the same jobs without and with model-aware routing.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and this file would shadow the
# standard library's `queue` module (which redis imports). Put the project root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack

BARE_QUEUE = "bench-bare"


def _serve_bare(threads: int) -> None:
    """The baseline worker: a bare actor that records its start time and counts completions."""
    import signal
    import threading

    import dramatiq

    from core.config import get_settings
    from core.infra.redis import get_redis, redis_key
    from core.jobs.queue import get_broker

    broker = get_broker()
    client = get_redis()

    @dramatiq.actor(queue_name=BARE_QUEUE, actor_name="bench_bare", broker=broker, max_retries=0)
    def bench_bare(sent_at: float) -> None:
        client.rpush(redis_key("bench", "latency"), time.time() - sent_at)
        client.incr(redis_key("bench", "done"))

    worker = dramatiq.Worker(broker, queues={BARE_QUEUE}, worker_threads=threads,
                             worker_timeout=get_settings().worker_idle_poll_ms)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker.start()
    stop.wait()
    worker.stop(timeout=10_000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait(predicate, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish")
        time.sleep(0.01)


def bench_bare(samples: int, jobs: int, threads: int) -> dict[str, float]:
    import dramatiq

    from core.infra.redis import get_redis, redis_key
    from core.jobs.queue import get_broker

    client, broker = get_redis(), get_broker()
    done_key, latency_key = redis_key("bench", "done"), redis_key("bench", "latency")
    client.delete(done_key, latency_key)
    worker = _spawn([__file__, "--serve-bare", "--threads", str(threads)])
    try:
        def send() -> None:
            broker.enqueue(dramatiq.Message(queue_name=BARE_QUEUE, actor_name="bench_bare",
                                            args=(time.time(),), kwargs={}, options={}))

        send()
        _wait(lambda: int(client.get(done_key) or 0) >= 1, 60)  # worker is up
        client.delete(done_key, latency_key)
        for i in range(samples):
            send()
            _wait(lambda i=i: int(client.get(done_key) or 0) >= i + 1)
            time.sleep(0.15)  # let the consumer go idle, as it would between real jobs
        latencies = [float(v) for v in client.lrange(latency_key, 0, -1)]
        client.delete(done_key)
        started = time.perf_counter()
        for _ in range(jobs):
            send()
        sent = time.perf_counter() - started
        _wait(lambda: int(client.get(done_key) or 0) >= jobs)
        elapsed = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait()
    return {"p50": statistics.median(latencies), "p95": _percentile(latencies, 0.95), "rate": jobs / elapsed,
            "enqueue": jobs / sent}


def bench_lifecycle(samples: int, jobs: int, threads: int) -> dict[str, float]:
    from sqlalchemy import func, select

    import core.catalogue  # noqa: F401  (registers every job kind, as the programs' entry points do)
    from core.db import session_scope
    from core.jobs import lifecycle
    from core.models import Job, JobStatus

    def succeeded() -> int:
        with session_scope() as session:
            return session.execute(select(func.count()).select_from(Job)
                                   .where(Job.status == JobStatus.SUCCEEDED)).scalar_one()

    worker = _spawn(["-m", "workers", "worker", "--queues", "default", "--threads", str(threads)])
    try:
        first = lifecycle.create_job("noop")
        _wait(lambda: lifecycle.get_job(first.id).status == JobStatus.SUCCEEDED, 60)
        latencies = []
        for _ in range(samples):
            sent = time.time()
            job = lifecycle.create_job("noop")
            _wait(lambda job=job: lifecycle.get_job(job.id).status == JobStatus.SUCCEEDED)
            started_at = lifecycle.aware(lifecycle.get_job(job.id).started_at)
            latencies.append(started_at.timestamp() - sent)
            time.sleep(0.15)
        before = succeeded()
        started = time.perf_counter()
        for _ in range(jobs):
            lifecycle.create_job("noop")
        sent = time.perf_counter() - started
        _wait(lambda: succeeded() >= before + jobs)
        elapsed = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait()
    return {"p50": statistics.median(latencies), "p95": _percentile(latencies, 0.95), "rate": jobs / elapsed,
            "enqueue": jobs / sent}


def profile_job_path(jobs: int) -> None:
    """Create, then run, ``jobs`` no-op jobs in this process under pyinstrument; print both trees."""
    from pyinstrument import Profiler

    import core.catalogue  # noqa: F401
    from core.jobs import lifecycle
    from core.jobs.queue import get_broker
    from workers import handlers
    from workers.actors import declare_actors

    declare_actors(get_broker())  # the actors and the job-finished listeners, as a worker process has them
    for label in ("create_job", "execute_job"):
        profiler = Profiler(interval=0.0002)
        cpu = time.process_time()
        profiler.start()
        if label == "create_job":
            ids = [lifecycle.create_job("noop").id for _ in range(jobs)]
        else:
            for job_id in ids:
                lifecycle.execute_job(job_id, handlers.noop)
        profiler.stop()
        print(f"\n{label}: {(time.process_time() - cpu) / jobs * 1e6:.0f} µs CPU per job (profiler included)")
        print(profiler.output_text(unicode=True, color=False))


def bench_routing(jobs: int, load_delay_s: float) -> None:
    """Model loads and jobs/s for the same alternating jobs on two gpu workers, without and with routing."""
    os.environ.update({"STUDIO_DEVICE": "cpu", "STUDIO_GPU_SLOTS_PER_GPU": "2", "HF_HUB_OFFLINE": "1"})
    from core.config import reload_settings

    reload_settings()
    import core.catalogue  # noqa: F401
    from tests.routing import alternating, probe_kind, run_jobs, slow_loads
    from workers.ml.tiny_models import ensure_tiny_models

    models = ensure_tiny_models(Path(os.environ["STUDIO_DATA_DIR"]) / "tiny-models")
    plan = alternating(models, jobs)
    with probe_kind(), slow_loads(load_delay_s):
        runs = [run_jobs(plan, routing=False), run_jobs(plan, routing=True)]
    print(f"\nGPU routing · 2 gpu-queue workers (1 thread, prefetch 1, 1 cached pipeline each) · 2 base models "
          f"(tiny SD 1.5, tiny SDXL) alternating · {jobs} jobs one at a time · each load +{load_delay_s:g} s\n")
    print(f"| {'routing':<8} | {'model loads':>11} | {'seconds':>8} | {'jobs/s':>7} |")
    print(f"|{'-' * 10}|{'-' * 13}|{'-' * 10}|{'-' * 9}|")
    for run_ in runs:
        print(f"| {'on' if run_.routing else 'off':<8} | {run_.loads:>11} | {run_.seconds:>8.1f} | "
              f"{run_.jobs / run_.seconds:>7.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000, help="no-op jobs for the throughput run")
    parser.add_argument("--samples", type=int, default=50, help="single jobs for the latency run")
    parser.add_argument("--threads", type=int, default=4, help="worker threads on both sides")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary folder")
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL for the run")
    parser.add_argument("--profile", action="store_true", help="profile the per-job path instead (pyinstrument)")
    parser.add_argument("--routing", action="store_true", help="model-aware GPU routing: model loads ± routing")
    parser.add_argument("--routing-jobs", type=int, default=20, help="--routing: jobs per mode")
    parser.add_argument("--load-delay", type=float, default=1.0, help="--routing: seconds added to each load")
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        _serve_bare(args.threads)
        return
    with ExitStack() as stack:
        database_url = args.database_url
        if args.postgres:
            from tests.services import create_database, run_postgres

            database_url = create_database(stack.enter_context(run_postgres()), "bench")
        run(args, database_url)


def run(args: argparse.Namespace, database_url: str) -> None:
    from workers.launcher import start_local_redis

    tmp = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    os.environ.update({
        "STUDIO_DATA_DIR": str(tmp), "REDIS_URL": redis_url, "STUDIO_REDIS_NAMESPACE": "bench",
        "DATABASE_URL": database_url or f"sqlite:///{tmp / 'bench.db'}",
    })
    redis_process = start_local_redis(redis_url, tmp / "redis")
    try:
        from core.db import get_engine, upgrade_schema

        upgrade_schema()
        if args.profile:
            profile_job_path(args.jobs)
            return
        if args.routing:
            bench_routing(args.routing_jobs, args.load_delay)
            return
        bare = bench_bare(args.samples, args.jobs, args.threads)
        ours = bench_lifecycle(args.samples, args.jobs, args.threads)
        database = get_engine().dialect.name
    finally:
        redis_process.terminate()
        redis_process.wait()

    print(f"\nQueue benchmark · {os.cpu_count()} CPU · 1 worker process × {args.threads} threads · "
          f"{args.samples} latency samples · {args.jobs} throughput jobs · database {database}\n")
    rows = (("pickup latency p50 (ms)", "p50", 1000), ("pickup latency p95 (ms)", "p95", 1000),
            ("no-op throughput (jobs/s)", "rate", 1), ("enqueue, 1 sender (jobs/s)", "enqueue", 1))
    print(f"| {'metric':<26} | {'bare Dramatiq':>13} | {'studio lifecycle':>16} | {'studio / bare':>13} |")
    print(f"|{'-' * 28}|{'-' * 15}|{'-' * 18}|{'-' * 15}|")
    for label, key, scale in rows:
        b, o = bare[key] * scale, ours[key] * scale
        print(f"| {label:<26} | {b:>13.1f} | {o:>16.1f} | {o / b:>12.2f}x |")


if __name__ == "__main__":
    main()
