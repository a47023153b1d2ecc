"""Our DiT LoRA files (FLUX.2 klein, Z-Image, Qwen-Image) in ComfyUI's format, without torch.

The studio's file for these families is diffusers' (``transformer.<module>.lora_A/B.weight``, alpha only in the
JSON metadata). ComfyUI's LoRA loader maps these models' modules under ``diffusion_model.<module>`` in
diffusers' own module names (it splits them onto its fused projections itself), as ai-toolkit writes them, with
no ``.alpha`` key meaning scale 1. So the export renames, folds each module's REAL alpha / rank into ``lora_B``
(``alpha_pattern`` included; readers that ignore ``.alpha`` keys, as diffusers' FLUX.2 reader does, then get the
same strength as ComfyUI), writes fp16 and adds ``ss_*`` metadata (``ss_network_alpha`` = dim: the scale is in
B). SD 1.5 / SDXL LoRAs go to ComfyUI in kohya's format (``core/loras/kohya.py``). A key this module cannot place
raises ``InvalidInput`` naming it. Checked with diffusers' reader of these files, not with ComfyUI's own code
(not run here).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from core.errors import InvalidInput
from core.loras.kohya import _adapter_configs, _module_alpha, read_header

DIT_FAMILIES = ("flux2_klein", "z_image", "qwen_image")
_WEIGHT = re.compile(r"^transformer\.(?P<module>.+)\.(?P<part>lora_A|lora_B)\.weight$")


@dataclass(frozen=True)
class ComfyFile:
    data: bytes
    modules: int
    keys: int


def file_name(stem: str) -> str:
    return f"{stem.removesuffix('.safetensors')}-comfyui.safetensors"


def to_comfyui(data: bytes, *, family: str, base_model: str, trigger_word: str = "", name: str = "") -> ComfyFile:
    """The ComfyUI file of a DiT family's diffusers-format LoRA."""
    from safetensors.numpy import load, save

    if family not in DIT_FAMILIES:
        raise InvalidInput(f"the ComfyUI export covers {', '.join(DIT_FAMILIES)}; SD 1.5 / SDXL use the kohya file")
    _, metadata = read_header(data)
    tensors = load(data)
    config = _adapter_configs(metadata).get("transformer", {})
    out: dict[str, np.ndarray] = {}
    foreign, ranks = [], set()
    for key, value in tensors.items():
        match = _WEIGHT.match(key)
        if match is None:
            foreign.append(key)
            continue
        module = match["module"]
        if match["part"] == "lora_B":
            rank = int(value.shape[1])
            value = value.astype(np.float32) * (_module_alpha(config, module, rank) / rank)
            ranks.add(rank)
        out[f"diffusion_model.{module}.{match['part']}.weight"] = value.astype(np.float16)
    if foreign:
        raise InvalidInput(f"{len(foreign)} key(s) are not a {family} transformer LoRA: "
                           + ", ".join(sorted(foreign)[:20]))
    modules = sum(1 for k in out if k.endswith(".lora_B.weight"))
    info = {"ss_network_module": "networks.lora", "ss_network_dim": str(max(ranks, default=0)),
            "ss_network_alpha": str(max(ranks, default=0)), "studio_lora_alpha": str(config.get("lora_alpha", "")),
            "ss_base_model_version": family,
            "ss_sd_model_name": base_model, "ss_output_name": name, "studio_family": family,
            "studio_trigger_word": trigger_word}
    if trigger_word:
        info["ss_tag_frequency"] = json.dumps({"studio": {trigger_word: 1}})
    return ComfyFile(save(out, metadata=info), modules=modules, keys=len(out))
