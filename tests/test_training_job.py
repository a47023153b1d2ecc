"""LoRA training end to end: tiny SD 1.5 model, real worker processes, real database and storage.

Covers what users rely on: the loss falls, the saved LoRA loads into a diffusers pipeline and
changes its output, a killed or stopped worker's run resumes from its checkpoint with a
continuous step sequence, cancel stops within one step, and GPU slots cap concurrent runs.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from core.datasets.datasets import create_dataset, import_files
from core.jobs import lifecycle as jobs
from core.models import JobStatus
from core.training import runs as training
from tests.conftest import wait_until
from tests.factories import image_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def dataset(studio, tiny_models, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dataset = create_dataset(name="Ava", trigger_word="ohwx woman")
    import_files(dataset.id, [(f"{i}.png", image_bytes(160, 128 + 16 * (i % 3), seed=40 + i)) for i in range(6)])
    return dataset


def tiny_params(tiny_models, **overrides):
    return {
        "family": "sd15", "base_model": str(tiny_models["sd15"]), "resolution": 128, "rank": 8, "alpha": 8,
        "learning_rate": 1e-2, "steps": 30, "batch_size": 2, "mixed_precision": "no", "sample_every": 15,
        "sample_steps": 2, "sample_prompts": ["{trigger} portrait", "{trigger} on a beach"],
        "checkpoint_every": 10, "keep_checkpoints": 2, **overrides,
    }


def _finished(job_id: str, timeout: float = 240):
    return wait_until(lambda: (j := jobs.get_job(job_id)).job_status.is_terminal and j, timeout,
                      interval=0.2, what=f"training job {job_id} to finish")


def _step(job_id: str) -> int:
    job = jobs.get_job(job_id)
    message = job.progress_message or ""
    return int(message.split("/")[0].removeprefix("step ")) if message.startswith("step ") else 0


def _worker_pid(job_id: str) -> int:
    return int(jobs.get_job(job_id).worker.rsplit(":", 1)[1])


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_training_lowers_the_loss_and_saves_a_lora_the_pipeline_loads(dataset, tiny_models, workers, tmp_path):
    workers.worker(queues="gpu", threads=1)
    job = training.submit_training(dataset_id=dataset.id, params=tiny_params(tiny_models), name="first")
    done = _finished(job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    result = done.result
    assert result["steps"] == 30 and result["images"] == 6 and result["resumed_from"] == 0
    assert result["eval_loss_end"] < result["eval_loss_start"], "training lowers the loss on a fixed eval batch"
    assert training.all_metric_steps(job.id) == list(range(1, 31))

    grid = training.sample_grid(job.id)
    assert grid.prompts == ["ohwx woman portrait", "ohwx woman on a beach"] and grid.steps == [15, 30]
    assert all(grid.cell(p, s) is not None for p in (0, 1) for s in (15, 30))

    loras = training.list_loras(job_id=job.id).items
    assert [(lora.step, lora.final) for lora in loras] == [(30, True), (20, False), (10, False)]
    final = loras[0]
    assert result["lora_id"] == final.id and final.trigger_word == "ohwx woman"
    assert not any(o.key.endswith(training.STATE_FILE) for o in _objects(job.id)), "states are dropped at the end"

    import torch
    from diffusers import StableDiffusionPipeline

    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / training.WEIGHTS_FILE).write_bytes(training.read_lora_weights(final))
    pipeline = StableDiffusionPipeline.from_pretrained(tiny_models["sd15"], safety_checker=None)

    def render():
        return pipeline("ohwx woman portrait", num_inference_steps=2, height=64, width=64, output_type="np",
                        generator=torch.Generator().manual_seed(7)).images[0]

    before = render()
    pipeline.load_lora_weights(folder)
    after = render()
    assert abs(after - before).mean() > 1e-3, "the LoRA changes what the pipeline draws"


def _objects(job_id: str):
    from core.infra.storage import get_object_store

    return get_object_store().list(f"jobs/{job_id}/")


def test_a_killed_worker_resumes_from_its_checkpoint_with_continuous_steps(dataset, tiny_models, workers):
    workers.worker(queues="gpu", threads=1)
    params = tiny_params(tiny_models, steps=40, sample_every=0, checkpoint_every=10)
    job = training.submit_training(dataset_id=dataset.id, params=params)
    wait_until(lambda: int((jobs.get_job(job.id).checkpoint or {}).get("step", 0)) >= 10 and _step(job.id) > 12,
               180, interval=0.1, what="a checkpoint and a few steps past it")
    os.kill(_worker_pid(job.id), signal.SIGKILL)
    killed_at_step = _step(job.id)
    workers.worker(queues="gpu", threads=1)
    done = _finished(job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.attempts == 2 and 10 <= done.result["resumed_from"] < killed_at_step
    assert training.all_metric_steps(job.id) == list(range(1, 41)), "no gap and no duplicate step"
    assert done.result["eval_loss_end"] < done.result["eval_loss_start"]


def test_a_stopping_worker_saves_a_checkpoint_first_and_the_run_continues(dataset, tiny_models, workers):
    first = workers.worker(queues="gpu", threads=1)
    params = tiny_params(tiny_models, steps=40, sample_every=0, checkpoint_every=1000)
    job = training.submit_training(dataset_id=dataset.id, params=params)
    wait_until(lambda: _step(job.id) >= 5, 180, interval=0.1, what="five steps")
    os.killpg(first.pid, signal.SIGTERM)
    first.wait(60)
    handed_back = jobs.get_job(job.id)
    saved = int((handed_back.checkpoint or {}).get("step", 0))
    assert handed_back.status == JobStatus.QUEUED and saved >= 5, "state saved at shutdown, job back in the queue"
    workers.worker(queues="gpu", threads=1)
    done = _finished(job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.result["resumed_from"] == saved
    assert training.all_metric_steps(job.id) == list(range(1, 41))


def test_cancel_stops_training_within_one_step(dataset, tiny_models, workers):
    workers.worker(queues="gpu", threads=1)
    job = training.submit_training(dataset_id=dataset.id, params=tiny_params(tiny_models, steps=2000,
                                                                             sample_every=0))
    wait_until(lambda: _step(job.id) >= 3, 180, interval=0.05, what="a few steps")
    jobs.cancel_job(job.id)
    step_at_cancel = _step(job.id)
    done = _finished(job.id, timeout=60)
    assert done.status == JobStatus.CANCELLED
    assert max(training.all_metric_steps(job.id)) <= step_at_cancel + 1


def test_gpu_slots_cap_concurrent_runs_and_the_rest_wait_queued(dataset, tiny_models, workers, monkeypatch):
    from core.config import reload_settings

    monkeypatch.setenv("STUDIO_GPU_SLOTS_PER_GPU", "3")
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    reload_settings()
    workers.supervisor(queues="gpu")
    params = tiny_params(tiny_models, steps=12, sample_every=0, checkpoint_every=1000)
    runs = [training.submit_training(dataset_id=dataset.id, params=params, name=f"run {i}").id for i in range(4)]
    peak, deadline = 0, time.monotonic() + 300
    while time.monotonic() < deadline:
        statuses = [jobs.get_job(run).status for run in runs]
        peak = max(peak, statuses.count(JobStatus.RUNNING))
        if all(JobStatus(s).is_terminal for s in statuses):
            break
        time.sleep(0.05)
    assert [jobs.get_job(run).status for run in runs] == [JobStatus.SUCCEEDED] * 4
    assert peak == 3, "three slots: three trainings at once in one worker, the fourth waited in the queue"


@pytest.mark.parametrize("family", ["flux2_klein", "z_image", "qwen_image"])
def test_the_tiny_preset_of_each_new_family_trains_through_the_job(dataset, tiny_models, workers, family):
    from core.training.configs import list_configs, params_of

    [preset] = [c for c in list_configs(page_size=100).items
                if params_of(c).family == family and c.name.startswith("Tiny ")]
    # The preset as the wizard submits it; its base model is the tiny folder of this test session, and fewer steps.
    params = {**params_of(preset).model_dump(mode="json"), "base_model": str(tiny_models[family]), "steps": 10,
              "sample_every": 10, "checkpoint_every": 5}
    workers.worker(queues="gpu", threads=1)
    job = training.submit_training(dataset_id=dataset.id, params=params, name=f"{family} tiny")
    done = _finished(job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.result["steps"] == 10 and done.result["eval_loss_end"] < done.result["eval_loss_start"]
    assert training.sample_grid(job.id).steps == [10]
    assert [lora.step for lora in training.list_loras(job_id=job.id).items] == [10, 5]
