"""Image generation end to end: tiny SD 1.5, really trained tiny LoRAs, real worker processes, real
database and storage.

Covers what users rely on: each image is stored as soon as its batch is done, with the same
metadata in its PNG and its asset row; the same seed makes the same picture; LoRA strengths
act as asked and never leak into the next job of the same worker; img2img starts from a library
image; the loaded pipeline is reused; progress moves per step and a cancel keeps the finished
images; a killed worker's job is redelivered and does not redo what it stored.
"""

from __future__ import annotations

import io
import os
import shutil
import signal

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from core.datasets.datasets import create_dataset
from core.db import session_scope
from core.generation import requests as generation
from core.generation.requests import GeneratePayload
from core.jobs import lifecycle as jobs
from core.jobs import logs as joblogs
from core.library import assets
from core.models import AssetLora, Job, JobStatus, LoraModel
from core.training import runs as training
from core.training.params import WEIGHTS_FILE, LoraParams
from tests.conftest import wait_until
from tests.test_generator import train_tiny_loras

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("offline_hub")]


@pytest.fixture(scope="module")
def lora_files(tiny_models, tmp_path_factory):
    return train_tiny_loras(tiny_models, tmp_path_factory.getbasetemp() / "tiny-loras")


@pytest.fixture
def tiny_studio(studio, tiny_models):
    """The studio with the tiny SD 1.5 where the "tiny-lora" template looks for it (models/tiny-sd15)."""
    studio.models_dir.mkdir(parents=True, exist_ok=True)
    (studio.models_dir / "tiny-sd15").symlink_to(tiny_models["sd15"], target_is_directory=True)
    return studio


def register_lora(path, tmp_path, *, name: str, trigger: str) -> LoraModel:
    """A trained LoRA file recorded as a LoRA version, as a finished training run records it."""
    dataset = create_dataset(name=name, trigger_word=trigger)
    params = LoraParams(family="sd15", base_model="tiny-sd15", resolution=128, rank=4, alpha=4, steps=16,
                        batch_size=2, mixed_precision="no", sample_every=0)
    job = Job(kind="train", queue="gpu", status=JobStatus.SUCCEEDED, payload={
        "dataset_id": dataset.id, "config_id": None, "params": params.model_dump(mode="json"), "name": name})
    with session_scope() as session:
        session.add(job)
    folder = tmp_path / f"lora-{name}"
    folder.mkdir()
    shutil.copy(path, folder / WEIGHTS_FILE)
    return training.register_checkpoint(jobs.get_job(job.id), step=16, directory=folder, final=True, loss=0.1)


@pytest.fixture
def loras(tiny_studio, lora_files, tmp_path) -> dict[str, LoraModel]:
    return {"a": register_lora(lora_files["a"], tmp_path, name="Ava", trigger="ohwx woman"),
            "b": register_lora(lora_files["b"], tmp_path, name="Ben", trigger="sks man")}


def submit(*, loras=(), **overrides):
    request = {"template": "tiny-lora", "prompt": "portrait in a cafe", "width": 64, "height": 64, "steps": 4,
               "seed": 7, "count": 1, "loras": [{"lora_id": lora.id, "strength": s} for lora, s in loras],
               **overrides}
    return generation.submit_generation(**request)


def finished(job_id: str, timeout: float = 180) -> Job:
    return wait_until(lambda: (j := jobs.get_job(job_id)).job_status.is_terminal and j, timeout,
                      interval=0.1, what=f"generation job {job_id} to finish")


def succeeded(job_id: str, timeout: float = 180) -> Job:
    job = finished(job_id, timeout)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


def pictures(job_id: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(assets.read_asset(a))).convert("RGB"), dtype=np.int16)
            for a in generation.job_images(job_id)]


def log_text(job_id: str) -> str:
    return "\n".join(entry.message for entry in joblogs.read_logs(job_id).entries)


