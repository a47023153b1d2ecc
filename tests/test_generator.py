"""The generation engine on the tiny random SD 1.5 / SDXL models: no database, no queue, no storage.

What the job handler relies on: every scheduler key runs, image ``i`` depends only on seed ``seed + i``
(whatever its batch), LoRA strengths act as asked and never outlive the block that set them,
img2img starts from the init image, progress arrives per step and an exception there stops the
render between steps, and the pipeline cache loads each model once.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.generation.templates import SCHEDULERS, schedulers_for
from core.training.params import WEIGHTS_FILE, LoraParams
from tests.factories import image_bytes
from workers.ml.generation import (
    SCHEDULER_CLASSES,
    GenerationError,
    LoraAdapter,
    PipelineCache,
    RenderSettings,
    StepEvent,
    cover_crop,
    make_scheduler,
    resolve_dtype,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]

TINY_LORAS_VERSION = 1


def train_tiny_loras(tiny_models: dict[str, Path], folder: Path) -> dict[str, Path]:
    """Two really trained, different tiny SD 1.5 LoRAs ("a", "b"): their weights files.

    Trained once per test session (the folder is shared through the session's base temp dir) and
    reused by every module that asks, so the job tests and these engine tests share them.
    """
    from workers.ml.training import LoraTrainer, NullHooks, TrainerConfig, TrainingExample

    marker = folder / "done.json"
    runs = {"a": (1, "ohwx woman"), "b": (2, "sks man")}
    if marker.is_file() and json.loads(marker.read_text()) == {"version": TINY_LORAS_VERSION}:
        return {name: folder / name / WEIGHTS_FILE for name in runs}
    for name, (seed, trigger) in runs.items():
        images = folder / f"images-{name}"
        images.mkdir(parents=True, exist_ok=True)
        examples = []
        for i in range(4):
            path = images / f"{i}.png"
            path.write_bytes(image_bytes(128, 128, seed=100 * seed + i))
            examples.append(TrainingExample(path=path, caption=f"{trigger}, picture {i}"))
        params = LoraParams(family="sd15", base_model="tiny-sd15", resolution=128, rank=4, alpha=4,
                            learning_rate=2e-2, steps=16, batch_size=2, mixed_precision="no", sample_every=0,
                            checkpoint_every=1000, seed=seed)
        config = TrainerConfig(params=params, base_model=str(tiny_models["sd15"]), work_dir=folder / f"work-{name}",
                               device="cpu")
        result = LoraTrainer(config, examples, NullHooks()).run()
        (folder / name).mkdir(exist_ok=True)
        result.lora_path.replace(folder / name / WEIGHTS_FILE)
    marker.write_text(json.dumps({"version": TINY_LORAS_VERSION}))
    return {name: folder / name / WEIGHTS_FILE for name in runs}


@pytest.fixture(scope="module")
def lora_files(tiny_models, tmp_path_factory) -> dict[str, Path]:
    return train_tiny_loras(tiny_models, tmp_path_factory.getbasetemp() / "tiny-loras")


@pytest.fixture(scope="module")
def cache() -> PipelineCache:
    return PipelineCache(max_size=2)


def settings(**overrides: object) -> RenderSettings:
    values: dict[str, object] = {"prompt": "ohwx woman on a beach", "negative_prompt": "blurry", "steps": 4,
                                 "cfg": 5.0, "width": 64, "height": 64, "scheduler": "euler_a", "seed": 1234,
                                 "batch_size": 2, **overrides}
    return RenderSettings(**values)  # type: ignore[arg-type]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def render(loaded, indexes=(0,), loras=(), **overrides) -> list[np.ndarray]:
    """The images ``indexes`` of a request, as pixel arrays in index order."""
    with loaded.adapters(list(loras)):
        batches = list(loaded.render(settings(**overrides), list(indexes)))
    return [pixels(image) for batch in batches for image in batch.images]


def differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


# ------------------------------------------------------------------------------------------ schedulers


def test_every_scheduler_key_maps_to_a_diffusers_scheduler_and_runs(tiny_models, cache):
    assert set(SCHEDULER_CLASSES) == set(SCHEDULERS), "each template scheduler key has a diffusers mapping"
    results = {}
    with cache.acquire(str(tiny_models["sd15"]), "sd15", device="cpu") as loaded:
        for key in schedulers_for("sd15"):
            scheduler = make_scheduler(key, loaded.base_scheduler_config)
            assert type(scheduler).__name__ == SCHEDULER_CLASSES[key][0]
            (image,) = render(loaded, steps=2, scheduler=key)
            assert image.shape == (64, 64, 3) and type(loaded.pipe.scheduler).__name__ == SCHEDULER_CLASSES[key][0]
            results[key] = image
        # Built fresh from the model's own config each time: Karras sigmas never leak into the next job.
        render(loaded, steps=2, scheduler="dpmpp_2m_karras")
        assert loaded.pipe.scheduler.config.use_karras_sigmas is True
        render(loaded, steps=2, scheduler="euler")
        assert loaded.pipe.scheduler.config.get("use_karras_sigmas", False) is False
    karras = make_scheduler("dpmpp_2m_sde_karras", loaded.base_scheduler_config).config
    assert (karras.algorithm_type, karras.use_karras_sigmas) == ("sde-dpmsolver++", True)
    assert make_scheduler("dpmpp_2m", loaded.base_scheduler_config).config.algorithm_type == "dpmsolver++"
    assert differ(results["euler_a"], results["ddim"]) > 0, "different samplers draw differently"
    with pytest.raises(GenerationError, match="unknown scheduler"):
        make_scheduler("plms", loaded.base_scheduler_config)
    # The flow-matching families' sampler is refused on an SD model (its own families use it).
    with cache.acquire(str(tiny_models["sd15"]), "sd15", device="cpu") as loaded, \
            pytest.raises(GenerationError, match="sd15 cannot sample with 'flow_euler'"):
        render(loaded, steps=2, scheduler="flow_euler")


# ------------------------------------------------------------------------------------------- seeds


def test_each_image_depends_only_on_its_own_seed(tiny_models, cache):
    with cache.acquire(str(tiny_models["sd15"]), "sd15", device="cpu") as loaded:
        batched = render(loaded, indexes=[0, 1, 2], batch_size=3)
        again = render(loaded, indexes=[0, 1, 2], batch_size=3)
        alone = render(loaded, indexes=[2], batch_size=1)
        shifted = render(loaded, indexes=[1], batch_size=1, seed=1235)
    assert all(np.array_equal(a, b) for a, b in zip(batched, again, strict=True)), "same seed, same image"
    # Batched kernels may round differently from single ones: at most a stray pixel level, never a new picture.
    assert same_picture(batched[2], alone[0]), "image 2 is the same in a batch of three or alone"
    assert same_picture(batched[1], render_once(tiny_models, cache, seed=1235)), "image i uses seed + i"
    assert np.array_equal(shifted[0], render_once(tiny_models, cache, seed=1236))
    assert differ(batched[0], batched[1]) > 1, "different seeds, different images"


def same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to the rounding of batched kernels: no pixel off by more than 2 levels, under 0.5 % off at all."""
    return int(np.abs(a - b).max()) <= 2 and float((a != b).mean()) < 0.005


def render_once(tiny_models, cache, **overrides) -> np.ndarray:
    with cache.acquire(str(tiny_models["sd15"]), "sd15", device="cpu") as loaded:
        return render(loaded, indexes=[0], batch_size=1, **overrides)[0]


# ------------------------------------------------------------------------------------------- LoRAs


def test_lora_strength_zero_equals_the_base_model_and_strength_one_changes_it(tiny_models, cache, lora_files):
    a = lora_files["a"]
    with cache.acquire(str(tiny_models["sd15"]), "sd15", device="cpu") as loaded:
        (base,) = render(loaded)
        (zero,) = render(loaded, loras=[LoraAdapter("lora_1", a, 0.0)])
        (half,) = render(loaded, loras=[LoraAdapter("lora_1", a, 0.5)])
        (full,) = render(loaded, loras=[LoraAdapter("lora_1", a, 1.0)])
    assert np.array_equal(zero, base), "strength 0 is the base model"
    assert differ(full, base) > 1, "strength 1 changes the picture"
    assert 0 < differ(half, base) < differ(full, base) + 1e-9, "half strength moves it less far"


def test_two_stacked_loras_differ_from_each_alone(tiny_models, cache, lora_files):
    with cache.acquire(str(tiny_models["sd15"]), "sd15", device="cpu") as loaded:
        (only_a,) = render(loaded, loras=[LoraAdapter("lora_1", lora_files["a"], 1.0)])
        (only_b,) = render(loaded, loras=[LoraAdapter("lora_2", lora_files["b"], 1.0)])
        with loaded.adapters([LoraAdapter("lora_1", lora_files["a"], 1.0),
                              LoraAdapter("lora_2", lora_files["b"], 1.0)]):
            assert loaded.adapter_names() == ["lora_1", "lora_2"]
            (both,) = [pixels(i) for b in loaded.render(settings(), [0]) for i in b.images]
        assert loaded.adapter_names() == [], "both unloaded after the block"
    assert differ(only_a, only_b) > 1, "the two LoRAs learned different things"
    assert differ(both, only_a) > 1 and differ(both, only_b) > 1


def test_strengths_never_outlive_their_block_and_unloading_restores_the_base_exactly(tiny_models, lora_files):
    a = lora_files["a"]
    fresh = PipelineCache(max_size=1)  # pipelines no LoRA ever touched, for reference
    with fresh.acquire(str(tiny_models["sd15"]), "sd15", device="cpu") as pristine:
        (never_loraed,) = render(pristine)
        (fresh_half,) = render(pristine, loras=[LoraAdapter("lora_1", a, 0.5)])
    used = PipelineCache(max_size=1)
    with used.acquire(str(tiny_models["sd15"]), "sd15", device="cpu") as loaded:
        render(loaded, loras=[LoraAdapter("lora_1", a, 1.0), LoraAdapter("lora_2", lora_files["b"], -0.7)])
        (after,) = render(loaded)
        (half,) = render(loaded, loras=[LoraAdapter("lora_1", a, 0.5)])
        with pytest.raises(RuntimeError, match="boom"), loaded.adapters([LoraAdapter("lora_1", a, 1.0)]):
            raise RuntimeError("boom")
        assert loaded.adapter_names() == [], "unloaded even when the job failed"
        (after_error,) = render(loaded)
    assert np.array_equal(after, never_loraed), "after unloading, exactly the never-LoRA'd pipeline"
    assert np.array_equal(half, fresh_half), "0.5 after 1.0 is a fresh 0.5"
    assert np.array_equal(after_error, never_loraed)


def test_a_lora_file_that_does_not_fit_is_a_clear_error(tiny_models, cache, tmp_path):
    broken = tmp_path / WEIGHTS_FILE
    broken.write_bytes(b"not a safetensors file")
    with cache.acquire(str(tiny_models["sd15"]), "sd15", device="cpu") as loaded:
        with pytest.raises(GenerationError, match="does not load"):
            render(loaded, loras=[LoraAdapter("lora_9", broken, 1.0)])
        assert loaded.adapter_names() == []


# ----------------------------------------------------------------------------------------- img2img


def test_img2img_starts_from_the_init_image_at_the_requested_size(tiny_models, cache):
    import io

    init = Image.open(io.BytesIO(image_bytes(100, 60, seed=5)))
    other = Image.open(io.BytesIO(image_bytes(100, 60, seed=6)))
    with cache.acquire(str(tiny_models["sd15"]), "sd15", device="cpu") as loaded:
        (txt2img,) = render(loaded, width=64, height=96)
        (img2img,) = render(loaded, width=64, height=96, init_image=init, strength=0.5)
        (again,) = render(loaded, width=64, height=96, init_image=init, strength=0.5)
        (from_other,) = render(loaded, width=64, height=96, init_image=other, strength=0.5)
        with pytest.raises(GenerationError, match="runs no step"):
            render(loaded, steps=1, init_image=init, strength=0.5)
    assert img2img.shape == (96, 64, 3) and txt2img.shape == (96, 64, 3)
    assert differ(img2img, txt2img) > 1, "img2img differs from text-to-image with the same seed"
    assert np.array_equal(img2img, again)
    assert differ(img2img, from_other) > 1, "the init image matters"


def test_cover_crop_fills_the_size_and_keeps_the_centre():
    picture = Image.new("RGB", (300, 100), "black")
    picture.paste(Image.new("RGB", (100, 100), "white"), (100, 0))  # a white centre third
    cropped = cover_crop(picture, 64, 64)
    assert cropped.size == (64, 64)
    assert np.asarray(cropped).mean() > 250, "the centre kept, the sides cropped away"
    assert cover_crop(Image.new("RGB", (40, 90)), 64, 96).size == (64, 96), "small images are scaled up"


# --------------------------------------------------------------------------------- progress, cancel


def test_progress_arrives_per_step_and_an_exception_stops_the_render_between_steps(tiny_models, cache):
    events: list[StepEvent] = []
    with cache.acquire(str(tiny_models["sd15"]), "sd15", device="cpu") as loaded:
        batches = list(loaded.render(settings(batch_size=2), [0, 1, 2], on_step=events.append))
        assert [b.indexes for b in batches] == [[0, 1], [2]]
        assert [(e.batch_indexes, e.step, e.total_steps) for e in events] == (
            [([0, 1], s, 4) for s in range(1, 5)] + [([2], s, 4) for s in range(1, 5)])

        class Cancelled(Exception):
            pass

        seen: list[tuple[list[int], int]] = []

        def cancel_in_second_batch(event: StepEvent) -> None:
            seen.append((event.batch_indexes, event.step))
            if event.batch_indexes == [2, 3] and event.step == 2:
                raise Cancelled

        finished = []
        with pytest.raises(Cancelled):
            for batch in loaded.render(settings(batch_size=2, steps=20), [0, 1, 2, 3], on_step=cancel_in_second_batch):
                finished.append(batch.indexes)
    assert finished == [[0, 1]], "the first batch was handed over before the cancel"
    assert seen[-1] == ([2, 3], 2) and len(seen) == 22, "stopped right after the step that raised"


# ------------------------------------------------------------------------------------------- cache


def test_the_cache_loads_each_model_once_and_evicts_the_least_recently_used(tiny_models):
    cache = PipelineCache(max_size=1)
    sd15, sdxl = str(tiny_models["sd15"]), str(tiny_models["sdxl"])
    with cache.acquire(sd15, "sd15", device="cpu") as first:
        assert not first.cached and first.dtype == torch.float32 and first.pipe.safety_checker is None
        assert first.lock.locked(), "held for the whole job"
    with cache.acquire(sd15, "sd15", device="cpu") as second:
        assert second.cached and second is first and cache.loads == 1
    with cache.acquire(sdxl, "sdxl", device="cpu") as xl:
        assert not xl.cached and cache.loads == 2
        assert [key[0] for key in cache.keys()] == [sdxl], "the SD 1.5 pipeline was evicted"
        (image,) = render(xl, width=64, height=64)
        (img2img,) = render(xl, width=64, height=64, init_image=Image.new("RGB", (80, 80), "red"), strength=0.5)
        assert image.shape == img2img.shape == (64, 64, 3) and differ(image, img2img) > 0
    with cache.acquire(sd15, "sd15", device="cpu") as again:
        assert not again.cached and again is not first and cache.loads == 3


def test_two_threads_never_hold_the_same_pipeline_at_once(tiny_models):
    cache = PipelineCache(max_size=1)
    model = str(tiny_models["sd15"])
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with cache.acquire(model, "sd15", device="cpu"):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def second() -> None:
        with cache.acquire(model, "sd15", device="cpu"):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert inside.wait(60)
    threads[1].start()
    threads[1].join(0.5)
    assert threads[1].is_alive(), "the second job waits for the pipeline"
    release.set()
    for thread in threads:
        thread.join(60)
    assert order == ["first in", "first out", "second in"] and cache.loads == 1


def test_a_model_of_the_other_family_or_a_missing_one_fails_clearly(tiny_models, tmp_path):
    cache = PipelineCache(max_size=1)
    with pytest.raises(GenerationError, match="SDXL"), cache.acquire(str(tiny_models["sdxl"]), "sd15", device="cpu"):
        pass
    with pytest.raises(GenerationError, match="could not load"), cache.acquire(str(tmp_path / "nope"), "sd15",
                                                                                device="cpu"):
        pass
    assert cache.keys() == [] and resolve_dtype("cpu") == torch.float32
