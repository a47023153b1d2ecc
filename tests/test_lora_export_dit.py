"""The ComfyUI export of a DiT family's LoRA (FLUX.2 klein, Z-Image, Qwen-Image), judged by diffusers' own reader
of ComfyUI / ai-toolkit files (``<Pipeline>.lora_state_dict``): every key is read, and the LoRA it yields moves each
weight of a tiny real-class transformer exactly as our diffusers file does, alpha ≠ rank included (strength kept)."""

from __future__ import annotations

import diffusers
import pytest
import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.numpy import load as load_numpy

from core.errors import InvalidInput
from core.loras.comfyui import to_comfyui
from core.loras.kohya import read_header
from core.training.params import WEIGHTS_FILE
from tests.tiny_dit import tiny_dit_transformer
from workers.ml.lora_import_dit import PIPELINES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]

RANK, ALPHA = 4, 8  # alpha ≠ rank: an export writing alpha = rank would halve the strength
TOLERANCE = 2e-3  # the export is fp16: each delta's entries round to fp16 (relative 2^-11)
# peft regexes (full match): attention projections and one MLP layer per family.
TARGETS = {"qwen_image": r".*\.(to_q|to_k|to_v|to_out\.0|img_mlp\.net\.2)",
           "z_image": r".*\.(to_q|to_k|to_v|to_out\.0|w2)",
           "flux2_klein": r".*\.(to_q|to_k|to_v|to_out\.0|linear_in)|single_transformer_blocks\.\d+\.attn\.to_out"}


def our_lora(family: str, folder) -> tuple[object, bytes]:
    """A LoRA on a tiny transformer saved as the studio saves the DiT families' (diffusers' save_lora_weights)."""
    transformer = tiny_dit_transformer(family)
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS[family], init_lora_weights="gaussian")
    transformer.add_adapter(config)
    generator = torch.Generator().manual_seed(1)
    for name, parameter in transformer.named_parameters():
        if "lora_B" in name:
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.3
    getattr(diffusers, PIPELINES[family]).save_lora_weights(
        str(folder), transformer_lora_layers=get_peft_model_state_dict(transformer),
        transformer_lora_adapter_metadata=config.to_dict())
    return transformer, (folder / WEIGHTS_FILE).read_bytes()


def deltas_of(transformer) -> dict[str, torch.Tensor]:
    """module → scaling · B @ A of the transformer's active adapter."""
    out = {}
    for path, module in transformer.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            out[path] = module.scaling["default"] * (module.lora_B["default"].weight @ module.lora_A["default"].weight)
    return out


@pytest.mark.parametrize("family", list(PIPELINES))
def test_the_comfyui_export_reads_whole_in_diffusers_and_keeps_every_delta_and_the_strength(family, tmp_path):
    transformer, ours = our_lora(family, tmp_path)
    expected = deltas_of(transformer)
    export = to_comfyui(ours, family=family, base_model="Tongyi-MAI/Z-Image-Turbo", trigger_word="ohwx", name="ava")
    tensors = load_numpy(export.data)
    assert export.modules == len(expected) > 0 and len(tensors) == 2 * len(expected)
    assert all(k.startswith("diffusion_model.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in tensors)
    assert {str(v.dtype) for v in tensors.values()} == {"float16"}
    metadata = read_header(export.data)[1]
    assert (metadata["ss_network_dim"], metadata["studio_lora_alpha"], metadata["studio_trigger_word"]) == \
        ("4", "8", "ohwx")

    read = getattr(diffusers, PIPELINES[family]).lora_state_dict(
        {k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
    read = read[0] if isinstance(read, tuple) else read
    assert len(read) == 2 * len(expected)  # every module's A and B
    fresh = tiny_dit_transformer(family, seed=1)
    fresh.load_lora_adapter(read, prefix="transformer", adapter_name="default")
    got = deltas_of(fresh)
    assert got.keys() == expected.keys()
    for path, delta in expected.items():
        assert (got[path] - delta).abs().max() <= TOLERANCE * delta.abs().max(), path


def test_the_comfyui_export_refuses_what_it_cannot_place():
    from safetensors.numpy import save

    with pytest.raises(InvalidInput, match=r"SD 1\.5 / SDXL use the kohya file"):
        to_comfyui(save({"x": torch.zeros(1).numpy()}), family="sd15", base_model="m")
    with pytest.raises(InvalidInput, match=r"unet\.down\.lora_A\.weight"):
        to_comfyui(save({"unet.down.lora_A.weight": torch.zeros(1).numpy()}), family="z_image", base_model="m")
