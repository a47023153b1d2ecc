"""The training service without a worker: submission, metrics, samples, checkpoints, promotion,
estimates, GPU discovery and GPU slots."""

from __future__ import annotations

import threading
import time

import pytest

from core.datasets.datasets import create_dataset, import_files
from core.db import session_scope
from core.errors import Conflict, InvalidInput, NotFound
from core.infra.storage import get_object_store
from core.jobs import lifecycle as jobs
from core.models import Character
from core.training import configs as lora_configs
from core.training import runs as training
from core.training.params import LoraParams
from core.training.vram import estimate_vram
from tests.factories import image_bytes
from workers.gpu_slots import GpuSlots
from workers.gpus import parse_nvidia_smi

both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def dataset(studio):
    dataset = create_dataset(name="Ava", trigger_word="ohwx woman")
    import_files(dataset.id, [(f"{i}.png", image_bytes(seed=i)) for i in range(3)])
    return dataset


def _checkpoint(tmp_path, job, step, *, final=False, loss=0.5):
    folder = tmp_path / f"step-{step}"
    folder.mkdir()
    (folder / training.WEIGHTS_FILE).write_bytes(b"weights %d" % step)
    (folder / training.STATE_FILE).write_bytes(b"state %d" % step)
    return training.register_checkpoint(job, step=step, directory=folder, final=final, loss=loss)


@both_databases
def test_submission_snapshots_the_config_and_names_the_run(dataset):
    job = training.submit_training(dataset_id=dataset.id)
    default = lora_configs.get_default_config()
    assert job.kind == "train" and job.queue == "gpu" and job.status == "queued"
    assert job.payload["config_id"] == default.id and job.payload["params"] == default.params
    assert job.payload["name"].startswith("Ava · SD 1.5 Standard · ")

    tiny = lora_configs.get_config_by_name("Tiny (offline demo)")
    edited = lora_configs.params_of(tiny).model_copy(update={"rank": 4})
    second = training.submit_training(dataset_id=dataset.id, config_id=tiny.id, params=edited, name="try rank 4")
    lora_configs.update_config(tiny.id, name=tiny.name, params={"rank": 64})
    assert training.run_params(jobs.get_job(second.id)).rank == 4, "editing the config leaves queued runs alone"
    assert second.payload["name"] == "try rank 4"
    assert [r.id for r in training.list_runs().items] == [second.id, job.id]


@both_databases
def test_submission_refuses_empty_or_missing_datasets_and_bad_params(dataset):
    empty = create_dataset(name="Empty")
    with pytest.raises(InvalidInput, match="no images"):
        training.submit_training(dataset_id=empty.id)
    with pytest.raises(NotFound):
        training.submit_training(dataset_id=dataset.id + 100)
    with pytest.raises(InvalidInput, match="rank"):
        training.submit_training(dataset_id=dataset.id, params={"rank": 9999})
    with pytest.raises(NotFound):
        jobs.create_job("train", {"dataset_id": dataset.id, "config_id": 999})
    assert training.list_runs().total == 0, "nothing was queued"


def test_the_webhook_path_gets_the_same_defaults(dataset):
    job = jobs.create_job("train", {"dataset_id": dataset.id})
    assert job.payload["params"]["resolution"] == 512 and job.payload["config_id"]


@both_databases
def test_metric_series_is_averaged_into_at_most_max_points(dataset):
    job = training.submit_training(dataset_id=dataset.id)
    training.record_metrics(job.id, [training.MetricPoint(step=s, epoch=0, loss=float(s), lr=1e-4)
                                     for s in range(1, 1001)])
    full = training.metric_series(job.id)
    assert full.steps == list(range(1, 1001)) and full.bucket == 1 and full.loss[9] == 10.0
    coarse = training.metric_series(job.id, max_points=100)
    assert coarse.bucket == 10 and len(coarse.steps) == 100
    assert coarse.steps[:2] == [10, 20] and coarse.loss[0] == pytest.approx(5.5), "mean of steps 1..10"
    assert training.metric_series("0" * 32).steps == []


