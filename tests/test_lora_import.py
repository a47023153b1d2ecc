"""Importing community LoRAs: files written here with the real module names of each format import and render
like the reference application of the same deltas (W += alpha / rank · up @ down); foreign keys are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors.torch import save

from core.errors import InvalidInput
from core.loras.imports import check_upload, detect_format
from core.training.params import WEIGHTS_FILE
from workers.ml.lora_import import convert

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]

PIPELINES = {"sd15": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline}
RANK, ALPHA = 4, 2.0
TOLERANCE = 1e-4  # pixel values 0..1: float summation order only

# Every Linear of a CLIP layer, as kohya trains them (CLIPAttention and CLIPMLP). diffusers' loader cannot
# read a text-encoder part that has attention projections without out_proj or the MLP (it cannot infer the
# key style), so files made of whole layers are what import.
TEXT_LAYER = {f"{group}.{name}": f"{group}_{name}" for group, names in
              (("self_attn", ("q_proj", "k_proj", "v_proj", "out_proj")), ("mlp", ("fc1", "fc2"))) for name in names}
# (component, module path in our diffusers/transformers 5 model) → the key stem each format writes for it.
# Written out by hand from the formats' documented names, so the test does not reuse the code under test.
MODULES = {
    "sd15": [
        ("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
         {"kohya": "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q",
          "peft": "base_model.model.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"}),
        ("unet", "up_blocks.0.attentions.1.proj_out",
         {"kohya": "lora_unet_up_blocks_0_attentions_1_proj_out",
          "peft": "base_model.model.up_blocks.0.attentions.1.proj_out"}),
        # LoCon: a 3×3 convolution of a resnet.
        ("unet", "down_blocks.0.resnets.1.conv1",
         {"kohya": "lora_unet_down_blocks_0_resnets_1_conv1",
          "peft": "base_model.model.down_blocks.0.resnets.1.conv1"}),
        *[("text_encoder", f"encoder.layers.0.{p}", {"kohya": f"lora_te_text_model_encoder_layers_0_{k}"})
          for p, k in TEXT_LAYER.items()],
    ],
    "sdxl": [
        ("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
         {"kohya": "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
          "comfyui": "diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q",
          "diffusers": "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"}),
        ("unet", "up_blocks.0.attentions.2.transformer_blocks.1.attn2.to_v",
         {"kohya": "lora_unet_output_blocks_2_1_transformer_blocks_1_attn2_to_v",
          "comfyui": "diffusion_model.output_blocks.2.1.transformer_blocks.1.attn2.to_v"}),
        ("unet", "down_blocks.0.resnets.0.conv1",
         {"kohya": "lora_unet_input_blocks_1_0_in_layers_2",
          "comfyui": "diffusion_model.input_blocks.1.0.in_layers.2",
          "diffusers": "unet.down_blocks.0.resnets.0.conv1"}),
        *[("text_encoder", f"encoder.layers.0.{p}",
           {"kohya": f"lora_te1_text_model_encoder_layers_0_{k}",
            "comfyui": f"text_encoders.clip_l.transformer.text_model.encoder.layers.0.{p}"})
          for p, k in TEXT_LAYER.items()],
        *[("text_encoder_2", f"text_model.encoder.layers.1.{p}",
           {"kohya": f"lora_te2_text_model_encoder_layers_1_{k}",
            "comfyui": f"text_encoders.clip_g.transformer.text_model.encoder.layers.1.{p}"})
          for p, k in TEXT_LAYER.items()],
    ],
}
PARTS = {"peft": ("lora_A.weight", "lora_B.weight"), "kohya": ("lora_down.weight", "lora_up.weight"),
         "comfyui": ("lora_A.weight", "lora_B.weight"), "diffusers": ("lora.down.weight", "lora.up.weight")}
CASES = [("sd15", "kohya"), ("sd15", "peft"), ("sdxl", "kohya"), ("sdxl", "comfyui"), ("sdxl", "diffusers")]
NO_ALPHA = ("peft", "diffusers")  # their state dicts hold no alpha: the scale is 1 (alpha = rank)


@pytest.fixture(scope="module")
def pipelines(tiny_models) -> dict[str, object]:
    return {family: PIPELINES[family].from_pretrained(str(tiny_models[family])).to("cpu") for family in PIPELINES}


@pytest.fixture(scope="module")
def base_renders() -> dict[str, np.ndarray]:
    """family → the base model's image (each family's is rendered once)."""
    return {}


def community_file(pipe, family: str, fmt: str) -> tuple[bytes, dict]:
    """A LoRA file in ``fmt`` and the deltas it means, keyed by (component, module path)."""
    generator = torch.Generator().manual_seed(3)
    tensors, deltas = {}, {}
    for component, path, names in MODULES[family]:
        if fmt not in names:
            continue
        weight = getattr(pipe, component).get_submodule(path).weight
        shape = weight.shape
        down = torch.randn((RANK, *shape[1:]), generator=generator) * 0.3
        up = torch.randn((shape[0], RANK, *([1, 1] if weight.ndim == 4 else [])), generator=generator) * 0.3
        down_name, up_name = PARTS[fmt]
        tensors[f"{names[fmt]}.{down_name}"], tensors[f"{names[fmt]}.{up_name}"] = down, up
        alpha = RANK if fmt in NO_ALPHA else ALPHA
        if fmt not in NO_ALPHA:
            tensors[f"{names[fmt]}.alpha"] = torch.tensor(ALPHA)
        deltas[(component, path)] = (alpha / RANK) * (up.flatten(1) @ down.flatten(1)).reshape(shape)
    return save(tensors), deltas


def render(pipe) -> np.ndarray:
    result = pipe("a photo of ohwx", num_inference_steps=1, height=64, width=64, output_type="np",
                  generator=torch.Generator().manual_seed(11))
    return np.asarray(result.images[0])


def reference_render(pipe, deltas: dict) -> np.ndarray:
    """The deltas added to the base weights by hand, rendered, and the weights restored."""
    originals = {}
    with torch.no_grad():
        for (component, path), delta in deltas.items():
            weight = getattr(pipe, component).get_submodule(path).weight
            originals[(component, path)] = weight.detach().clone()
            weight += delta
        try:
            return render(pipe)
        finally:
            for (component, path), original in originals.items():
                getattr(pipe, component).get_submodule(path).weight.copy_(original)


@pytest.mark.parametrize(("family", "fmt"), CASES)
def test_a_community_lora_imports_and_renders_like_its_deltas_applied_by_hand(
        family, fmt, pipelines, base_renders, tmp_path):
    pipe = pipelines[family]
    data, deltas = community_file(pipe, family, fmt)
    assert check_upload(data, "community.safetensors") == fmt
    if family not in base_renders:
        base_renders[family] = render(pipe)
    base = base_renders[family]
    expected = reference_render(pipe, deltas)

    report = convert(pipe, data, source_format=fmt, family=family, directory=tmp_path)
    assert sum(report.modules.values()) == len(deltas)
    pipe.load_lora_weights(str(tmp_path), weight_name=WEIGHTS_FILE, adapter_name="imported")
    try:
        imported = render(pipe)
    finally:
        pipe.unload_lora_weights()
    assert np.abs(imported - expected).max() <= TOLERANCE
    assert np.abs(expected - base).max() > 50 * TOLERANCE  # the deltas do show


def test_a_file_with_keys_the_model_lacks_is_refused_with_the_keys_named(pipelines, tmp_path):
    pipe = pipelines["sd15"]
    tensors = {"lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight": torch.zeros(RANK, 32),
               "lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight": torch.zeros(32, RANK)}
    with pytest.raises(InvalidInput, match=r"lora_unet_down_blocks_7_attentions_0_proj_in\.lora_down\.weight"):
        convert(pipe, save(tensors), source_format="kohya", family="sd15", directory=tmp_path)
    # An SDXL LoRA's second text encoder does not fit SD 1.5 either.
    sdxl_data, _ = community_file(pipelines["sdxl"], "sdxl", "kohya")
    with pytest.raises(InvalidInput, match=r"lora_te2_text_model_encoder_layers_1_mlp_fc1\.lora_down\.weight"):
        convert(pipe, sdxl_data, source_format="kohya", family="sd15", directory=tmp_path)
    diffusers = save({"unet.down_blocks.7.attentions.0.proj_in.lora.down.weight": torch.zeros(RANK, 32),
                      "unet.down_blocks.7.attentions.0.proj_in.lora.up.weight": torch.zeros(32, RANK)})
    with pytest.raises(InvalidInput, match=r"unet\.down_blocks\.7\.attentions\.0\.proj_in\.lora\.down\.weight"):
        convert(pipe, diffusers, source_format="diffusers", family="sd15", directory=tmp_path)
    assert not (tmp_path / WEIGHTS_FILE).exists()


def test_uploads_are_checked_like_any_upload(monkeypatch):
    good = save({"lora_unet_x.lora_down.weight": torch.zeros(1)})
    assert check_upload(good, "lora.safetensors") == "kohya"
    monkeypatch.setattr("core.loras.imports.MAX_IMPORT_BYTES", len(good) - 1)
    with pytest.raises(InvalidInput, match="the limit is"):
        check_upload(good, "lora.safetensors")
    monkeypatch.undo()
    with pytest.raises(InvalidInput, match=r"only \.safetensors"):
        check_upload(good, "lora.ckpt")
    with pytest.raises(InvalidInput, match="not a safetensors file"):
        check_upload(b"\x80\x04\x95 a pickle", "lora.safetensors")
    checkpoint = save({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)})
    with pytest.raises(InvalidInput, match=r"foreign key\(s\): model\.diffusion_model\.input_blocks\.0\.0\.weight"):
        check_upload(checkpoint, "checkpoint.safetensors")
    with pytest.raises(InvalidInput, match="mixes LoRA formats"):
        detect_format(["lora_unet_a.alpha", "unet.a.lora.down.weight"])
