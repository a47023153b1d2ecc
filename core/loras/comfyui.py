"""Our DiT LoRA files (FLUX.2 klein, Z-Image, Qwen-Image) in the layout ComfyUI's own loader maps, without torch.

The studio's file for these families is diffusers' (``transformer.<module>.lora_A/B.weight``, alpha only in the
JSON metadata), which ComfyUI maps 0 keys of for FLUX.2. What ComfyUI's ``comfy/lora.py``
(``model_lora_keys_unet``) maps, read and run on tiny models of its own classes (see ``core/loras/README.md``):

* FLUX.2 klein (``model_base.Flux2``, a ``Flux``): ``diffusion_model.<native BFL module>`` (every weight of the
  model, the generic rule) — ``double_blocks.N.img_attn.qkv`` with q/k/v fused, ``single_blocks.N.linear1``…
  Its diffusers names map only as ``transformer.<FLUX.1 diffusers name>`` (``comfy.utils.flux_to_diffusers``),
  which lacks FLUX.2's ``ff.linear_in`` and ``to_qkv_mlp_proj``; so the export writes the native names, the
  fused q/k/v LoRA exact (``core/loras/dit_names.py``: stacked down, block-diagonal up).
* Z-Image (``model_base.Lumina2``): ``diffusion_model.<diffusers module>`` through ``comfy.utils.
  z_image_to_diffusers`` (q/k/v land on their row block of the fused ``attention.qkv``); the export keeps those.
* Qwen-Image (``model_base.QwenImage``): ComfyUI's model has diffusers' module names, so
  ``diffusion_model.<diffusers module>`` is its own weight name.

Each module's REAL alpha / rank is folded into ``lora_B`` (no ``.alpha`` key: ComfyUI then scales by 1, and so do
readers that ignore ``.alpha``), fp16, ``ss_*`` metadata (``ss_network_alpha`` = dim: the scale is in B). SD 1.5 /
SDXL LoRAs go to ComfyUI in kohya's format (``core/loras/kohya.py``). A key this module cannot place raises
``InvalidInput`` naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from core.errors import InvalidInput
from core.loras.dit_names import NATIVE_FAMILIES, diffusers_modules, native_loras, native_place
from core.loras.kohya import _adapter_configs, read_header

DIT_FAMILIES = NATIVE_FAMILIES
# Families whose diffusers module names ComfyUI does not map onto its model: their file uses the native names.
_NATIVE_NAMED = ("flux2_klein",)


@dataclass(frozen=True)
class ComfyFile:
    data: bytes
    modules: int
    keys: int


def file_name(stem: str) -> str:
    return f"{stem.removesuffix('.safetensors')}-comfyui.safetensors"


def to_comfyui(data: bytes, *, family: str, base_model: str, trigger_word: str = "", name: str = "") -> ComfyFile:
    """The ComfyUI file of a DiT family's diffusers-format LoRA."""
    from safetensors.numpy import save

    if family not in DIT_FAMILIES:
        raise InvalidInput(f"the ComfyUI export covers {', '.join(DIT_FAMILIES)}; SD 1.5 / SDXL use the kohya file")
    modules = diffusers_modules(data, family)
    out: dict[str, np.ndarray] = {}
    if family in _NATIVE_NAMED:
        for native, fused in native_loras(family, modules).items():
            out[f"diffusion_model.{native}.lora_A.weight"] = fused.down.astype(np.float16)
            out[f"diffusion_model.{native}.lora_B.weight"] = (fused.up * (fused.alpha / fused.rank)).astype(np.float16)
    else:
        for module, lora in modules.items():
            native_place(family, module)  # refuses, by name, a module ComfyUI's map for the family lacks
            out[f"diffusion_model.{module}.lora_A.weight"] = lora.down.astype(np.float16)
            out[f"diffusion_model.{module}.lora_B.weight"] = (lora.up * lora.scale).astype(np.float16)
    ranks = {int(v.shape[1]) for k, v in out.items() if k.endswith(".lora_B.weight")}
    info = {"ss_network_module": "networks.lora", "ss_network_dim": str(max(ranks, default=0)),
            "ss_network_alpha": str(max(ranks, default=0)), "studio_lora_alpha": _configured_alpha(data),
            "ss_base_model_version": family,
            "ss_sd_model_name": base_model, "ss_output_name": name, "studio_family": family,
            "studio_trigger_word": trigger_word}
    if trigger_word:
        info["ss_tag_frequency"] = json.dumps({"studio": {trigger_word: 1}})
    return ComfyFile(save(out, metadata=info), modules=len(out) // 2, keys=len(out))


def _configured_alpha(data: bytes) -> str:
    return str(_adapter_configs(read_header(data)[1]).get("transformer", {}).get("lora_alpha", ""))