@both_databases
def test_resume_discards_metrics_and_samples_after_the_checkpoint(dataset):
    job = training.submit_training(dataset_id=dataset.id)
    training.record_metrics(job.id, [training.MetricPoint(s, 0, 1.0, 1e-4) for s in range(1, 31)])
    run = jobs.get_job(job.id)
    for step in (10, 20, 30):
        training.save_sample(run, step=step, prompt_index=0, prompt="ohwx", seed=1, png=image_bytes(8, 8))
    training.discard_after(job.id, 20)
    assert training.all_metric_steps(job.id) == list(range(1, 21))
    grid = training.sample_grid(job.id)
    assert grid.steps == [10, 20] and grid.prompts == ["ohwx"]
    assert not get_object_store().exists(training.sample_key(job.id, 30, 0))
    again = training.save_sample(run, step=20, prompt_index=0, prompt="ohwx", seed=1, png=image_bytes(8, 8))
    assert training.sample_grid(job.id).cell(0, 20).id == again.id, "a redone sample replaces the old one"


@both_databases
def test_checkpoints_keep_the_last_k_plus_final_and_promoted(dataset, tmp_path):
    job = jobs.get_job(training.submit_training(dataset_id=dataset.id).id)
    for step in (10, 20, 30):
        _checkpoint(tmp_path, job, step)
    kept = training.promote_lora(training.list_loras(job_id=job.id).items[-1].id)  # step 10
    for step in (40, 50):
        _checkpoint(tmp_path, job, step)
    assert training.prune_checkpoints(job.id, keep=2) == [30, 20]
    final = _checkpoint(tmp_path, job, 60, final=True)
    assert [lora.step for lora in training.list_loras(job_id=job.id).items] == [60, 50, 40, 10]
    assert final.final and final.name.endswith("final") and final.trigger_word == "ohwx woman"
    assert training.get_lora(kept.id).promoted
    store = get_object_store()
    assert not store.exists(training.checkpoint_keys(job.id, 20)[0])
    assert training.read_lora_weights(final) == b"weights 60"
    assert training.download_training_state(job.id, 50, tmp_path / "resume").joinpath("training_state.pt") \
        .read_bytes() == b"state 50"
    training.discard_training_states(job.id)
    assert not store.exists(training.checkpoint_keys(job.id, 50)[1]) and store.exists(final.key)
    (tmp_path / "again").mkdir()
    assert _checkpoint(tmp_path / "again", job, 60, final=True).id == final.id, "registering twice is idempotent"


@both_databases
def test_promotion_is_one_per_character(dataset, tmp_path):
    with session_scope() as session:
        other = Character(name="Ben")
        session.add(other)
        session.flush()
        other_id = other.id
    job = jobs.get_job(training.submit_training(dataset_id=dataset.id).id)
    a, b = _checkpoint(tmp_path, job, 10), _checkpoint(tmp_path, job, 20)
    training.promote_lora(a.id)
    training.promote_lora(b.id)
    assert not training.get_lora(a.id).promoted and training.promoted_lora().id == b.id
    assert training.promoted_lora(other_id) is None


def test_base_models_resolve_to_local_folders_before_hub_ids(studio, tmp_path):
    from core.config import get_settings

    tiny = get_settings().models_dir / "tiny-sd15"
    tiny.mkdir(parents=True)
    assert training.resolve_base_model("tiny-sd15") == str(tiny)
    assert training.resolve_base_model(str(tmp_path)) == str(tmp_path)
    assert training.resolve_base_model("stable-diffusion-v1-5/stable-diffusion-v1-5") == \
        "stable-diffusion-v1-5/stable-diffusion-v1-5"


