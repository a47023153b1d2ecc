"""The 2026 families (FLUX.2 [klein], Z-Image, Qwen-Image) as plug-ins, on tiny random models on the CPU.

Per family: LoRA training lowers the eval loss; the saved file loads into the family's own diffusers
pipeline, changes its output and reproduces the trainer's own sample; pause + resume is bit-exact;
LoKr trains and reloads; quantised bases give a clear error on a CPU. Plus the catalogue, templates and
generation cache paths that name these families.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from core.generation.templates import GenerationTemplate
from core.loras.comfyui import to_comfyui
from core.loras.dit_kohya import to_kohya_dit
from core.training.families import FAMILIES
from core.training.params import LoraParams
from tests.factories import image_bytes
from workers.ml.families import FAMILY_MODULES, get_family
from workers.ml.lora_import_dit import PIPELINES, convert
from workers.ml.training import (
    LoraTrainer,
    NullHooks,
    SampleImage,
    TrainerConfig,
    TrainerError,
    TrainingExample,
    TrainingPaused,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub", "one_thread")]

NEW_FAMILIES = ["flux2_klein", "z_image", "qwen_image"]
PROMPT = "ohwx woman portrait"


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models are all per-op overhead: on 2 shared cores, torch's thread pool makes them ~50× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Recorder(NullHooks):
    def __init__(self, *, pause_at: int | None = None) -> None:
        self.pause_at = pause_at
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.samples: dict[int, list[SampleImage]] = {}

    def on_step(self, step: int, total_steps: int, epoch: int, loss: float, lr: float) -> None:
        self.steps.append(step)
        self.losses.append(loss)

    def on_samples(self, step: int, images: list[SampleImage]) -> None:
        self.samples[step] = images

    def should_pause(self) -> bool:
        return self.steps[-1] == self.pause_at


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> list[TrainingExample]:
    folder = tmp_path_factory.mktemp("family-images")
    found = []
    for i in range(4):
        path = folder / f"{i}.png"
        path.write_bytes(image_bytes(160, 128 + 16 * (i % 2), seed=70 + i))
        found.append(TrainingExample(path=path, caption=f"ohwx woman, picture {i}"))
    return found


def config(tiny_models: dict[str, Path], family: str, work_dir: Path, *, prompts: tuple[str, ...] = (),
           **overrides: object) -> TrainerConfig:
    """The tiny offline preset of the family, shortened."""
    values: dict[str, object] = {
        "family": family, "base_model": f"tiny-{family}", "resolution": 128, "rank": 4, "alpha": 4,
        "learning_rate": 1e-2, "steps": 6, "batch_size": 2, "mixed_precision": "no", "min_snr_gamma": None,
        "sample_every": 0, "sample_steps": 2, "sample_guidance": 2.0, "checkpoint_every": 1000, **overrides,
    }
    params = LoraParams.model_validate(values)
    return TrainerConfig(params=params, base_model=str(tiny_models[family]), sample_prompts=list(prompts),
                         work_dir=work_dir)


@pytest.fixture(scope="module")
def trained(tiny_models, examples, tmp_path_factory) -> dict[str, tuple[object, Recorder]]:
    """One uninterrupted 6-step LoRA run per family, with a sample of PROMPT at the last step."""
    runs = {}
    for family in NEW_FAMILIES:
        hooks = Recorder()
        work = tmp_path_factory.mktemp(f"train-{family}")
        # alpha ≠ rank: the file must carry the adapter's alpha, or a loaded LoRA would be scaled differently.
        result = LoraTrainer(config(tiny_models, family, work, prompts=(PROMPT,), sample_every=6, alpha=8),
                             examples, hooks).run()
        runs[family] = (result, hooks)
    return runs


def pipeline_of(tiny_models: dict[str, Path], family: str):
    pipe = get_family(family).load_pipeline(str(tiny_models[family]), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe, family: str) -> np.ndarray:
    """The trainer's sample settings (2 steps, guidance 2, seed 1234, 128 px) through the public pipeline."""
    arguments = get_family(family).call_arguments(PROMPT, "", 2.0)
    if family == "qwen_image":
        arguments["negative_prompt"] = ""  # the trainer's samples use the empty prompt as the negative
    image = pipe(**arguments, num_inference_steps=2, height=128, width=128,
                 generator=torch.Generator("cpu").manual_seed(1234)).images[0]
    return np.asarray(image, dtype=np.int16)


