"""What a model file or folder is, read from disk without torch: safetensors headers, family, precision, size.

A single ``.safetensors`` checkpoint's family comes from key names only the original (non-diffusers) layouts
use; the header is read alone (8 bytes + its JSON), never the tensors, so a 7 GB file costs one small read.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from core.loras.kohya import read_header

MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit on the JSON header
# Pipeline class (model_index.json) → family.
PIPELINE_FAMILIES = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
    "Flux2KleinPipeline": "flux2_klein",
    "ZImagePipeline": "z_image",
    "QwenImagePipeline": "qwen_image",
}
DTYPES = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "F8_E4M3": "fp8", "F8_E5M2": "fp8"}
# Keys only the original single-file layouts have (diffusers' single_file_utils checks the same names).
_SD_UNET = "model.diffusion_model.input_blocks.0.0.weight"
_SD15_TEXT = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
_SD2_TEXT = "cond_stage_model.model.token_embedding.weight"
_SDXL_TEXT_G = "conditioner.embedders.1.model.token_embedding.weight"
_SDXL_REFINER = "conditioner.embedders.0.model.token_embedding.weight"
# Transformer-only files (how ComfyUI and Civitai share the DiT families, ComfyUI's "diffusion_models" folder):
# keys only each family's original layout has, with or without ComfyUI's prefix. Z-Image shares Lumina 2's block
# names; its caption pad token is its own (diffusers' converter keeps the name, so every Z-Image file has it).
COMFY_PREFIX = "model.diffusion_model."
_DIT_MARKERS = {
    "flux2_klein": ("single_stream_modulation.lin.weight",),
    "z_image": ("layers.0.adaLN_modulation.0.weight", "cap_pad_token"),
    "qwen_image": ("transformer_blocks.0.img_mod.1.weight",),
}
_FLUX2_DEV = "guidance_in.in_layer.weight"  # FLUX.2 [dev] embeds guidance; klein is guidance-free
SINGLE_FILE_FAMILIES = ("sd15", "sdxl")  # whole pipelines in one file, converted at install
TRANSFORMER_FAMILIES = tuple(_DIT_MARKERS)  # the transformer alone, paired with a base model's other components
FORMAT_LABELS = {"diffusers": "diffusers folder", "single_file": "single file (converted)",
                 "transformer": "single file (transformer)"}


def file_header(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensor table, metadata) of a safetensors file on disk; refuses anything else (pickles included)."""
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise InvalidInput(f"{path.name}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES:
            raise InvalidInput(f"{path.name}: not a safetensors file (header of {length:,} bytes)")
        body = handle.read(length)
    size = path.stat().st_size
    tensors, metadata = read_header(head + body)
    end = max((int(t["data_offsets"][1]) for t in tensors.values() if isinstance(t, dict) and "data_offsets" in t),
              default=0)
    if 8 + length + end > size:
        raise InvalidInput(f"{path.name}: truncated ({size:,} bytes; the header announces {8 + length + end:,})")
    return tensors, metadata


def precision_of(dtypes: set[str]) -> str:
    names = {DTYPES.get(d, d.lower()) for d in dtypes}
    return names.pop() if len(names) == 1 else ("mixed" if names else "")


def detect_single_file(tensors: dict[str, Any]) -> str:
    """The family of a single-file checkpoint (a whole SD one, or a DiT family's transformer alone) from its keys;
    a layout we cannot install is refused by name."""
    keys = tensors.keys()
    if _SD_UNET in keys:
        if _SDXL_TEXT_G in keys:
            return "sdxl"
        if _SD15_TEXT in keys:
            return "sd15"
        if _SD2_TEXT in keys:
            raise InvalidInput("a Stable Diffusion 2.x checkpoint: SD 2 is not a family the studio runs")
        if _SDXL_REFINER in keys:
            raise InvalidInput("an SDXL refiner checkpoint: install the SDXL base model")
        raise InvalidInput("a Stable Diffusion UNet without its text encoder (a UNet-only file); install a full "
                           "checkpoint or a diffusers folder")
    unprefixed = {key.removeprefix(COMFY_PREFIX) for key in keys}
    for family, markers in _DIT_MARKERS.items():
        if all(marker in unprefixed for marker in markers):
            if family == "flux2_klein" and _FLUX2_DEV in unprefixed:
                raise InvalidInput("a FLUX.2 [dev] transformer (it embeds guidance): the studio runs FLUX.2 [klein]")
            return family
    if _DIT_MARKERS["z_image"][0] in unprefixed:
        raise InvalidInput("a Lumina-style transformer that is not Z-Image (no caption pad token)")
    shown = ", ".join(sorted(keys)[:5])
    raise InvalidInput("not a checkpoint of a family we know (SD 1.5 or SDXL checkpoints; FLUX.2 [klein], Z-Image "
                       f"or Qwen-Image transformers); first keys: {shown}")


def single_file_format(family: str) -> str:
    """``transformer`` for a DiT family's transformer-only file, ``single_file`` for a whole SD checkpoint."""
    return "transformer" if family in TRANSFORMER_FAMILIES else "single_file"


def folder_family(path: Path) -> str:
    """The family of a diffusers folder, from its ``model_index.json``."""
    index = path / "model_index.json"
    if not index.is_file():
        raise InvalidInput(f"{path}: not a diffusers folder (no model_index.json)")
    try:
        pipeline = json.loads(index.read_text()).get("_class_name", "")
    except (ValueError, AttributeError):
        raise InvalidInput(f"{index}: not readable JSON") from None
    family = PIPELINE_FAMILIES.get(pipeline)
    if family is None:
        raise InvalidInput(f"{path}: a {pipeline or 'unknown'} folder; the studio runs "
                           + ", ".join(PIPELINE_FAMILIES))
    return family


def folder_stats(path: Path) -> tuple[int, str]:
    """(bytes on disk, precision of its safetensors weights) of a model folder."""
    size, dtypes = 0, set()
    for file in path.rglob("*"):
        if not file.is_file():
            continue
        size += file.stat().st_size
        if file.suffix == ".safetensors":
            tensors, _ = file_header(file)
            dtypes |= {t["dtype"] for t in tensors.values() if isinstance(t, dict) and "dtype" in t}
    return size, precision_of(dtypes)
