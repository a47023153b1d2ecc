"""Our LoRA files in kohya/A1111 format, the one ComfyUI, Forge, A1111, kohya sd-scripts and Civitai load.

The studio's own file is diffusers' ``pytorch_lora_weights.safetensors`` (``unet.….lora.down.weight``, alpha
only in the JSON metadata, fp32), which those tools map 0 keys of. This module rewrites it, without torch:

* names: ``lora_unet_<module path with _>``; SD 1.5 keeps the diffusers UNet path (kohya trains SD 1.x on a
  UNet named like diffusers'), SDXL uses the original (SGM) path ``input_blocks.4.1.…`` that kohya's SDXL UNet
  has. Text encoders: ``lora_te_`` (SD 1.5's only one) or ``lora_te1_`` / ``lora_te2_`` (SDXL), always with the
  ``text_model.`` level that transformers 5's ``CLIPTextModel`` no longer has.
* ``.lora_down.weight`` / ``.lora_up.weight`` in fp16 and an ``.alpha`` scalar with the REAL alpha (diffusers'
  ``convert_state_dict_to_kohya`` writes alpha = rank, and drops CLIP-L under transformers 5).
* ``ss_*`` metadata as kohya writes it (network module, dim, alpha, base model version and name, trigger word).

Nothing is ever dropped silently: a key this module cannot place raises ``InvalidInput`` naming it.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import InvalidInput
from core.loras.lycoris import algorithm

# Where a component's modules go in kohya's names; SD 1.x has one text encoder (kohya's plain ``lora_te``).
_PREFIXES = {
    "sd15": {"unet": "lora_unet", "text_encoder": "lora_te"},
    "sdxl": {"unet": "lora_unet", "text_encoder": "lora_te1", "text_encoder_2": "lora_te2"},
}
# kohya's ss_base_model_version values (library/train_util.py, sdxl_train_util.py).
_BASE_VERSIONS = {"sd15": "sd_v1", "sdxl": "sdxl_base_v1-0"}
# The diffusers adapter weights in any spelling: convert_state_dict_to_diffusers' (UNet, text encoders) or peft's.
_WEIGHT = re.compile(r"^(?P<component>unet|text_encoder|text_encoder_2)\.(?P<module>.+)\."
                     r"(?P<part>lora\.down|lora\.up|lora_linear_layer\.down|lora_linear_layer\.up|lora_A|lora_B)\.weight$")
_PART = {"lora.down": "lora_down", "lora_linear_layer.down": "lora_down", "lora_A": "lora_down",
         "lora.up": "lora_up", "lora_linear_layer.up": "lora_up", "lora_B": "lora_up"}
METADATA_KEY = "lora_adapter_metadata"  # where diffusers' save_lora_weights keeps rank and alpha (JSON)


@dataclass(frozen=True)
class KohyaFile:
    data: bytes
    modules: int  # LoRA layers, each written as down + up + alpha
    keys: int


def file_name(stem: str) -> str:
    """The export's download name beside the diffusers one (``…-kohya.safetensors``)."""
    return f"{stem.removesuffix('.safetensors')}-kohya.safetensors"