def png_pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


# ------------------------------------------------------------------------------------ training


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_training_lowers_the_eval_loss_and_the_lora_reloads_into_the_pipeline(tiny_models, trained, family):
    result, hooks = trained[family]
    assert hooks.steps == list(range(1, 7))
    assert result.eval_loss_end < result.eval_loss_start - 0.01, (result.eval_loss_start, result.eval_loss_end)
    weights = load_file(str(result.lora_path))
    assert weights and all(key.startswith("transformer.") for key in weights), sorted(weights)[:3]

    pipe = pipeline_of(tiny_models, family)
    before = render(pipe, family)
    get_family(family).load_lora(pipe, result.lora_path)
    after = render(pipe, family)
    assert np.abs(after - before).mean() > 0.5, "the LoRA changes what the pipeline draws"
    # Loaded from the file, the LoRA draws the trainer's own last sample (same prompt, seed, steps, guidance),
    # which was rendered from cached embeddings with the in-memory adapter: up to PNG's 8-bit rounding.
    assert np.abs(after - png_pixels(hooks.samples[6][0].png)).max() <= 1
    pipe.unload_lora_weights()
    assert np.array_equal(render(pipe, family), before), "unloading restores the base model exactly"


def adapter_deltas(transformer, name: str) -> dict[str, torch.Tensor]:
    return {path: (m.scaling[name] * (m.lora_B[name].weight @ m.lora_A[name].weight)).detach()
            for path, m in transformer.named_modules() if hasattr(m, "lora_A") and name in m.lora_A}


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_a_trained_lora_downloads_in_kohya_and_comfyui_format_and_imports_back_with_the_same_deltas(
        tiny_models, trained, family, tmp_path):
    """The trained file (alpha ≠ rank) itself and each download → our importer: every module moves the transformer
    as the trained LoRA does (up to the downloads' fp16; tests/test_lora_export_dit.py checks them against ComfyUI's
    layout)."""
    result, _ = trained[family]
    trained_file = result.lora_path.read_bytes()
    transformer = pipeline_of(tiny_models, family).transformer
    # The reference: diffusers' own reader of the trained file, alpha from its metadata.
    read = getattr(diffusers, PIPELINES[family]).lora_state_dict(str(result.lora_path), return_lora_metadata=True)
    state, metadata = read[0], read[-1]  # some pipelines also answer network alphas in between
    assert metadata, "the trained file carries its alpha (8 ≠ rank) as adapter metadata"
    transformer.load_lora_adapter(state, prefix="transformer", adapter_name="trained", metadata=metadata)
    deltas = {"trained": adapter_deltas(transformer, "trained")}
    transformer.delete_adapters("trained")
    for name, data in (("diffusers", trained_file),
                       ("kohya", to_kohya_dit(trained_file, family=family, base_model="tiny").data),
                       ("comfyui", to_comfyui(trained_file, family=family, base_model="tiny").data)):
        convert(transformer, data, family=family, directory=tmp_path / name)
        transformer.load_lora_adapter(load_file(str(tmp_path / name / "pytorch_lora_weights.safetensors")),
                                      prefix="transformer", adapter_name=name)
        deltas[name] = adapter_deltas(transformer, name)
        transformer.delete_adapters(name)
    assert deltas["trained"] and all(d.keys() == deltas["trained"].keys() for d in deltas.values())
    for name in ("diffusers", "kohya", "comfyui"):
        for path, delta in deltas["trained"].items():
            assert (deltas[name][path] - delta).abs().max() <= 2e-3 * delta.abs().max(), (name, path)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_pause_and_resume_is_bit_exact(tiny_models, trained, examples, tmp_path, family):
    straight, straight_hooks = trained[family]
    first = Recorder(pause_at=3)
    # No samples this time: they draw from their own generator, so the straight run's do not shift its steps.
    with pytest.raises(TrainingPaused) as paused:
        LoraTrainer(config(tiny_models, family, tmp_path, alpha=8), examples, first).run()
    second = Recorder()
    resumed = LoraTrainer(config(tiny_models, family, tmp_path, alpha=8), examples, second).run(
        resume_from=paused.value.directory)

    assert first.steps + second.steps == list(range(1, 7))
    assert first.losses + second.losses == straight_hooks.losses
    expected, actual = load_file(str(straight.lora_path)), load_file(str(resumed.lora_path))
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_lokr_trains_and_reloads(tiny_models, examples, tmp_path, family):
    hooks = Recorder()
    # LoKr starts at zero like LoRA (one factor is zero) and moves more slowly: a larger learning rate.
    result = LoraTrainer(config(tiny_models, family, tmp_path, prompts=(PROMPT,), adapter="lokr", steps=4,
                                sample_every=4, rank=4, alpha=4, learning_rate=5e-2), examples, hooks).run()
    assert result.eval_loss_end < result.eval_loss_start
    weights = load_file(str(result.lora_path))
    assert any(".lokr_w1" in key for key in weights) and not any("lora_A" in key for key in weights)

    pipe = pipeline_of(tiny_models, family)
    before = render(pipe, family)
    get_family(family).load_lora(pipe, result.lora_path)
    after = render(pipe, family)
    sample = png_pixels(hooks.samples[4][0].png)
    assert np.abs(sample - before).max() > 2, "the trained LoKr changes the picture"
    assert np.abs(after - sample).max() <= 1, "and the file loads back to the very same change"


