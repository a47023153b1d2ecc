"""A LoRA's files as the UI, the API and the CLI hand them out: the diffusers file we keep, and its kohya twin."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import InvalidInput
from core.loras import comfyui, dit_kohya, kohya
from core.models import LoraModel
from core.training.runs import get_lora, read_lora_weights

FORMATS = ("kohya", "diffusers", "comfyui")
DIT_FAMILIES = comfyui.DIT_FAMILIES  # the families whose LoRAs also have a ComfyUI / ai-toolkit file


@dataclass(frozen=True)
class LoraFile:
    file_name: str
    data: bytes


def file_stem(lora: LoraModel) -> str:
    """A file-system-safe stem from the LoRA's name (``anna-final``), never empty."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", lora.name).strip("-.")[:80]
    return stem or f"lora-{lora.id}"


def export_lora(lora: LoraModel, fmt: str = "kohya") -> LoraFile:
    """The LoRA in ``fmt``: ``kohya`` (ComfyUI, A1111, Forge, sd-scripts, Civitai for SD 1.5 / SDXL; ComfyUI for the
    DiT families), ``comfyui`` (the DiT families' ComfyUI / ai-toolkit file; for SD 1.5 /
    SDXL the kohya file, which is what ComfyUI loads) or ``diffusers`` (ours)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown LoRA format {fmt!r}; choose one of {', '.join(FORMATS)}")
    data = read_lora_weights(lora)
    stem = file_stem(lora)
    if fmt == "diffusers":
        return LoraFile(f"{stem}.safetensors", data)
    if fmt == "comfyui" and lora.family in comfyui.DIT_FAMILIES:
        dit = comfyui.to_comfyui(data, family=lora.family, base_model=lora.base_model,
                                 trigger_word=lora.trigger_word, name=stem)
        return LoraFile(comfyui.file_name(stem), dit.data)
    if lora.family in comfyui.DIT_FAMILIES:
        native = dit_kohya.to_kohya_dit(data, family=lora.family, base_model=lora.base_model,
                                        trigger_word=lora.trigger_word, name=stem)
        return LoraFile(kohya.file_name(stem), native.data)
    export = kohya.to_kohya(data, family=lora.family, base_model=lora.base_model, trigger_word=lora.trigger_word,
                            name=stem)
    return LoraFile(kohya.file_name(stem), export.data)


def export_lora_by_id(lora_id: int, fmt: str = "kohya") -> LoraFile:
    return export_lora(get_lora(lora_id), fmt)


def kohya_bytes(lora: LoraModel) -> bytes:
    """For download buttons that take a callable (the file is built only when clicked): the kohya file, the one
    the community's tools load for every family (ComfyUI included)."""
    return export_lora(lora, "kohya").data


def comfyui_bytes(lora: LoraModel) -> bytes:
    """The ComfyUI / ai-toolkit file of a DiT LoRA (the kohya file for SD 1.5 / SDXL), built when clicked."""
    return export_lora(lora, "comfyui").data
