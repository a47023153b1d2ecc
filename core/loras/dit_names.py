"""Where a DiT family's diffusers module sits in the model's original ("native") layout, the one ComfyUI,
kohya-style files and the model makers name weights by. Without torch.

* FLUX.2 [klein] (BFL layout): ``transformer_blocks.N`` → ``double_blocks.N`` with q/k/v fused into
  ``img_attn.qkv`` / ``txt_attn.qkv``; ``single_transformer_blocks.N.attn.to_qkv_mlp_proj`` →
  ``single_blocks.N.linear1``.
* Z-Image (ComfyUI's Lumina 2 layout): ``attention.to_q/k/v`` fused into ``attention.qkv``, ``to_out.0`` → ``out``.
* Qwen-Image: the original layout IS diffusers' (the names pass unchanged).

A fused module's parts are equal row blocks in q, k, v order (the model makers' own fused weights). A module this
table does not know raises ``InvalidInput`` naming it: a guess would load as a silent no-op elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from core.errors import InvalidInput
from core.loras.kohya import _adapter_configs, _module_alpha, read_header


@dataclass(frozen=True)
class NativePlace:
    module: str  # the native module path (``double_blocks.0.img_attn.qkv``)
    part: int = 0  # the row block this diffusers module fills in a fused module (q = 0, k = 1, v = 2)
    parts: int = 1  # how many equal row blocks the native module fuses


_QKV = {"q": 0, "k": 1, "v": 2}
_FLUX2_DOUBLE = {"attn.to_out.0": "img_attn.proj", "attn.to_add_out": "txt_attn.proj", "ff.linear_in": "img_mlp.0",
                 "ff.linear_out": "img_mlp.2", "ff_context.linear_in": "txt_mlp.0",
                 "ff_context.linear_out": "txt_mlp.2"}
_FLUX2_SINGLE = {"attn.to_qkv_mlp_proj": "linear1", "attn.to_out": "linear2"}
_FLUX2_TOP = {"x_embedder": "img_in", "context_embedder": "txt_in",
              "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
              "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
              "time_guidance_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
              "time_guidance_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
              "proj_out": "final_layer.linear",
              "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
              "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
              "single_stream_modulation.linear": "single_stream_modulation.lin"}
_FLUX2_BLOCK = re.compile(r"^(?P<kind>transformer_blocks|single_transformer_blocks)\.(?P<n>\d+)\.(?P<rest>.+)$")
_FLUX2_QKV = re.compile(r"^attn\.(?:to_(?P<img>[qkv])|add_(?P<txt>[qkv])_proj)$")
_Z_BLOCK = re.compile(r"^(?P<block>(?:layers|noise_refiner|context_refiner)\.\d+)\.(?P<rest>.+)$")
_Z_BLOCK_SAME = ("feed_forward.w1", "feed_forward.w2", "feed_forward.w3", "adaLN_modulation.0")
_Z_TOP = {"all_x_embedder.2-1": "x_embedder", "all_final_layer.2-1.linear": "final_layer.linear",
          "all_final_layer.2-1.adaLN_modulation.1": "final_layer.adaLN_modulation.1",
          "cap_embedder.1": "cap_embedder.1", "t_embedder.mlp.0": "t_embedder.mlp.0",
          "t_embedder.mlp.2": "t_embedder.mlp.2"}
NATIVE_FAMILIES = ("flux2_klein", "z_image", "qwen_image")


def native_place(family: str, module: str) -> NativePlace:
    """The native module a diffusers module of ``family``'s transformer is (or is a row block of)."""
    place = {"flux2_klein": _flux2, "z_image": _z_image, "qwen_image": NativePlace}.get(family)
    if place is None:
        raise InvalidInput(f"no original module layout known for {family!r}")
    found = place(module)
    if found is None:
        raise InvalidInput(f"the {family} module {module!r} has no place in the original layout we know")
    return found


def _flux2(module: str) -> NativePlace | None:
    if module in _FLUX2_TOP:
        return NativePlace(_FLUX2_TOP[module])
    match = _FLUX2_BLOCK.match(module)
    if match is None:
        return None
    n, rest = match["n"], match["rest"]
    if match["kind"] == "single_transformer_blocks":
        return NativePlace(f"single_blocks.{n}.{_FLUX2_SINGLE[rest]}") if rest in _FLUX2_SINGLE else None
    if qkv := _FLUX2_QKV.match(rest):
        stream = "img" if qkv["img"] else "txt"
        return NativePlace(f"double_blocks.{n}.{stream}_attn.qkv", _QKV[qkv["img"] or qkv["txt"]], 3)
    return NativePlace(f"double_blocks.{n}.{_FLUX2_DOUBLE[rest]}") if rest in _FLUX2_DOUBLE else None