@pytest.mark.parametrize("family", NEW_FAMILIES)
@pytest.mark.parametrize("quantize", ["nf4", "int8", "fp8"])
def test_a_quantised_base_is_refused_on_the_cpu_naming_the_option(tiny_models, examples, tmp_path, family, quantize):
    trainer = LoraTrainer(config(tiny_models, family, tmp_path, quantize_base=quantize), examples, Recorder())
    with pytest.raises(TrainerError, match=f"quantize_base='{quantize}' needs a CUDA GPU"):
        trainer.load()


def test_8bit_adamw_is_refused_on_the_cpu(tiny_models, examples, tmp_path, monkeypatch):
    import importlib.machinery
    import sys
    import types

    # Installed or not, 8-bit AdamW never runs on the CPU: the error names the optimizer either way.
    trainer = LoraTrainer(config(tiny_models, "z_image", tmp_path, optimizer="adamw8bit"), examples, Recorder())
    trainer.load()
    trainer.prepare_data()
    trainer.cache()
    # Stands in for the package only now: peft would probe a real one while adding adapters.
    stand_in = types.ModuleType("bitsandbytes")
    stand_in.__spec__ = importlib.machinery.ModuleSpec("bitsandbytes", None)
    monkeypatch.setitem(sys.modules, "bitsandbytes", stand_in)
    with pytest.raises(TrainerError, match="'adamw8bit' needs a CUDA GPU"):
        trainer.train()


def test_a_folder_of_another_family_is_refused_before_loading(tiny_models, examples, tmp_path):
    trainer = LoraTrainer(config(tiny_models, "flux2_klein", tmp_path), examples, Recorder())
    trainer.config = trainer.config.model_copy(update={"base_model": str(tiny_models["z_image"])})
    with pytest.raises(TrainerError, match=r"is a ZImagePipeline, not a FLUX\.2"):
        trainer.load()


# ------------------------------------------------------------------------------ models and catalogue


def test_every_catalogued_family_has_a_module_and_a_tiny_model(tiny_models):
    assert set(FAMILIES) == set(FAMILY_MODULES)
    for name, spec in FAMILIES.items():
        assert get_family(name).spec is spec
        assert tiny_models[name].name == spec.tiny_model


