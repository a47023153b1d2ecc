"""The kohya/A1111 export, judged by a real consumer: diffusers' own kohya loader (``load_lora_weights``).

A LoRA with alpha ≠ rank and adapters on every text encoder is saved the way training saves it, exported,
and the export must load with every key consumed and render what our diffusers file renders.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save
from safetensors.torch import load as load_torch

from core.errors import InvalidInput
from core.loras.kohya import read_header, to_kohya
from core.training.params import WEIGHTS_FILE, LoraParams
from workers.ml.training.models import add_lora, load_components, save_lora_weights

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]

PIPELINES = {"sd15": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline}
RANK, ALPHA = 4, 8  # alpha ≠ rank: an exporter that writes alpha = rank renders at half strength
# The deltas are fp16-exact (see make_lora), so the images may differ by float summation order only
# (pixel values 0..1).
TOLERANCE = 1e-4


def make_lora(model: Path, family: str, folder: Path, *, seed: int = 0) -> Path:
    """A LoRA on the UNet and every text encoder, saved like training saves it, with non-zero deltas."""
    components = load_components(str(model), family, device="cpu", weight_dtype=torch.float32)
    components.trained_text_encoders = list(components.text_encoders)
    add_lora(components, LoraParams(family=family, base_model=str(model), rank=RANK, alpha=ALPHA,
                                    train_text_encoder=True))
    generator = torch.Generator().manual_seed(seed)
    for module in components.lora_modules().values():
        for name, parameter in module.named_parameters():
            if "lora_B" in name:  # gaussian init leaves B at zero: the LoRA would change nothing
                parameter.data = torch.randn(parameter.shape, generator=generator) * 0.3
            # Values fp16 holds exactly, so the fp16 export carries the very same deltas.
            parameter.data = parameter.data.half().float()
    folder.mkdir(parents=True, exist_ok=True)
    save_lora_weights(components, str(folder))
    return folder / WEIGHTS_FILE


@pytest.fixture(scope="module")
def pipelines(tiny_models) -> dict[str, object]:
    return {family: PIPELINES[family].from_pretrained(str(tiny_models[family])).to("cpu") for family in PIPELINES}


def render(pipe) -> np.ndarray:
    result = pipe("a photo of ohwx", num_inference_steps=1, height=64, width=64, output_type="np",
                  generator=torch.Generator().manual_seed(7))
    return np.asarray(result.images[0])


def lora_layers(pipe, adapter: str) -> dict[str, int]:
    """component → how many of its modules carry the adapter."""
    counts = {}
    for name in ("unet", "text_encoder", "text_encoder_2"):
        component = getattr(pipe, name, None)
        if component is not None:
            counts[name] = sum(1 for m in component.modules() if adapter in getattr(m, "lora_A", {}))
    return counts


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_kohya_export_loads_in_diffusers_with_every_key_and_renders_like_our_file(
        family, tiny_models, pipelines, tmp_path):
    ours = make_lora(tiny_models[family], family, tmp_path / "ours")
    export = to_kohya(ours.read_bytes(), family=family, base_model="base/model", trigger_word="ohwx", name="anna")
    kohya = tmp_path / "anna-kohya.safetensors"
    kohya.write_bytes(export.data)
    tensors = load_numpy(export.data)
    pipe = pipelines[family]
    base = render(pipe)
    pipe.load_lora_weights(str(ours.parent), weight_name=ours.name, adapter_name="ours")
    with_ours, ours_layers = render(pipe), lora_layers(pipe, "ours")
    pipe.unload_lora_weights()
    pipe.load_lora_weights(str(kohya.parent), weight_name=kohya.name, adapter_name="kohya")
    with_kohya, kohya_layers = render(pipe), lora_layers(pipe, "kohya")
    pipe.unload_lora_weights()

    # Every module of the file became a LoRA layer, in every component (both text encoders on SDXL).
    assert kohya_layers == ours_layers
    assert sum(kohya_layers.values()) == export.modules == len(tensors) // 3
    assert all(kohya_layers.values()) and len(kohya_layers) == (3 if family == "sdxl" else 2)
    # Same image as our file, and the LoRA does change the image (else the comparison proves nothing).
    assert np.abs(with_kohya - with_ours).max() <= TOLERANCE
    assert np.abs(with_ours - base).max() > 50 * TOLERANCE


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_kohya_export_names_types_and_metadata_are_the_ones_kohya_writes(family, tiny_models, tmp_path):
    ours = make_lora(tiny_models[family], family, tmp_path / "ours", seed=1)
    export = to_kohya(ours.read_bytes(), family=family, base_model="base/model", trigger_word="ohwx", name="anna")
    tensors = load_torch(export.data)
    _, metadata = read_header(export.data)
    te = ["lora_te1_", "lora_te2_"] if family == "sdxl" else ["lora_te_"]
    first_layer = f"{te[0]}text_model_encoder_layers_0_self_attn_q_proj"
    assert f"{first_layer}.lora_down.weight" in tensors
    assert {key.split("_text_model")[0] + "_" for key in tensors if key.startswith("lora_te")} == set(te)
    unet_blocks = "lora_unet_input_blocks_4_1_" if family == "sdxl" else "lora_unet_down_blocks_1_attentions_0_"
    assert any(key.startswith(unet_blocks) for key in tensors)
    alphas = [value for key, value in tensors.items() if key.endswith(".alpha")]
    assert alphas and all(value.ndim == 0 and float(value) == ALPHA for value in alphas)
    assert {value.dtype for value in tensors.values()} == {torch.float16}
    assert metadata["ss_network_module"] == "networks.lora"
    assert (metadata["ss_network_dim"], metadata["ss_network_alpha"]) == (str(RANK), str(ALPHA))
    assert metadata["ss_base_model_version"] == ("sdxl_base_v1-0" if family == "sdxl" else "sd_v1")
    assert metadata["ss_sd_model_name"] == "base/model"
    assert json.loads(metadata["ss_tag_frequency"]) == {"studio": {"ohwx": 1}}


def test_an_imported_kohya_file_passes_through_in_fp16_with_our_metadata_and_sd15_te_named_as_kohya_reads():
    imported = save({"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": np.ones((2, 4), np.float32),
                     "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": np.ones((4, 2), np.float32),
                     "lora_te1_text_model_encoder_layers_0_mlp_fc1.alpha": np.array(1.0, np.float32)})
    export = to_kohya(imported, family="sd15", base_model="m", trigger_word="cvt")
    tensors = load_numpy(export.data)
    assert sorted(tensors) == ["lora_te_text_model_encoder_layers_0_mlp_fc1.alpha",
                               "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight",
                               "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"]
    assert {v.dtype for v in tensors.values()} == {np.dtype("float16")}
    assert read_header(export.data)[1]["ss_network_alpha"] == "1"


def test_a_key_the_export_cannot_place_is_refused_by_name():
    data = save({"unet.conv_in.lora.down.weight": np.zeros((4, 4), np.float32),
                 "vae.encoder.conv_in.lora.down.weight": np.zeros((4, 4), np.float32)})
    with pytest.raises(InvalidInput, match=r"vae\.encoder\.conv_in\.lora\.down\.weight"):
        to_kohya(data, family="sd15", base_model="m")
    with pytest.raises(InvalidInput, match="not a safetensors file"):
        to_kohya(b"PK\x03\x04 a zip, not a LoRA", family="sd15", base_model="m")
