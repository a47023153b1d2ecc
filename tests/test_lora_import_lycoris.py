"""LyCORIS LoKr and LoHa files (kohya names for SD 1.5; ComfyUI/ai-toolkit and OneTrainer names for Z-Image; the
studio's own peft LoKr) import and render through generation like the deltas LyCORIS defines, applied here by hand
from the file's factors (formulas written out below, apart from the code under test); strength scales the delta
linearly and the cached pipeline is the base model again, bit for bit, after the job. DoRA, foreign modules,
wrong shapes and unknown tensors are refused by name."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from safetensors.torch import save

from core.errors import InvalidInput
from core.loras.imports import check_upload
from core.training.params import WEIGHTS_FILE
from tests.tiny_dit import tiny_dit_transformer
from workers.ml import lora_import, lora_import_dit
from workers.ml.generation import LoraAdapter, PipelineCache, RenderSettings
from workers.ml.lycoris import module_delta

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]

PIXEL_TOLERANCE = 1  # 0..255 levels: the same ΔW added in another float order may flip a rounding
WEIGHT_TOLERANCE = 1e-5  # fp32 weights of magnitude ~1


# ----------------------------------------------------------------------- LyCORIS' definitions, by hand


def kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kronecker product of a 2-D ``a`` with a 2-D or 4-D ``b`` (LyCORIS unsqueezes ``a`` for convolutions)."""
    if b.ndim == 2:
        return (a[:, None, :, None] * b[None, :, None, :]).reshape(a.shape[0] * b.shape[0], a.shape[1] * b.shape[1])
    out = a[:, None, :, None, None, None] * b[None, :, None, :, :, :]
    return out.reshape(a.shape[0] * b.shape[0], a.shape[1] * b.shape[1], *b.shape[2:])