def local_render(job: Job, lora_files: dict[str, str], lora_names: dict[int, str]) -> list[np.ndarray]:
    """The job's images made in this process by the engine on a fresh pipeline, from its stored payload."""
    from workers.ml.generation import LoraAdapter, PipelineCache, RenderSettings

    payload = GeneratePayload.model_validate(job.payload)
    settings = RenderSettings(prompt=payload.prompt, negative_prompt=payload.negative_prompt or "",
                              steps=payload.steps, cfg=payload.cfg, width=payload.width, height=payload.height,
                              scheduler=payload.scheduler, seed=payload.seed, batch_size=payload.batch_size)
    adapters = [LoraAdapter(f"lora_{c.lora_id}", lora_files[lora_names[c.lora_id]], c.strength)
                for c in payload.loras or []]
    with PipelineCache(max_size=1).acquire(training.resolve_base_model(payload.base_model), "sd15",
                                           device="cpu") as loaded, loaded.adapters(adapters):
        return [np.asarray(image, dtype=np.int16) for batch in loaded.render(settings, range(payload.count))
                for image in batch.images]


def differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


# ------------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_images_are_stored_with_their_metadata_and_the_pipeline_is_reused(loras, lora_files, workers):
    workers.worker(queues="gpu", threads=1)
    ava = loras["a"]
    first = submit(loras=[(ava, 1.0)], count=3, batch_size=2)
    done = succeeded(first.id)
    result = done.result
    assert (result["images"], result["resumed_skipped"], result["device"]) == (3, 0, "cpu")
    assert result["pipeline_cached"] is False and result["images_per_second"] > 0
    images = generation.job_images(first.id)
    assert result["asset_ids"] == [a.id for a in images] and len(images) == 3

    for index, asset in enumerate(images):
        meta = generation.read_png_metadata(assets.read_asset(asset))
        assert meta == asset.meta, "the PNG and the asset row say the same"
        assert (meta["index"], meta["seed"], meta["job_id"]) == (index, 7 + index, first.id)
        assert meta["prompt"] == "ohwx woman, portrait in a cafe" and meta["negative_prompt"] == "blurry"
        assert (meta["scheduler"], meta["steps"], meta["width"], meta["height"]) == ("euler_a", 4, 64, 64)
        assert [(u["id"], u["strength"], u["trigger_word"]) for u in meta["loras"]] == [(ava.id, 1.0, "ohwx woman")]
        assert (asset.width, asset.height, asset.source) == (64, 64, "generated")
        assert asset.thumbnail_key and assets.read_thumbnail(asset)[:2] == b"\xff\xd8", "a JPEG thumbnail"
        with session_scope() as session:
            lineage = session.execute(select(AssetLora).where(AssetLora.asset_id == asset.id)).scalars().all()
        assert [(link.lora_id, link.strength) for link in lineage] == [(ava.id, 1.0)]
    logs = log_text(first.id)
    assert "pipeline loaded" in logs and f"Ava · final (#{ava.id}) @ 1" in logs and "on cpu in fp32" in logs
    assert "images 1–2 of 3 stored" in logs and "image 3 of 3 stored" in logs

    # The worker process draws exactly what the engine draws from the stored payload.
    local = local_render(done, lora_files, {ava.id: "a"})
    assert all(np.array_equal(a, b) for a, b in zip(pictures(first.id), local, strict=True))

    again = succeeded(submit(loras=[(ava, 1.0)], count=3, batch_size=2).id)
    assert again.result["pipeline_cached"] is True, "the second job found the pipeline loaded"
    assert "pipeline cached" in log_text(again.id)
    assert all(np.array_equal(a, b) for a, b in zip(pictures(first.id), pictures(again.id), strict=True)), \
        "the same seed makes the same pictures"

    init = images[0]
    img2img = succeeded(submit(loras=[], init_asset_id=init.id, img2img_strength=0.5, height=96).id)
    txt2img = succeeded(submit(loras=[], height=96).id)
    (made,) = generation.job_images(img2img.id)
    assert (made.width, made.height) == (64, 96)
    assert made.meta["init_asset_id"] == init.id and made.meta["img2img_strength"] == 0.5
    assert generation.read_png_metadata(assets.read_asset(made)) == made.meta
    assert differ(pictures(img2img.id)[0], pictures(txt2img.id)[0]) > 1, "img2img differs from txt2img, same seed"


