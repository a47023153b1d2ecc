"""The LoRA training engine on tiny random SD 1.5 / SDXL models: no database, no queue, no storage.

What the job handler relies on: the loss falls, the saved file is a diffusers LoRA that pipelines
load, a resumed run continues exactly where the checkpoint left off, pausing saves first, a hook's
exception stops the run at once, and the data order is a pure function of the seed.
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from core.jobs.retry import is_transient
from core.training.params import LoraParams
from tests.factories import image_bytes
from workers.ml.training import (
    STATE_FILE,
    WEIGHTS_FILE,
    LoraTrainer,
    NullHooks,
    SampleImage,
    TrainerConfig,
    TrainerError,
    TrainingExample,
    TrainingPaused,
)
from workers.ml.training.api import STAGES
from workers.ml.training.data import BatchPlan, assign_bucket, drops_caption, make_buckets, prepare_images

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]




class Recorder(NullHooks):
    """Hooks that remember everything; can pause or fail at a given step."""

    def __init__(self, *, pause_at: int | None = None, fail_at: int | None = None) -> None:
        self.pause_at, self.fail_at = pause_at, fail_at
        self.stages: list[str] = []
        self.logs: list[str] = []
        self.steps: list[int] = []
        self.epochs: list[int] = []
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.samples: dict[int, list[SampleImage]] = {}
        self.checkpoints: list[tuple[int, Path, bool]] = []

    def stage(self, name: str) -> None:
        self.stages.append(name)

    def log(self, message: str) -> None:
        self.logs.append(message)

    def on_step(self, step: int, total_steps: int, epoch: int, loss: float, lr: float) -> None:
        self.steps.append(step)
        self.epochs.append(epoch)
        self.losses.append(loss)
        self.lrs.append(lr)
        if step == self.fail_at:
            raise KeyboardInterrupt("cancelled by the user")

    def on_samples(self, step: int, images: list[SampleImage]) -> None:
        self.samples[step] = images

    def on_checkpoint(self, step: int, directory: Path, final: bool) -> None:
        assert (directory / WEIGHTS_FILE).is_file() and (directory / STATE_FILE).is_file(), "complete when reported"
        self.checkpoints.append((step, directory, final))

    def should_pause(self) -> bool:
        return self.steps[-1] == self.pause_at


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> list[TrainingExample]:
    """Six small pictures of slightly different shapes, like a real dataset's."""
    folder = tmp_path_factory.mktemp("images")
    found = []
    for i in range(6):
        path = folder / f"{i}.png"
        path.write_bytes(image_bytes(160, 128 + 16 * (i % 3), seed=40 + i))
        found.append(TrainingExample(path=path, caption=f"ohwx woman, picture {i}"))
    return found


def config(tiny_models: dict[str, Path], work_dir: Path, *, prompts: tuple[str, ...] = (),
           **overrides: object) -> TrainerConfig:
    """The tiny preset (128 px, rank 8, fp32), shortened; overrides are LoraParams fields."""
    values: dict[str, object] = {
        "family": "sd15", "base_model": "tiny-sd15", "resolution": 128, "rank": 8, "alpha": 8,
        "learning_rate": 1e-3, "steps": 8, "batch_size": 2, "mixed_precision": "no", "sample_every": 0,
        "sample_steps": 2, "checkpoint_every": 1000, **overrides,
    }
    params = LoraParams.model_validate(values)
    return TrainerConfig(params=params, base_model=str(tiny_models[params.family]), sample_prompts=list(prompts),
                         work_dir=work_dir)


def lora_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path if path.suffix else path / WEIGHTS_FILE))