def read_header(data: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensor table, ``__metadata__``) of a safetensors file, read without loading a tensor.

    Raises ``InvalidInput`` for anything that is not a safetensors file (a pickle, a zip, a truncated file).
    """
    if len(data) < 8:
        raise InvalidInput("not a safetensors file (too short)")
    (length,) = struct.unpack("<Q", data[:8])
    if length < 2 or 8 + length > len(data):
        raise InvalidInput("not a safetensors file (bad header length); pickled .ckpt/.pt files are refused")
    try:
        header = json.loads(data[8:8 + length])
    except ValueError:
        raise InvalidInput("not a safetensors file (the header is not JSON)") from None
    if not isinstance(header, dict):
        raise InvalidInput("not a safetensors file (the header is not a table)")
    metadata = header.pop("__metadata__", None) or {}
    return header, {str(k): str(v) for k, v in metadata.items()}


def to_kohya(data: bytes, *, family: str, base_model: str, trigger_word: str = "", name: str = "") -> KohyaFile:
    """The kohya/A1111 file of a diffusers-format LoRA (``data``: a ``pytorch_lora_weights.safetensors``)."""
    from safetensors.numpy import load, save

    if family not in _PREFIXES:
        raise InvalidInput(f"kohya export covers SD 1.5 and SDXL LoRAs, not {family!r}")
    _, metadata = read_header(data)
    tensors = load(data)
    if tensors and all(key.startswith(("lora_unet_", "lora_te")) for key in tensors):
        return _kohya_as_is(tensors, metadata, family=family, base_model=base_model, trigger_word=trigger_word,
                            name=name)
    adapters = _adapter_configs(metadata)
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    unplaced = []
    for key, value in tensors.items():
        match = _WEIGHT.match(key)
        if match is None or match["component"] not in _PREFIXES[family]:
            unplaced.append(key)
            continue
        pairs.setdefault((match["component"], match["module"]), {})[_PART[match["part"]]] = value
    incomplete = sorted(f"{c}.{m}" for (c, m), parts in pairs.items() if set(parts) != {"lora_down", "lora_up"})
    if unplaced or incomplete:
        raise InvalidInput("cannot export these LoRA keys to kohya format: " + ", ".join(sorted(unplaced) + incomplete))
    out: dict[str, Any] = {}
    ranks: set[int] = set()
    alphas: set[float] = set()
    for (component, module), parts in sorted(pairs.items()):
        kohya = f"{_PREFIXES[family][component]}_{kohya_module_path(family, component, module).replace('.', '_')}"
        rank = int(parts["lora_down"].shape[0])
        alpha = _module_alpha(adapters.get(component, {}), module, rank)
        ranks.add(rank)
        alphas.add(alpha)
        out[f"{kohya}.lora_down.weight"] = parts["lora_down"].astype("float16")
        out[f"{kohya}.lora_up.weight"] = parts["lora_up"].astype("float16")
        out[f"{kohya}.alpha"] = _scalar(alpha)
    header = _ss_metadata(family=family, base_model=base_model, trigger_word=trigger_word, name=name,
                          rank=max(ranks, default=0), alpha=max(alphas, default=0.0))
    return KohyaFile(data=save(out, metadata=header), modules=len(pairs), keys=len(out))


def _kohya_as_is(tensors: dict[str, Any], metadata: Mapping[str, str], *, family: str, base_model: str,
                 trigger_word: str, name: str) -> KohyaFile:
    """An imported LoRA that is kohya-named already: fp16 and our ss_* metadata, names and alphas kept."""
    from safetensors.numpy import save

    downs = {k.removesuffix(".lora_down.weight"): v for k, v in tensors.items() if k.endswith(".lora_down.weight")}
    ranks = [int(v.shape[0]) for v in downs.values()]
    alphas = [float(tensors[f"{m}.alpha"]) for m in downs if f"{m}.alpha" in tensors]
    header = {**metadata, **_ss_metadata(family=family, base_model=base_model, trigger_word=trigger_word, name=name,
                                         rank=max(ranks, default=0), alpha=max(alphas or ranks or [0]))}
    if (kind := algorithm(tensors)) != "lora":
        # LyCORIS' own trainer writes these: tools that show a file's network read them (its rank is no LoRA rank).
        header |= {"ss_network_module": "lycoris.kohya", "ss_network_args": json.dumps({"algo": kind})}
    # kohya sd-scripts names SD 1.x's one text encoder lora_te_ (ComfyUI reads both): written the way it reads.
    rename = (lambda key: "lora_te_" + key.removeprefix("lora_te1_")) if family == "sd15" else (lambda key: key)
    out = {rename(k) if k.startswith("lora_te1_") else k: v.astype("float16") for k, v in tensors.items()}
    return KohyaFile(data=save(out, metadata=header), modules=len(downs), keys=len(out))


def kohya_module_path(family: str, component: str, module: str) -> str:
    """The dotted path kohya's tools name a module by (before the dots become underscores)."""
    if component.startswith("text_encoder"):
        # transformers 5's CLIPTextModel has no text_model level (CLIPTextModelWithProjection still has it).
        return module if module.startswith("text_model.") else f"text_model.{module}"
    return sgm_unet_path(module) if family == "sdxl" else module