def test_lora_strengths_never_leak_between_consecutive_jobs_in_one_worker(loras, lora_files, workers):
    workers.worker(queues="gpu", threads=1)
    ava, ben = loras["a"], loras["b"]
    names = {ava.id: "a", ben.id: "b"}
    # insert_trigger off: every job has the very same prompt, so only the LoRAs differ.
    runs = [("base", []), ("a@1", [(ava, 1.0)]), ("after a@1", []), ("a@0.5", [(ava, 0.5)]),
            ("a@1 again", [(ava, 1.0)]), ("a@0", [(ava, 0.0)]), ("a+b", [(ava, 1.0), (ben, 1.0)]),
            ("b@1", [(ben, 1.0)])]
    made, job_rows = {}, {}
    for label, chosen in runs:  # one after the other, all in the same worker process
        job = succeeded(submit(loras=chosen, insert_trigger=False).id)
        made[label], job_rows[label] = pictures(job.id)[0], job
    assert len({job.worker for job in job_rows.values()}) == 1, "one worker process ran them all"
    assert differ(made["a@1"], made["base"]) > 1, "a LoRA at strength 1 changes the picture"
    assert np.array_equal(made["after a@1"], made["base"]), "the next job without a LoRA is the base model"
    assert np.array_equal(made["a@0"], made["base"]), "strength 0 is the base model"
    assert np.array_equal(made["a@1 again"], made["a@1"]), "1.0 after 0.5 is 1.0"
    assert np.array_equal(made["a@0.5"], local_render(job_rows["a@0.5"], lora_files, names)[0]), \
        "0.5 after 1.0 equals a fresh pipeline's 0.5"
    assert differ(made["a+b"], made["a@1"]) > 1 and differ(made["a+b"], made["b@1"]) > 1, "stacked differ from each"
    assert [job_rows[label].result["pipeline_cached"] for label, _ in runs] == [False] + [True] * (len(runs) - 1)


def test_progress_moves_per_step_and_a_cancel_keeps_the_finished_batches(loras, workers):
    workers.worker(queues="gpu", threads=1)
    job = submit(loras=[(loras["a"], 0.8)], count=6, batch_size=2, steps=150)
    messages: list[str] = []

    def second_batch_running() -> bool:
        message = jobs.get_job(job.id).progress_message or ""
        if message and (not messages or messages[-1] != message):
            messages.append(message)
        return message.startswith("images 3–4 of 6 · step ")

    wait_until(second_batch_running, 180, interval=0.02, what="the second batch to start")
    jobs.cancel_job(job.id)
    done = finished(job.id, timeout=60)
    assert done.status == JobStatus.CANCELLED
    assert generation.saved_indexes(job.id) == {0, 1}, "the first batch's images are kept, nothing after"
    assert [a.meta["index"] for a in generation.job_images(job.id)] == [0, 1]
    first_batch = [m for m in messages if m.startswith("images 1–2 of 6 · step ")]
    steps = [int(m.rsplit(" ", 1)[1].split("/")[0]) for m in first_batch]
    assert len(steps) >= 3 and steps == sorted(steps) and all(m.endswith("/150") for m in first_batch), messages
    assert 0 < done.progress < 0.5 and "cancelled" in log_text(job.id)


def stored_at(key: str) -> int:
    """When the local object store last wrote an object (a rewrite changes it)."""
    from core.config import get_settings

    return (get_settings().effective_storage_dir / key).stat().st_mtime_ns


def test_a_killed_worker_job_is_redelivered_and_keeps_the_images_already_stored(loras, workers):
    first = workers.worker(queues="gpu", threads=1)
    job = submit(loras=[(loras["a"], 1.0)], count=5, batch_size=1, steps=60)
    wait_until(lambda: len(generation.saved_indexes(job.id)) >= 2, 180, interval=0.05, what="two stored images")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(30)
    before = {a.meta["index"]: (a.id, a.created_at, stored_at(a.key)) for a in generation.job_images(job.id)}
    assert 2 <= len(before) < 5, "killed mid-job"
    workers.worker(queues="gpu", threads=1)
    done = succeeded(job.id, timeout=240)
    assert done.attempts == 2
    assert done.result["resumed_skipped"] == len(before) and done.result["images"] == 5 - len(before)
    after = {a.meta["index"]: (a.id, a.created_at, stored_at(a.key)) for a in generation.job_images(job.id)}
    assert sorted(after) == [0, 1, 2, 3, 4]
    assert {i: after[i] for i in before} == before, "stored images were not made or written again"
    assert done.result["asset_ids"] == [after[i][0] for i in range(5)]
    assert f"resuming: {len(before)} of 5 image(s) already stored" in log_text(job.id)
    seeds = [a.meta["seed"] for a in generation.job_images(job.id)]
    assert seeds == [7, 8, 9, 10, 11]