def png_pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def render(pipeline, prompt: str, *, seed: int = 1234, steps: int = 2, guidance: float = 7.0) -> np.ndarray:
    image = pipeline(prompt, num_inference_steps=steps, guidance_scale=guidance, height=128, width=128,
                     generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


# ------------------------------------------------------------------------------------ training


def test_tiny_sd15_lora_training_lowers_the_eval_loss(tiny_models, examples, tmp_path) -> None:
    hooks = Recorder()
    # A high learning rate: the random tiny UNet learns slowly, and 30 steps must show it.
    result = LoraTrainer(config(tiny_models, tmp_path, steps=30, learning_rate=1e-2), examples, hooks).run()

    assert hooks.stages == list(STAGES)
    assert hooks.steps == list(range(1, 31)) and result.steps == 30
    assert result.eval_loss_end < result.eval_loss_start - 0.005, (result.eval_loss_start, result.eval_loss_end)
    assert all(math.isfinite(loss) for loss in hooks.losses)
    # 6 images in one 128×128 bucket at batch 2: 3 steps per epoch.
    assert hooks.epochs[:4] == [1, 1, 1, 2] and result.epochs == 10
    assert hooks.checkpoints == [(30, result.lora_path.parent, True)]
    assert result.lora_path.name == WEIGHTS_FILE and result.lora_path.parent.name == "step-000030"
    assert result.device == "cpu" and result.memory_kind.startswith("cpu peak RSS")
    assert result.steps_per_second > 0 and result.seconds > 0 and result.peak_memory_mb >= 0


def test_saved_lora_loads_into_the_pipeline_and_changes_its_output(tiny_models, examples, tmp_path) -> None:
    from diffusers import StableDiffusionPipeline

    prompt = "ohwx woman portrait"
    hooks = Recorder()
    # alpha ≠ rank: the file must carry the adapter's alpha, or a loaded LoRA would be scaled differently.
    trainer_config = config(tiny_models, tmp_path, prompts=(prompt,), steps=10, learning_rate=1e-2, alpha=16,
                            sample_every=5, sample_guidance=7.0)
    result = LoraTrainer(trainer_config, examples, hooks).run()
    assert sorted(hooks.samples) == [5, 10]
    assert [(s.prompt_index, s.prompt, s.seed) for s in hooks.samples[10]] == [(0, prompt, 1234)]
    assert not np.array_equal(png_pixels(hooks.samples[5][0].png), png_pixels(hooks.samples[10][0].png))

    pipeline = StableDiffusionPipeline.from_pretrained(tiny_models["sd15"], safety_checker=None)
    pipeline.set_progress_bar_config(disable=True)
    before = render(pipeline, prompt)
    pipeline.load_lora_weights(result.lora_path.parent)
    after = render(pipeline, prompt)

    assert np.abs(after - before).mean() > 0.5, "the LoRA changes what the pipeline draws"
    # The same prompt and seed reproduce the trainer's own last sample (up to PNG's 8-bit rounding).
    assert np.abs(after - png_pixels(hooks.samples[10][0].png)).max() <= 1


def test_resume_continues_with_the_same_steps_and_weights(tiny_models, examples, tmp_path) -> None:
    # Everything a resume must restore: dropout and noise-offset draws, a warm-up + cosine schedule, Adam's moments.
    knobs = {"steps": 8, "caption_dropout": 0.3, "noise_offset": 0.05, "lr_scheduler": "cosine",
             "warmup_steps": 2, "learning_rate": 5e-3}
    straight_hooks = Recorder()
    straight = LoraTrainer(config(tiny_models, tmp_path / "straight", **knobs), examples, straight_hooks).run()

    first = Recorder(pause_at=4)
    with pytest.raises(TrainingPaused) as paused:
        LoraTrainer(config(tiny_models, tmp_path / "resumed", **knobs), examples, first).run()
    second = Recorder()
    resumed = LoraTrainer(config(tiny_models, tmp_path / "resumed", **knobs), examples, second).run(
        resume_from=paused.value.directory)

    assert first.steps + second.steps == list(range(1, 9)), "no gap and no duplicate step"
    assert first.losses + second.losses == pytest.approx(straight_hooks.losses, rel=1e-5)
    assert first.lrs + second.lrs == pytest.approx(straight_hooks.lrs)
    assert resumed.eval_loss_start == straight.eval_loss_start, "the start value comes from the checkpoint"
    assert resumed.eval_loss_end == pytest.approx(straight.eval_loss_end, rel=1e-5)
    expected, actual = lora_weights(straight.lora_path), lora_weights(resumed.lora_path)
    assert expected.keys() == actual.keys()
    # Same data, noise, RNG and optimizer state: on this CPU the two runs are bit-identical. The tolerance
    # (1e-6 absolute on weights of ~1e-2) only allows for BLAS/oneDNN kernels that may reduce in another
    # order on other CPUs or thread counts, while a missed restore is 10,000 times larger: re-drawn noise
    # or fresh Adam moments after the pause move the LoRA up-weights by ~1e-2 (50-70 % of their size).
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-6)


