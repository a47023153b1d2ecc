"""Model-aware GPU routing (core/jobs/routing.py): two gpu-queue workers, two base models, real Dramatiq,
real tiny pipelines loaded through the pipeline cache (with an artificial load delay)."""

from __future__ import annotations

import time

import pytest

from core.jobs import lifecycle
from core.jobs.queue import WorkerPresence, get_broker
from core.jobs.routing import ROUTED_SINCE, ModelRouter
from core.models import JobStatus
from tests.routing import PROBE_KIND, alternating, gpu_workers, probe_kind, run_jobs, slow_loads, wait_finished

LOAD_DELAY_S = 0.3


@pytest.fixture
def gpu_studio(studio, monkeypatch, offline_hub):
    """Two gpu slots on the CPU, so two in-process gpu workers can run at once."""
    from core.config import reload_settings
    from workers.gpu_slots import gpu_slots

    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("STUDIO_GPU_SLOTS_PER_GPU", "2")
    reload_settings()
    gpu_slots.cache_clear()
    with probe_kind(), slow_loads(LOAD_DELAY_S):
        yield
    gpu_slots.cache_clear()


def test_gpu_jobs_go_to_the_worker_holding_their_model_so_each_model_loads_once(gpu_studio, tiny_models):
    jobs = alternating(tiny_models, 8)
    without = run_jobs(jobs, routing=False)
    routed = run_jobs(jobs, routing=True)
    print(f"\nmodel loads for {len(jobs)} jobs, 2 workers, 2 base models: "
          f"without routing {without.loads} ({without.seconds:.1f} s), with routing {routed.loads} "
          f"({routed.seconds:.1f} s)")
    assert routed.loads == 2  # each model once, on its own worker
    assert sorted({model for _, model in w.ran} != set() for w in routed.workers) == [True, True]
    assert all(len({model for _, model in w.ran}) == 1 for w in routed.workers)
    assert without.loads >= routed.loads


def test_a_job_whose_model_holder_is_busy_runs_on_a_free_worker_after_the_bounded_wait(gpu_studio, tiny_models):
    sd15 = str(tiny_models["sd15"])
    wait_s = 1.0
    with gpu_workers(wait_s) as workers:
        wait_finished(lifecycle.create_job(PROBE_KIND, {"model": sd15, "family": "sd15"}).id)
        holder = next(w for w in workers if w.ran)
        other = next(w for w in workers if w is not holder)
        long = lifecycle.create_job(PROBE_KIND, {"model": sd15, "family": "sd15", "hold_s": 4})
        deadline = time.monotonic() + 20
        while lifecycle.get_job(long.id).status != JobStatus.RUNNING:
            assert time.monotonic() < deadline, "the long job never started"
            time.sleep(0.02)
        started = time.monotonic()
        waiting = lifecycle.create_job(PROBE_KIND, {"model": sd15, "family": "sd15"})
        assert wait_finished(waiting.id) == JobStatus.SUCCEEDED
        took = time.monotonic() - started
        assert lifecycle.get_job(long.id).status == JobStatus.RUNNING  # not starved behind the busy holder
        assert [job_id for job_id, _ in other.ran] == [waiting.id]
        assert [job_id for job_id, _ in holder.ran][-1] == long.id
        assert wait_s <= took < wait_s + 2.5  # waited for the holder, then no longer than the bound allows
        assert wait_finished(long.id) == JobStatus.SUCCEEDED