def test_the_tiny_qwen_tokenizer_loads_from_its_folder_like_a_real_one(tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["z_image"], subfolder="tokenizer")
    assert type(tokenizer).__name__.startswith("Qwen2Tokenizer")
    text = tokenizer.apply_chat_template([{"role": "user", "content": "a photo of the sea"}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)
    assert text == "<|im_start|>user\na photo of the sea<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    ids = tokenizer(text).input_ids
    # Specials are single tokens; " photo" is one merged token; decoding gives the text back.
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert tokenizer.convert_tokens_to_ids("Ġphoto") in ids
    assert tokenizer.decode(ids) == text


def test_templates_refuse_a_sampler_or_size_the_family_cannot_use():
    base = {"name": "t", "family": "z_image", "base_model": "tiny-z-image", "scheduler": "flow_euler"}
    assert GenerationTemplate.model_validate({**base, "width": 128, "height": 128}).family == "z_image"
    with pytest.raises(ValueError, match="Z-Image cannot sample with Euler a"):
        GenerationTemplate.model_validate({**base, "scheduler": "euler_a"})
    with pytest.raises(ValueError, match=r"Stable Diffusion 1\.x cannot sample with Flow Euler"):
        GenerationTemplate.model_validate({**base, "family": "sd15"})
    with pytest.raises(ValueError, match="136 px is not a multiple of 16"):
        GenerationTemplate.model_validate({**base, "width": 136})


# ------------------------------------------------------------------------------------- generation


def test_generation_stacks_loras_on_a_dit_and_takes_reference_images(tiny_models, trained):
    from workers.ml.generation import LoraAdapter, PipelineCache, RenderSettings

    cache = PipelineCache(max_size=1)
    lora_path = trained["flux2_klein"][0].lora_path
    settings = RenderSettings(prompt=PROMPT, negative_prompt="", steps=2, cfg=1.0, width=64, height=64,
                              scheduler="flow_euler", seed=5, batch_size=2)
    with cache.acquire(str(tiny_models["flux2_klein"]), "flux2_klein", device="cpu") as loaded:
        def draw(current: RenderSettings) -> list[np.ndarray]:
            return [np.asarray(image, dtype=np.int16)
                    for batch in loaded.render(current, indexes=[0, 1]) for image in batch.images]

        base = draw(settings)
        with loaded.adapters([LoraAdapter("a", lora_path, 0.8), LoraAdapter("b", lora_path, 0.7)]):
            assert loaded.adapter_names() == ["a", "b"]
            stacked = draw(settings)
        assert loaded.adapter_names() == []
        assert np.abs(stacked[0] - base[0]).mean() > 0.5
        assert np.array_equal(draw(settings)[1], base[1]), "the adapters are gone after the block"
        reference = Image.fromarray(np.full((64, 64, 3), 200, dtype=np.uint8))
        edited = draw(RenderSettings(**{**settings.__dict__, "reference_images": (reference,)}))
        assert edited[0].shape == (64, 64, 3) and not np.array_equal(edited[0], base[0])


def test_every_family_has_tier_presets_and_a_tiny_offline_preset(studio):
    from core.training.configs import get_config_by_name, list_configs, params_of
    from core.training.runs import resolve_base_model

    by_family: dict[str, list[str]] = {}
    for config in list_configs(page_size=100).items:
        by_family.setdefault(params_of(config).family, []).append(config.name)
    for family, label in (("flux2_klein", "FLUX.2 klein"), ("z_image", "Z-Image"), ("qwen_image", "Qwen-Image")):
        assert sorted(by_family[family]) == sorted([f"{label} 16 GB", f"{label} 24 GB", f"{label} 80 GB",
                                                    f"Tiny {label} (offline test)"])
        tiny = params_of(get_config_by_name(f"Tiny {label} (offline test)"))
        # The tiny preset names the folder ensure_tiny_models builds under the models directory.
        assert Path(resolve_base_model(tiny.base_model)).name == FAMILIES[family].tiny_model
        assert tiny.quantize_base == "none" and tiny.mixed_precision == "no"


def test_img2img_on_qwen_image_keeps_the_requested_size(tiny_models):
    from workers.ml.generation import PipelineCache, RenderSettings

    start = Image.fromarray(np.full((80, 96, 3), 200, dtype=np.uint8))
    settings = RenderSettings(prompt=PROMPT, negative_prompt="", steps=4, cfg=1.0, width=64, height=48,
                              scheduler="flow_euler", seed=1, init_image=start, strength=0.5)
    with PipelineCache(max_size=1).acquire(str(tiny_models["qwen_image"]), "qwen_image", device="cpu") as loaded:
        [image] = [image for batch in loaded.render(settings, indexes=[0]) for image in batch.images]
    assert image.size == (64, 48)