def tucker(core: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """core (r, r, k, k), up (r, out), down (r, in) → (out, in, k, k): Σ_ij core[i, j] · up[i, p] · down[j, q]."""
    out = torch.tensordot(up.T, core, dims=([1], [0]))  # (out, r, k, k)
    return torch.tensordot(out, down, dims=([1], [0])).permute(0, 3, 1, 2)  # (out, k, k, in) → (out, in, k, k)


def reference_delta(parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """ΔW as LyCORIS defines it (lycoris/modules/lokr.py, loha.py)."""
    alpha = float(parts["alpha"]) if "alpha" in parts else None
    if "hada_w1_a" in parts:
        if "hada_t1" in parts:
            m1 = tucker(parts["hada_t1"], parts["hada_w1_a"], parts["hada_w1_b"])
            m2 = tucker(parts["hada_t2"], parts["hada_w2_a"], parts["hada_w2_b"])
        else:
            m1, m2 = parts["hada_w1_a"] @ parts["hada_w1_b"], parts["hada_w2_a"] @ parts["hada_w2_b"]
        rank = parts["hada_w1_b"].shape[0]
        return m1 * m2 * (alpha / rank if alpha else 1.0)
    w1 = parts["lokr_w1"] if "lokr_w1" in parts else parts["lokr_w1_a"] @ parts["lokr_w1_b"]
    if "lokr_w2" in parts:
        w2 = parts["lokr_w2"]
    elif "lokr_t2" in parts:
        w2 = tucker(parts["lokr_t2"], parts["lokr_w2_a"], parts["lokr_w2_b"])
    else:
        w2 = parts["lokr_w2_a"] @ parts["lokr_w2_b"]
    factored = parts.get("lokr_w2_b", parts.get("lokr_w1_b"))
    scale = alpha / factored.shape[0] if alpha and factored is not None else 1.0  # both full: alpha is ignored
    return kron(w1, w2) * scale


def random_parts(spec: dict[str, tuple[int, ...] | float], generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(float(value)) if isinstance(value, float) else
            torch.randn(value, generator=generator) * 0.4 for name, value in spec.items()}


# (kohya module name, module path in the tiny SD 1.5, component) → the module's tensors (shapes / alpha).
# Covers each LoKr form: w1 full + w2 factored with an unbalanced split (4×16 out, 8×8 in); both full with an
# alpha LyCORIS ignores (a 3×3 convolution); a Tucker w2 (a convolution); w1 factored (the text encoder).
SD_LOKR = {
    ("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q",
     "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", "unet"):
        {"lokr_w1": (4, 8), "lokr_w2_a": (16, 2), "lokr_w2_b": (2, 8), "alpha": 1.0},
    ("lora_unet_down_blocks_0_resnets_1_conv1", "down_blocks.0.resnets.1.conv1", "unet"):
        {"lokr_w1": (4, 4), "lokr_w2": (8, 8, 3, 3), "alpha": 3.0},
    ("lora_unet_down_blocks_1_resnets_0_conv2", "down_blocks.1.resnets.0.conv2", "unet"):
        {"lokr_w1": (8, 8), "lokr_t2": (2, 2, 3, 3), "lokr_w2_a": (2, 8), "lokr_w2_b": (2, 8), "alpha": 4.0},
    ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", "encoder.layers.0.self_attn.q_proj", "text_encoder"):
        {"lokr_w1_a": (4, 2), "lokr_w1_b": (2, 4), "lokr_w2": (8, 8), "alpha": 1.0},
}
# LoHa: a linear layer, a Tucker convolution, a plain convolution without alpha, the text encoder.
SD_LOHA = {
    ("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_v",
     "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_v", "unet"):
        {"hada_w1_a": (64, 4), "hada_w1_b": (4, 64), "hada_w2_a": (64, 4), "hada_w2_b": (4, 64), "alpha": 2.0},
    ("lora_unet_down_blocks_0_resnets_1_conv1", "down_blocks.0.resnets.1.conv1", "unet"):
        {"hada_t1": (4, 4, 3, 3), "hada_w1_a": (4, 32), "hada_w1_b": (4, 32), "hada_t2": (4, 4, 3, 3),
         "hada_w2_a": (4, 32), "hada_w2_b": (4, 32), "alpha": 4.0},
    ("lora_unet_down_blocks_1_resnets_0_conv2", "down_blocks.1.resnets.0.conv2", "unet"):
        {"hada_w1_a": (64, 2), "hada_w1_b": (2, 64 * 9), "hada_w2_a": (64, 2), "hada_w2_b": (2, 64 * 9)},
    ("lora_te_text_model_encoder_layers_1_mlp_fc1", "encoder.layers.1.mlp.fc1", "text_encoder"):
        {"hada_w1_a": (64, 2), "hada_w1_b": (2, 32), "hada_w2_a": (64, 2), "hada_w2_b": (2, 32), "alpha": 1.0},
}


def settings(**overrides: object) -> RenderSettings:
    # Two steps without CFG keep the renders cheap; the deltas still show.
    values: dict[str, object] = {"prompt": "ohwx woman", "negative_prompt": "", "steps": 2, "cfg": 1.0,
                                 "width": 64, "height": 64, "scheduler": "euler", "seed": 7, **overrides}
    return RenderSettings(**values)  # type: ignore[arg-type]


def draw(loaded, loras=(), **overrides) -> np.ndarray:
    with loaded.adapters(list(loras)):
        (batch,) = list(loaded.render(settings(**overrides), [0]))
    return np.asarray(batch.images[0].convert("RGB"), dtype=np.int16)


def by_hand(loaded, deltas: dict[tuple[str, str], torch.Tensor], strength: float, **overrides) -> np.ndarray:
    """The deltas added to the base weights by hand, rendered, the weights restored."""
    originals = {}
    with torch.no_grad():
        for (component, path), delta in deltas.items():
            weight = getattr(loaded.pipe, component).get_submodule(path).weight
            originals[(component, path)] = weight.detach().clone()
            weight += strength * delta.reshape(weight.shape)
    try:
        return draw(loaded, **overrides)
    finally:
        with torch.no_grad():
            for (component, path), original in originals.items():
                getattr(loaded.pipe, component).get_submodule(path).weight.copy_(original)


@pytest.fixture(scope="module")
def sd15(tiny_models):
    with PipelineCache(max_size=1).acquire(str(tiny_models["sd15"]), "sd15", device="cpu") as loaded:
        yield loaded


@pytest.mark.parametrize("algorithm", ["lokr", "loha"])
def test_a_kohya_lokr_or_loha_file_renders_like_lycoris_deltas_at_any_strength(sd15, algorithm, tmp_path):
    generator = torch.Generator().manual_seed(3)
    tensors, deltas = {}, {}
    for (name, path, component), spec in (SD_LOKR if algorithm == "lokr" else SD_LOHA).items():
        parts = random_parts(spec, generator)
        tensors.update({f"{name}.{part}": value for part, value in parts.items()})
        deltas[(component, path)] = reference_delta(parts)
    data = save(tensors)
    assert check_upload(data, "community.safetensors") == "kohya"

    report = lora_import.convert(sd15.pipe, data, source_format="kohya", family="sd15", directory=tmp_path)
    assert report.algorithm == algorithm
    assert report.modules == {"unet": 3, "text_encoder": 1}
    base = draw(sd15)
    lora = tmp_path / WEIGHTS_FILE
    for strength in (1.0, -0.5):
        imported = draw(sd15, [LoraAdapter("lyco", lora, strength)])
        expected = by_hand(sd15, deltas, strength)
        assert np.abs(imported - expected).max() <= PIXEL_TOLERANCE, strength
        assert np.abs(expected - base).max() > 10 * PIXEL_TOLERANCE, "the deltas do show"
    assert np.array_equal(draw(sd15), base), "after the job the cached pipeline is exactly the base model"


def test_lokr_and_loha_deltas_match_peft_where_its_layers_can_hold_the_file():
    """peft's LoKr/LoHa mirror LyCORIS for factored modules (alpha / r): the same tensors give the same ΔW."""
    from peft import LoHaConfig, LoKrConfig, inject_adapter_in_model

    for config in (LoKrConfig(r=2, alpha=3, decompose_both=True, use_effective_conv2d=True, target_modules=["0", "1"]),
                   LoHaConfig(r=3, alpha=2, use_effective_conv2d=True, target_modules=["0", "1"])):
        torch.manual_seed(0)
        model = inject_adapter_in_model(config, torch.nn.Sequential(torch.nn.Linear(64, 48),
                                                                    torch.nn.Conv2d(16, 24, 3)))
        for name, parameter in model.named_parameters():
            if ".lokr_" in name or ".hada_" in name:
                torch.nn.init.normal_(parameter, std=0.5)
        for layer in model:
            parts = {name: parameter["default"].detach() for name, parameter in layer.named_children()
                     if name.startswith(("lokr_", "hada_")) and "default" in parameter}
            parts["alpha"] = torch.tensor(float(config.alpha))
            peft_delta = layer.get_delta_weight("default")
            ours = module_delta(parts, layer.base_layer.weight.shape)
            assert (ours - peft_delta).abs().max() <= WEIGHT_TOLERANCE, (type(config).__name__, type(layer))
            assert (reference_delta(parts).reshape(ours.shape) - ours).abs().max() <= WEIGHT_TOLERANCE


# ------------------------------------------------------------------------------------------------ Z-Image

DIT_MODULES = ["layers.0.attention.to_q", "layers.1.feed_forward.w2", "layers.0.attention.to_out.0"]


def split(n: int) -> tuple[int, int]:
    small = max(d for d in range(1, int(n ** 0.5) + 1) if n % d == 0)
    return small, n // small


def dit_file(transformer, algorithm: str, name) -> tuple[bytes, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(5)
    tensors, deltas = {}, {}
    for path in DIT_MODULES:
        out_features, in_features = transformer.get_submodule(path).weight.shape
        (a, b), (c, d) = split(out_features), split(in_features)
        spec: dict[str, tuple[int, ...] | float] = (
            {"lokr_w1": (a, c), "lokr_w2_a": (b, 2), "lokr_w2_b": (2, d), "alpha": 3.0} if algorithm == "lokr" else
            {"hada_w1_a": (out_features, 2), "hada_w1_b": (2, in_features), "hada_w2_a": (out_features, 2),
             "hada_w2_b": (2, in_features), "alpha": 1.0})
        parts = random_parts(spec, generator)
        tensors.update({f"{name(path)}.{part}": value for part, value in parts.items()})
        deltas[path] = reference_delta(parts)
    return save(tensors), deltas


def peft_lokr_file(folder) -> tuple[bytes, dict[str, torch.Tensor]]:
    """A LoKr as the studio trains and saves it (peft's LoKr, diffusers' file with the adapter config), alpha ≠ r and
    a module where both factors are full (peft still scales by alpha / r there, LyCORIS would not)."""
    from diffusers import ZImagePipeline
    from peft import LoKrConfig
    from peft.utils import get_peft_model_state_dict

    transformer = tiny_dit_transformer("z_image")  # same module shapes as the tiny pipeline's
    config = LoKrConfig(r=4, alpha=2, target_modules=["to_q", "to_k"], rank_pattern={"to_k": 2},
                        alpha_pattern={"to_k": 3})
    transformer.add_adapter(config)
    torch.manual_seed(1)
    for name, parameter in transformer.named_parameters():
        if ".lokr_" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    deltas = {path: module.get_delta_weight("default").detach() for path, module in transformer.named_modules()
              if hasattr(module, "lokr_w1") and "default" in {**module.lokr_w1, **module.lokr_w1_a}}
    ZImagePipeline.save_lora_weights(str(folder), transformer_lora_layers=get_peft_model_state_dict(transformer),
                                     transformer_lora_adapter_metadata=config.to_dict(), safe_serialization=True)
    return (folder / WEIGHTS_FILE).read_bytes(), deltas


@pytest.fixture(scope="module")
def z_image(tiny_models):
    with PipelineCache(max_size=1).acquire(str(tiny_models["z_image"]), "z_image", device="cpu") as loaded:
        yield loaded


DIT_CASES = {  # file → (source format, algorithm, how a module is named)
    "ai-toolkit LoKr": ("comfyui", "lokr", lambda p: f"diffusion_model.{p}"),
    "OneTrainer LoHa": ("onetrainer", "loha", lambda p: "lora_transformer_" + p.replace(".", "_")),
    "kohya/musubi LoKr": ("kohya", "lokr", lambda p: "lora_unet_" + p.replace(".", "_")),
}


RENDERED = ("ai-toolkit LoKr", "studio peft LoKr")  # the others' weights are checked; renders cost CPU time


def test_dit_lokr_and_loha_files_and_the_studios_own_lokr_apply_their_deltas_in_generation(z_image, tmp_path):
    transformer = z_image.pipe.transformer
    dit = {"scheduler": "flow_euler", "prompt": "ohwx"}
    base_weights = {name: p.detach().clone() for name, p in transformer.named_parameters()}
    base = draw(z_image, **dit)
    files = {label: (fmt, algorithm, *dit_file(transformer, algorithm, name))
             for label, (fmt, algorithm, name) in DIT_CASES.items()}
    (tmp_path / "peft").mkdir()
    files["studio peft LoKr"] = ("diffusers", "lokr", *peft_lokr_file(tmp_path / "peft"))
    for label, (fmt, algorithm, data, deltas) in files.items():
        assert check_upload(data, "dit.safetensors") == fmt, label
        report = lora_import_dit.convert(transformer, data, family="z_image", directory=tmp_path / label)
        assert report["modules"] == {"transformer": len(deltas)} and report["algorithm"] == algorithm, label
        lora = LoraAdapter("lyco", tmp_path / label / WEIGHTS_FILE, 0.7)
        with z_image.adapters([lora]):
            for path, delta in deltas.items():
                moved = transformer.get_submodule(path).weight.detach() - base_weights[f"{path}.weight"]
                assert (moved - 0.7 * delta).abs().max() <= WEIGHT_TOLERANCE, (label, path)
        if label in RENDERED:
            expected = by_hand(z_image, {("transformer", p): d for p, d in deltas.items()}, 0.7, **dit)
            assert np.abs(draw(z_image, [lora], **dit) - expected).max() <= PIXEL_TOLERANCE, label
    assert all(torch.equal(p, base_weights[name]) for name, p in transformer.named_parameters()), "restored exactly"
    assert np.array_equal(draw(z_image, **dit), base)


# ------------------------------------------------------------------------------------------------ refusals


def test_dora_foreign_modules_wrong_shapes_and_unknown_tensors_are_refused_by_name(sd15, z_image, tmp_path):
    dora = save({"lora_unet_a_to_q.lora_down.weight": torch.zeros(2, 4),
                 "lora_unet_a_to_q.lora_up.weight": torch.zeros(4, 2),
                 "lora_unet_a_to_q.dora_scale": torch.ones(1, 4)})
    with pytest.raises(InvalidInput, match=r"DoRA.*lora_unet_a_to_q\.dora_scale"):
        check_upload(dora, "dora.safetensors")
    mixed = save({"lora_unet_a.lokr_w1": torch.zeros(2, 2), "lora_unet_b.hada_w1_a": torch.zeros(2, 2)})
    with pytest.raises(InvalidInput, match="mixes LoKr and LoHa"):
        check_upload(mixed, "mixed.safetensors")

    to_q = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    cases = {
        "lora_unet_down_blocks_7_attentions_0_proj_in.lokr_w1": {  # a module the model does not have
            "lora_unet_down_blocks_7_attentions_0_proj_in.lokr_w1": torch.zeros(4, 4),
            "lora_unet_down_blocks_7_attentions_0_proj_in.lokr_w2": torch.zeros(8, 8)},
        f"{to_q} (makes a (40, 64) change": {  # factors of another shape
            f"{to_q}.lokr_w1": torch.zeros(5, 8), f"{to_q}.lokr_w2": torch.zeros(8, 8)},
        f"{to_q} (missing lokr_w2_b": {f"{to_q}.lokr_w1": torch.zeros(8, 8), f"{to_q}.lokr_w2_a": torch.zeros(8, 2)},
        f"{to_q}.lokr_scalar_x (not a LoKr": {  # a tensor of no part we know: named, never dropped
            f"{to_q}.lokr_w1": torch.zeros(8, 8), f"{to_q}.lokr_w2": torch.zeros(8, 8),
            f"{to_q}.lokr_scalar_x": torch.zeros(1)},
    }
    for named, tensors in cases.items():
        with pytest.raises(InvalidInput, match=r"key\(s\) name no module.*" + re.escape(named)):
            lora_import.convert(sd15.pipe, save(tensors), source_format="kohya", family="sd15", directory=tmp_path)
    qwen_style = save({"diffusion_model.transformer_blocks.0.img_mlp.net.2.lokr_w1": torch.zeros(4, 4),
                       "diffusion_model.transformer_blocks.0.img_mlp.net.2.lokr_w2": torch.zeros(8, 8)})
    with pytest.raises(InvalidInput, match=r"diffusion_model\.transformer_blocks\.0\.img_mlp\.net\.2\.lokr_w1"):
        lora_import_dit.convert(z_image.pipe.transformer, qwen_style, family="z_image", directory=tmp_path)
    assert not (tmp_path / WEIGHTS_FILE).exists()