def test_only_queued_jobs_with_a_model_held_elsewhere_are_handed_back(gpu_studio, tiny_models):
    sd15 = str(tiny_models["sd15"])
    holder = WorkerPresence(["gpu"], 1, worker_id="holder", models=lambda: [sd15])
    holder.announce()
    router = ModelRouter("me", wait_s=5, retry_ms=60_000)  # a long delay: the message stays where we can see it
    try:
        job = lifecycle.create_job(PROBE_KIND, {"model": sd15, "family": "sd15"})
        assert router.hand_back(job.id, {}) is True
        delayed = get_broker().client.hgetall(f"{get_broker().namespace}:gpu.DQ.msgs")
        assert any(job.id.encode() in raw and ROUTED_SINCE.encode() in raw for raw in delayed.values())
        assert lifecycle.get_job(job.id).status == JobStatus.QUEUED  # untouched: no attempt was used
        assert router.hand_back(job.id, {ROUTED_SINCE: time.time() - 6}) is False  # waited long enough

        router.hold([sd15])
        assert router.hand_back(job.id, {}) is False  # this worker holds it too
        router.hold([])
        other = lifecycle.create_job(PROBE_KIND, {"model": "another/model", "family": "sd15"})
        assert router.hand_back(other.id, {}) is False  # nobody holds it and nobody is idle: run here

        lifecycle._claim(job.id)  # running now (a redelivery would find it so): the claim decides, not routing
        assert router.hand_back(job.id, {}) is False
    finally:
        holder.stop()


def test_a_motion_job_goes_to_the_worker_whose_wan_cache_holds_its_model(gpu_studio, tiny_wan):
    from core.library import assets
    from core.library.assets import AssetSource
    from core.video import motion
    from tests.factories import image_bytes
    from workers.ml.motion.wan import _Cache

    model = str(tiny_wan)
    holder_router = ModelRouter("holder", wait_s=5, retry_ms=60_000)
    cache = _Cache(on_change=holder_router.hold)
    with cache.acquire(model, "cpu"):
        pass  # loaded once, kept for the next job
    assert holder_router.held() == [model] and cache.loads == 1
    holder = WorkerPresence(["gpu"], 1, worker_id="holder", models=holder_router.held)
    holder.announce()
    try:
        still = assets.store_image("uploads/still.png", image_bytes(64, 64, seed=1), source=AssetSource.UPLOAD)
        job = motion.submit_motion(source_asset_id=still.id, model=model, prompt="she smiles", resolution=36,
                                   seconds=0.5, fps=16, steps=1)
        me = ModelRouter("me", wait_s=5, retry_ms=60_000)
        me.hold(["another/base"])  # this worker's pipeline cache holds a generation model
        assert me.hand_back(job.id, {}) is True  # the holder of its Wan model takes it
        assert holder_router.hand_back(job.id, {}) is False  # the holder runs it itself
        with cache.acquire(model, "cpu") as loaded:
            assert loaded.cached and cache.loads == 1
    finally:
        holder.stop()


def test_a_worker_busy_training_is_not_taken_for_an_idle_one_nor_for_a_holder(gpu_studio, tiny_models):
    sd15, sdxl = str(tiny_models["sd15"]), str(tiny_models["sdxl"])
    trainer = ModelRouter("trainer")
    trainer.hold([sd15], source="training:job-1", reusable=False)  # as workers/training.py reports a run
    assert (trainer.held(), trainer.in_use()) == ([], [sd15])
    busy = WorkerPresence(["gpu"], 1, worker_id="trainer", models=trainer.held, in_use=trainer.in_use)
    busy.announce()
    router = ModelRouter("me", wait_s=5, retry_ms=60_000)
    router.hold([sdxl])
    try:
        same_base = lifecycle.create_job(PROBE_KIND, {"model": sd15, "family": "sd15"})
        assert router.hand_back(same_base.id, {}) is False  # its frozen base serves no other job
        idle = WorkerPresence(["gpu"], 1, worker_id="idle")
        idle.announce()
        try:
            assert router.hand_back(same_base.id, {}) is True  # an empty GPU loads it, not this one
        finally:
            idle.stop()
        trainer.hold([], source="training:job-1", reusable=False)  # the run ended
        busy.announce()
        assert trainer.in_use() == []
        assert router.hand_back(same_base.id, {}) is True  # now the trainer's GPU is the idle one
    finally:
        busy.stop()