def test_resume_refuses_a_checkpoint_of_other_settings(tiny_models, examples, tmp_path) -> None:
    hooks = Recorder(pause_at=2)
    with pytest.raises(TrainingPaused) as paused:
        LoraTrainer(config(tiny_models, tmp_path, steps=4), examples, hooks).run()
    with pytest.raises(TrainerError, match="batch_size"):
        LoraTrainer(config(tiny_models, tmp_path, steps=4, batch_size=3), examples, Recorder()).run(
            resume_from=paused.value.directory)


def test_should_pause_saves_a_checkpoint_then_raises(tiny_models, examples, tmp_path) -> None:
    hooks = Recorder(pause_at=3)
    with pytest.raises(TrainingPaused) as paused:
        # bf16 is for GPUs: on a CPU the trainer says so and trains in fp32 rather than failing.
        LoraTrainer(config(tiny_models, tmp_path, mixed_precision="bf16"), examples, hooks).run()

    assert paused.value.step == 3 and hooks.steps == [1, 2, 3]
    assert hooks.checkpoints == [(3, tmp_path / "checkpoints" / "step-000003", False)]
    assert paused.value.directory == tmp_path / "checkpoints" / "step-000003"
    assert any("bf16" in line and "fp32" in line for line in hooks.logs)
    assert "save" not in hooks.stages

    # A pause at a step that just saved its periodic checkpoint reports that one, not a second copy.
    again = Recorder(pause_at=2)
    with pytest.raises(TrainingPaused):
        LoraTrainer(config(tiny_models, tmp_path / "again", checkpoint_every=2), examples, again).run()
    assert [(step, final) for step, _, final in again.checkpoints] == [(2, False)]


def test_a_hook_exception_stops_training_within_the_step(tiny_models, examples, tmp_path) -> None:
    hooks = Recorder(fail_at=2)
    with pytest.raises(KeyboardInterrupt, match="cancelled"):
        LoraTrainer(config(tiny_models, tmp_path, checkpoint_every=2, sample_every=2), examples, hooks).run()

    assert hooks.steps == [1, 2]
    assert hooks.checkpoints == [] and hooks.samples == {}
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_sdxl_family_trains_and_saves(tiny_models, examples, tmp_path) -> None:
    from diffusers import StableDiffusionXLPipeline

    hooks = Recorder()
    trainer = LoraTrainer(config(tiny_models, tmp_path, prompts=("ohwx woman portrait",), family="sdxl", steps=6,
                                 learning_rate=1e-2, sample_every=6), examples, hooks)
    result = trainer.run()

    assert hooks.steps == list(range(1, 7)) and sorted(hooks.samples) == [6]
    assert result.eval_loss_end < result.eval_loss_start
    # SDXL's micro-conditioning sees each image's true size and crop: 160×144, resized to 142×128, cropped at x=7.
    image = trainer.images[1]
    assert (image.original_size, image.resized, image.crop_top_left) == ((160, 144), (142, 128), (0, 7))
    weights = lora_weights(result.lora_path)
    assert weights and all(key.startswith("unet.") for key in weights)

    pipeline = StableDiffusionXLPipeline.from_pretrained(tiny_models["sdxl"])
    pipeline.set_progress_bar_config(disable=True)
    before = render(pipeline, "ohwx woman portrait")
    pipeline.load_lora_weights(result.lora_path.parent)
    assert np.abs(render(pipeline, "ohwx woman portrait") - before).mean() > 0.5


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_text_encoder_lora_is_saved_when_enabled(tiny_models, examples, tmp_path, family) -> None:
    from diffusers import DiffusionPipeline

    result = LoraTrainer(config(tiny_models, tmp_path, family=family, steps=3, train_text_encoder=True,
                                caption_dropout=0.5), examples, Recorder()).run()

    encoders = ["text_encoder"] + (["text_encoder_2"] if family == "sdxl" else [])
    prefixes = {key.split(".")[0] for key in lora_weights(result.lora_path)}
    assert prefixes == {"unet", *encoders}
    pipeline = DiffusionPipeline.from_pretrained(tiny_models[family])
    pipeline.load_lora_weights(result.lora_path.parent)
    assert all(getattr(pipeline, name).peft_config for name in encoders), "the pipeline's encoders got the LoRA"