def test_vram_estimate_grows_with_resolution_batch_and_shrinks_with_checkpointing():
    base = LoraParams(resolution=512, batch_size=1, mixed_precision="bf16")
    total = estimate_vram(base).total_gib
    assert 4 < total < 9, "SD 1.5 LoRA at 512 px is known to need roughly 6-8 GB"
    assert estimate_vram(base.model_copy(update={"resolution": 768})).total_gib > total
    assert estimate_vram(base.model_copy(update={"batch_size": 4})).total_gib > total
    assert estimate_vram(base.model_copy(update={"gradient_checkpointing": True})).total_gib < total
    assert estimate_vram(base.model_copy(update={"mixed_precision": "no"})).total_gib > total
    sdxl = LoraParams(family="sdxl", resolution=1024, gradient_checkpointing=True)
    assert 9 < estimate_vram(sdxl).total_gib < 20, "SDXL LoRA with checkpointing is known to fit 16-24 GB cards"


def test_run_estimate_warns_when_the_gpu_is_too_small(studio):
    sdxl = LoraParams(family="sdxl", resolution=1024, batch_size=4)
    assert "exceeds" in training.estimate_run(sdxl, image_count=20, gpu_memory_gib=24).vram_warning
    assert training.estimate_run(sdxl, image_count=20, gpu_memory_gib=141).vram_warning is None
    estimate = training.estimate_run(sdxl, image_count=20, gpu_memory_gib=None)
    assert estimate.vram_warning is None and estimate.seconds is None and estimate.steps == 1500


def test_nvidia_smi_output_is_parsed_and_garbage_skipped():
    gpus = parse_nvidia_smi("0, NVIDIA H200, 143771\n1, NVIDIA A10G, 23028\nnot a gpu line\n")
    assert [(g.index, g.name, g.memory_mib) for g in gpus] == [(0, "NVIDIA H200", 143771), (1, "NVIDIA A10G", 23028)]
    assert gpus[0].memory_gib == pytest.approx(140.4, abs=0.1)


def test_gpu_slots_cap_concurrent_jobs_per_device_and_spread_them():
    slots = GpuSlots(["cuda:0", "cuda:1"], per_device=2)
    running, peak, devices = [0], [0], []
    lock = threading.Lock()

    def job() -> None:
        with slots.acquire() as device:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
                devices.append(device)
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=job) for _ in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert slots.capacity == 4 and peak[0] == 4 and len(devices) == 9
    assert abs(devices.count("cuda:0") - devices.count("cuda:1")) <= 1
    assert slots.in_use == {"cuda:0": 0, "cuda:1": 0}


def test_the_gpu_worker_runs_one_thread_per_slot_and_prefetches_no_more(studio, monkeypatch):
    from core.config import reload_settings
    from workers.process import default_groups

    monkeypatch.setenv("STUDIO_GPU_SLOTS_PER_GPU", "3")
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    reload_settings()
    gpu = next(group for group in default_groups() if group.name == "gpu")
    assert (gpu.threads, gpu.prefetch) == (3, 3)


@both_databases
def test_save_as_keeps_the_params_as_a_config_only_when_the_run_is_queued(dataset):
    params = LoraParams(rank=24)
    job = training.submit_training(dataset_id=dataset.id, params=params, save_as="Rank 24")
    saved = lora_configs.get_config_by_name("Rank 24")
    assert job.payload["config_id"] == saved.id and lora_configs.params_of(saved).rank == 24
    assert "based on SD 1.5 Standard" in saved.description

    empty = create_dataset(name="Empty")
    with pytest.raises(InvalidInput, match="no images"):
        training.submit_training(dataset_id=empty.id, params=params, save_as="Never kept")
    with pytest.raises(NotFound):
        lora_configs.get_config_by_name("Never kept")
    with pytest.raises(Conflict):
        training.submit_training(dataset_id=dataset.id, params=params, save_as="Rank 24")
    assert training.list_runs().total == 1
