"""The studio on several hosts (network namespaces made by the test): scaling, a partition and a Redis data loss.

The CI form: services + two worker hosts, each ``python -m workers run`` with its own data folder and S3 storage, as
docs/SETUP.md#more-machines sets them up. ``bench/cluster.py`` is the long form (1/2/4 hosts, more faults, a table).
A machine where the namespaces cannot be made fails this test (NetworkUnavailable); it never skips.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.cluster.hosts import Cluster
from tests.cluster.scenarios import (
    TAKEOVER_GOAL_S,
    Takeover,
    check_exactly_once,
    fence_refusals,
    host_of,
    noop_job,
    plan_job,
    rows,
    run_batch,
    sleep_job,
    use_cluster,
    voice_job,
    wait_for,
    wait_hosts,
    wait_running,
    wait_terminal,
    watch_takeover,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    hosts = Cluster(workers=2, queues="cpu,default", env={"STUDIO_CPU_WORKER_THREADS": "4"})
    with hosts:
        hosts.start_worker_host("w1")  # it boots while this process upgrades the schema (both take the lock)
        with use_cluster(hosts):
            yield hosts


def test_two_worker_hosts_scale_out_and_survive_a_partition_with_redis_losing_its_data(cluster: Cluster) -> None:
    began = time.monotonic()

    def stamp(what: str) -> None:
        print(f"[{time.monotonic() - began:5.1f} s] {what}")

    # Scaling smoke: 200 ms I/O-bound jobs on one host, then on two.
    wait_hosts(["w1"])
    stamp("w1 online")
    one = run_batch(lambda: sleep_job(0.2), 32)
    stamp("1-host batch")
    cluster.start_worker_host("w2")
    wait_hosts(["w1", "w2"])
    stamp("w2 online")
    two = run_batch(lambda: sleep_job(0.2), 64)
    print(f"\n200 ms jobs/s: 1 host {one.per_s:.1f}, 2 hosts {two.per_s:.1f} ({two.per_s / one.per_s:.2f}x); "
          f"by host {dict(two.hosts)}")
    assert set(two.hosts) == {"w1", "w2"}, "both hosts took jobs"
    assert two.per_s >= 1.3 * one.per_s, "a second host adds throughput"

    # A host's link is cut mid-job, and Redis loses every message while the job's only worker is unreachable.
    job = sleep_job(3.0, steps=6)
    effects = [plan_job(n) for n in range(2)] + [voice_job(n) for n in range(2)]
    stamp("2-host batch")
    running = wait_running(job, progressed=0.3)  # its first checkpoints are stored
    stamp("job running")
    victim = host_of(running)
    cut_at = time.monotonic()
    cluster.cut(victim)
    time.sleep(2)
    cluster.restart_redis_empty()
    takeover = watch_takeover(Takeover(job, victim), running["attempts"], cut_at, timeout=60)
    print(f"job on cut host {victim} taken over by {takeover.to_host} after {takeover.seconds:.1f} s")
    assert takeover.to_host != victim
    assert takeover.seconds is not None and takeover.seconds <= TAKEOVER_GOAL_S
    finished = wait_terminal([job], 60)[job]
    stamp("taken over and finished")
    assert finished["status"] == "succeeded" and finished["result"]["attempt"] == finished["attempts"] == 2
    assert finished["result"]["resumed_from"] > 0, "the next host resumed from the stale attempt's checkpoint"

    # The link returns: the stale attempt's writes are refused by the fence, and the host takes work again.
    cluster.restore(victim)
    restored_at = time.monotonic()
    wait_for(lambda: fence_refusals(cluster, victim) >= 1, 60, f"{victim}'s stale attempt to be fenced off")
    print(f"{victim}'s stale attempt fenced off {time.monotonic() - restored_at:.1f} s after the link returned")
    assert rows([job])[job]["result"] == finished["result"], "the stale attempt changed nothing"
    rejoin = [noop_job() for _ in range(2)]

    def victim_runs_jobs() -> bool:  # its consumers reconnect a few seconds after its presence is back
        batch = [sleep_job(0.3) for _ in range(8)]
        rejoin.extend(batch)
        return victim in {host_of(r) for r in wait_terminal(batch, 30).values()}

    wait_for(victim_runs_jobs, 45, f"{victim} rejoined and ran jobs", interval=0)

    stamp("victim ran jobs")
    check = check_exactly_once([job, *effects, *rejoin], cluster, settle_s=2)
    assert check.lost == [], "every job succeeded"
    assert check.duplicated == [], "nothing ran, or was written, twice"