def test_gradient_checkpointing_trains_the_same_lora(tiny_models, examples, tmp_path) -> None:
    knobs = {"steps": 3, "train_text_encoder": True, "text_encoder_lr": 1e-3}
    plain = LoraTrainer(config(tiny_models, tmp_path / "plain", **knobs), examples, Recorder()).run()
    checkpointed = LoraTrainer(config(tiny_models, tmp_path / "ckpt", gradient_checkpointing=True, **knobs),
                               examples, Recorder()).run()

    expected, actual = lora_weights(plain.lora_path), lora_weights(checkpointed.lora_path)
    # Recomputing activations must not cut the gradient to any LoRA weight (text encoder included).
    assert any(key.startswith("text_encoder.") and ".up." in key and actual[key].abs().max() > 0 for key in actual)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-6)


def test_epochs_mode_counts_steps_after_bucketing(tiny_models, tmp_path) -> None:
    # At 256 px: three square images (2 batches of ≤2), one landscape and one portrait (1 batch each).
    sizes = [(256, 256), (300, 300), (280, 260), (320, 192), (192, 320)]
    examples = []
    for i, (width, height) in enumerate(sizes):
        (tmp_path / f"{i}.png").write_bytes(image_bytes(width, height, seed=i))
        examples.append(TrainingExample(path=tmp_path / f"{i}.png", caption=f"ohwx {i}"))
    hooks = Recorder()
    params = {"duration_unit": "epochs", "epochs": 2, "resolution": 256, "batch_size": 2}
    result = LoraTrainer(config(tiny_models, tmp_path / "work", **params), examples, hooks).run()

    assert result.steps == 8 and hooks.steps == list(range(1, 9)), "4 batches per epoch, 2 epochs"
    assert hooks.epochs == [1, 1, 1, 1, 2, 2, 2, 2] and result.epochs == 2
    assert LoraParams.model_validate(params).total_steps(5) == 6, "the estimate assumes full batches"


def test_a_missing_optional_optimizer_fails_naming_its_package(tiny_models, examples, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "prodigyopt", None)  # makes `import prodigyopt` raise ImportError
    with pytest.raises(TrainerError, match="'prodigyopt' package"):
        LoraTrainer(config(tiny_models, tmp_path, optimizer="prodigy", learning_rate=1.0), examples, NullHooks()).run()


def test_a_base_model_that_cannot_be_loaded_fails_clearly_and_permanently(tiny_models, examples, tmp_path):
    cases = (("sd15", tmp_path / "no-such-model", "could not load base model"),
             ("sdxl", tiny_models["sd15"], "not an SDXL model"))
    for family, model, message in cases:
        settings = config(tiny_models, tmp_path, family=family).model_copy(update={"base_model": str(model)})
        with pytest.raises(TrainerError, match=message) as failure:
            LoraTrainer(settings, examples, NullHooks()).run()
        assert not is_transient(failure.value), "retrying a missing or wrong model cannot help"


def test_tiny_sd_models_have_the_layout_of_the_real_ones(tiny_models) -> None:
    from diffusers import DDPMScheduler, DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    from workers.ml.tiny_models import MARKER, ensure_tiny_models

    sd15, sdxl = tiny_models["sd15"], tiny_models["sdxl"]
    assert (sd15.name, sdxl.name) == ("tiny-sd15", "tiny-sdxl"), "presets name the folder"
    assert isinstance(DiffusionPipeline.from_pretrained(sd15), StableDiffusionPipeline)
    assert isinstance(DiffusionPipeline.from_pretrained(sdxl), StableDiffusionXLPipeline)
    assert DDPMScheduler.from_pretrained(sd15, subfolder="scheduler").config.beta_schedule == "scaled_linear"
    assert CLIPTextModelWithProjection.from_pretrained(sdxl, subfolder="text_encoder_2").config.projection_dim == 32
    tokenizer = CLIPTokenizer.from_pretrained(sd15, subfolder="tokenizer")
    assert tokenizer.decode(tokenizer("a photo of the cat").input_ids, skip_special_tokens=True) == \
        "a photo of the cat"

    before = {p: p.stat().st_mtime_ns for p in (sd15 / MARKER, sdxl / MARKER)}
    assert ensure_tiny_models(sd15.parent) == tiny_models
    assert {p: p.stat().st_mtime_ns for p in before} == before, "complete builds are reused"