def _z_image(module: str) -> NativePlace | None:
    if module in _Z_TOP:
        return NativePlace(_Z_TOP[module])
    match = _Z_BLOCK.match(module)
    if match is None:
        return None
    block, rest = match["block"], match["rest"]
    if rest in ("attention.to_q", "attention.to_k", "attention.to_v"):
        return NativePlace(f"{block}.attention.qkv", _QKV[rest[-1]], 3)
    if rest == "attention.to_out.0":
        return NativePlace(f"{block}.attention.out")
    return NativePlace(module) if rest in _Z_BLOCK_SAME else None


@dataclass(frozen=True)
class NativeLora:
    down: np.ndarray  # (rank, in), float32
    up: np.ndarray  # (out, rank), float32, WITHOUT the alpha / rank scale
    alpha: float  # the scale is alpha / rank, as kohya's and ComfyUI's loaders apply it

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])


@dataclass(frozen=True)
class DiffusersLora:
    down: np.ndarray  # lora_A (rank, in)
    up: np.ndarray  # lora_B (out, rank)
    scale: float  # peft's alpha / rank for this module


_DIFFUSERS_KEY = re.compile(r"^transformer\.(?P<module>.+)\.(?P<part>lora_A|lora_B)\.weight$")


def diffusers_modules(data: bytes, family: str) -> dict[str, DiffusersLora]:
    """module → its LoRA, from a DiT family's diffusers file (alpha from diffusers' adapter metadata,
    ``alpha_pattern`` included). Keys that are not the transformer's lora_A / lora_B raise ``InvalidInput``."""
    from safetensors.numpy import load

    _, metadata = read_header(data)
    config = _adapter_configs(metadata).get("transformer", {})
    pairs: dict[str, dict[str, np.ndarray]] = {}
    foreign = []
    for key, value in load(data).items():
        match = _DIFFUSERS_KEY.match(key)
        if match is None:
            foreign.append(key)
            continue
        pairs.setdefault(match["module"], {})[match["part"]] = value.astype(np.float32)
    foreign += sorted(f"transformer.{m}" for m, parts in pairs.items() if set(parts) != {"lora_A", "lora_B"})
    if foreign:
        raise InvalidInput(f"{len(foreign)} key(s) are not a {family} transformer LoRA: "
                           + ", ".join(sorted(foreign)[:20]))
    out = {}
    for module, parts in sorted(pairs.items()):
        rank = int(parts["lora_A"].shape[0])
        out[module] = DiffusersLora(parts["lora_A"], parts["lora_B"], _module_alpha(config, module, rank) / rank)
    return out


def native_loras(family: str, modules: dict[str, DiffusersLora]) -> dict[str, NativeLora]:
    """The LoRA on the native modules. A fused module's LoRA stacks its parts' ``down`` matrices and puts
    their ``up`` matrices on the diagonal (each part's rows see only its own rank), so each row block moves
    exactly as its diffusers module did; parts the LoRA does not train stay zero."""
    groups: dict[str, dict[int, tuple[str, DiffusersLora]]] = {}
    sizes: dict[str, int] = {}
    for module, lora in modules.items():
        place = native_place(family, module)
        sizes[place.module] = place.parts
        groups.setdefault(place.module, {})[place.part] = (module, lora)
    return {native: _fuse(native, sizes[native], parts) for native, parts in sorted(groups.items())}


def _fuse(native: str, parts: int, found: dict[int, tuple[str, DiffusersLora]]) -> NativeLora:
    if parts == 1:
        lora = found[0][1]
        return NativeLora(lora.down, lora.up, lora.scale * lora.down.shape[0])
    rows = {lora.up.shape[0] for _, lora in found.values()}
    inputs = {lora.down.shape[1] for _, lora in found.values()}
    if len(rows) != 1 or len(inputs) != 1:
        raise InvalidInput(f"the modules fused into {native} ({', '.join(m for m, _ in found.values())}) differ in "
                           "shape; they cannot share one fused weight")
    size = rows.pop()
    scales = {lora.scale for _, lora in found.values()}
    common = scales.pop() if len(scales) == 1 else 1.0  # one shared scale stays in alpha, else each B carries its own
    ordered = [found[i][1] for i in sorted(found)]
    rank = sum(lora.down.shape[0] for lora in ordered)
    up = np.zeros((parts * size, rank), dtype=np.float32)
    column = 0
    for index in sorted(found):
        lora = found[index][1]
        width = lora.down.shape[0]
        up[index * size:(index + 1) * size, column:column + width] = lora.up * (lora.scale / common)
        column += width
    return NativeLora(np.concatenate([lora.down for lora in ordered]), up, common * rank)