# SDXL's original UNet (kohya's sdxl_original_unet, ComfyUI, A1111): every down/up block has 2 resnets
# (+ a down/upsampler), so block i layer j is input_blocks[1 + 3i + j] / output_blocks[3i + j].
_LAYERS_PER_BLOCK = 2
_RESNET_PARTS = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
                 "conv_shortcut": "skip_connection", "norm1": "in_layers.0", "norm2": "out_layers.0"}
_TOP_LEVEL = {"conv_in": "input_blocks.0.0", "conv_out": "out.2", "time_embedding.linear_1": "time_embed.0",
              "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
              "add_embedding.linear_2": "label_emb.0.2"}
_BLOCK = re.compile(r"^(?P<side>down_blocks|up_blocks)\.(?P<i>\d+)\.(?P<kind>attentions|resnets)\.(?P<j>\d+)"
                    r"\.(?P<rest>.+)$")
_MID = re.compile(r"^mid_block\.(?P<kind>attentions|resnets)\.(?P<j>\d+)\.(?P<rest>.+)$")


def sgm_unet_path(module: str) -> str:
    """A diffusers SDXL UNet module path in the original (SGM) layout; paths without an SGM twin we know
    of (down/upsamplers) keep the diffusers path, which ComfyUI, sd-scripts and diffusers also accept."""
    if module in _TOP_LEVEL:
        return _TOP_LEVEL[module]
    if match := _BLOCK.match(module):
        i, j = int(match["i"]), int(match["j"])
        index = (1 + i * (_LAYERS_PER_BLOCK + 1) + j if match["side"] == "down_blocks"
                 else i * (_LAYERS_PER_BLOCK + 1) + j)
        block = "input_blocks" if match["side"] == "down_blocks" else "output_blocks"
        return _sgm_layer(f"{block}.{index}", match["kind"], match["rest"])
    if match := _MID.match(module):
        j = int(match["j"])
        place = "middle_block.1" if match["kind"] == "attentions" else f"middle_block.{2 * j}"
        return _sgm_layer(place, match["kind"], match["rest"], already_placed=True)
    return module


def _sgm_layer(place: str, kind: str, rest: str, *, already_placed: bool = False) -> str:
    if kind == "attentions":
        return f"{place}.{rest}" if already_placed else f"{place}.1.{rest}"
    head, _, tail = rest.partition(".")
    part = _RESNET_PARTS.get(head, head)
    layer = f"{place}.{part}" if already_placed else f"{place}.0.{part}"
    return f"{layer}.{tail}" if tail else layer


def _adapter_configs(metadata: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """component → its peft LoraConfig fields (r, lora_alpha, alpha_pattern) from diffusers' metadata."""
    raw = metadata.get(METADATA_KEY)
    if not raw:
        return {}
    try:
        flat = json.loads(raw)
    except ValueError:
        raise InvalidInput(f"the LoRA's {METADATA_KEY} metadata is not JSON") from None
    configs: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        component, _, field = str(key).partition(".")
        configs.setdefault(component, {})[field] = value
    return configs


def _module_alpha(config: Mapping[str, Any], module: str, rank: int) -> float:
    """The module's alpha as peft scales it: its alpha_pattern entry, else lora_alpha, else (no metadata,
    as diffusers' loader assumes) the rank."""
    for pattern, alpha in (config.get("alpha_pattern") or {}).items():
        # peft's rule (tuners_utils.get_pattern_key): the pattern matches the module path's tail.
        if re.match(rf"(.*\.)?({pattern})$", module):
            return float(alpha)
    alpha = config.get("lora_alpha")
    return float(alpha) if alpha is not None else float(rank)


def _scalar(value: float) -> Any:
    return np.array(value, dtype=np.float16)


def _ss_metadata(*, family: str, base_model: str, trigger_word: str, name: str, rank: int,
                 alpha: float) -> dict[str, str]:
    """The ``ss_*`` keys kohya's train_network.py writes that loaders and Civitai read."""
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": f"{alpha:g}",
        "ss_base_model_version": _BASE_VERSIONS.get(family, family),
        "ss_sd_model_name": base_model,
        "ss_v2": "False",
        "ss_output_name": name,
        "studio_family": family,
        "studio_trigger_word": trigger_word,
    }
    if trigger_word:
        # kohya's shape: {dataset folder: {tag: count}}; tools list these as the LoRA's trigger words.
        metadata["ss_tag_frequency"] = json.dumps({"studio": {trigger_word: 1}})
    return metadata