# ----------------------------------------------------------------------------- data (no models)


def test_buckets_span_1_2_to_2_1_with_an_area_close_to_the_resolution() -> None:
    buckets = make_buckets(512)
    assert (512, 512) in buckets and (320, 640) in buckets and (640, 320) in buckets
    for width, height in buckets:
        assert width % 64 == 0 and height % 64 == 0
        assert 0.75 * 512**2 <= width * height <= 512**2
        assert 0.5 <= width / height <= 2
    assert make_buckets(128) == [(128, 128)]
    assert (704, 1408) in make_buckets(1024)


def test_images_are_never_upscaled_into_their_bucket() -> None:
    buckets = make_buckets(512)
    rng = np.random.default_rng(0)
    for width, height in rng.integers(64, 1200, size=(300, 2)):
        bucket = assign_bucket((int(width), int(height)), buckets)
        assert bucket[0] <= width and bucket[1] <= height, (width, height, bucket)
        assert bucket[0] % 64 == 0 and bucket[1] % 64 == 0
    # Big enough: the closest-ratio bucket itself; too small: the same ratio, shrunk to fit.
    assert assign_bucket((1000, 1000), buckets) == (512, 512)
    assert assign_bucket((300, 300), buckets) == (256, 256)
    assert assign_bucket((400, 800), buckets) == (320, 640)
    assert assign_bucket((200, 400), buckets) == (192, 384)
    assert assign_bucket((40, 40), buckets) == (64, 64), "below 64 px the minimum bucket is the floor"


def test_prepared_images_record_their_crop_for_sdxl(tmp_path) -> None:
    path = tmp_path / "wide.png"
    path.write_bytes(image_bytes(900, 500, seed=1))
    (image,) = prepare_images([TrainingExample(path=path, caption="x")], 512)
    assert image.bucket == (640, 384) and image.original_size == (900, 500)
    assert image.resized == (691, 384) and image.crop_top_left == (0, 25)


def test_batches_never_mix_buckets_and_their_order_is_a_function_of_seed_and_epoch() -> None:
    buckets = [(512, 512)] * 7 + [(640, 384)] * 4 + [(384, 640)] * 1
    plan = BatchPlan(buckets, batch_size=3, seed=42)
    assert plan.batches_per_epoch == 3 + 2 + 1
    for epoch in range(3):
        batches = plan.epoch_batches(epoch)
        assert all(len({buckets[i] for i in batch}) == 1 for batch in batches), "one bucket per batch"
        assert sorted(i for batch in batches for i in batch) == list(range(12)), "each image once per epoch"
        assert all(1 <= len(batch) <= 3 for batch in batches)
    assert BatchPlan(buckets, batch_size=3, seed=42).epoch_batches(1) == plan.epoch_batches(1)
    assert plan.epoch_batches(0) != plan.epoch_batches(1)
    assert BatchPlan(buckets, batch_size=3, seed=7).epoch_batches(0) != plan.epoch_batches(0)
    # A step maps to its epoch's batch, whatever was computed before (what a resume relies on).
    assert [plan.batch(step) for step in (7, 12, 13)] == [plan.epoch_batches(1)[0], plan.epoch_batches(1)[5],
                                                          plan.epoch_batches(2)[0]]


def test_caption_dropout_is_deterministic_per_seed_step_and_position() -> None:
    draws = [drops_caption(42, step, position, 0.3) for step in range(1, 501) for position in range(2)]
    assert draws == [drops_caption(42, step, position, 0.3) for step in range(1, 501) for position in range(2)]
    assert 0.25 < sum(draws) / len(draws) < 0.35
    assert not any(drops_caption(42, step, 0, 0.0) for step in range(100))
