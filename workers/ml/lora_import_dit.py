"""Community LoRAs for the DiT families (FLUX.2 klein, Z-Image, Qwen-Image) → the studio's diffusers LoRA file.

Formats read: diffusers / PEFT (``transformer.<module>.lora_A/B``, ``base_model.model.<module>…``), ComfyUI and
ai-toolkit (``diffusion_model.<module>…``, in diffusers' module names or, for FLUX.2 and Z-Image, the original
names with fused projections, which diffusers' own converters split), kohya / musubi-tuner (``lora_unet_<module
with _>.lora_down/up`` + ``.alpha``) and OneTrainer (``lora_transformer_<module with _>…``). The kohya-style names
are resolved against the transformer's own Linear modules (``_`` is ambiguous in a flattened path) and their alpha
folded into ``lora_B`` (the converted file carries no alpha; a diffusers file's alpha, from its adapter metadata,
is folded in the same way). Names in the model's original layout
(``core/loras/dit_names.py``: FLUX.2's ``double_blocks.N.img_attn.qkv``, Z-Image's ``attention.qkv``), as our own
ComfyUI and kohya exports and musubi-tuner write them, are resolved through that table too: a fused module's
``up`` is cut into its q/k/v row blocks (each with the shared ``down``), and rank columns a block does not use
(all zero, as a block-diagonal export leaves them) are dropped, so our exports come back at their own rank.
Keys naming no module of the transformer, or with the wrong shape, are refused by name; the file must then
load whole into the transformer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from core.loras.dit_names import NativePlace, native_place
from core.loras.kohya import _adapter_configs, _module_alpha, read_header
from core.loras.lycoris import algorithm
from core.training.params import WEIGHTS_FILE
from workers.ml import lycoris

ADAPTER = "studio_import"
PIPELINES = {"flux2_klein": "Flux2KleinPipeline", "z_image": "ZImagePipeline", "qwen_image": "QwenImagePipeline"}
_FLAT_PREFIXES = ("lora_unet_", "lora_transformer_")
_FLAT_PARTS = {"lora_down.weight": "lora_A.weight", "lora_up.weight": "lora_B.weight"}
_NATIVE_PARTS = {**_FLAT_PARTS, "lora_A.weight": "lora_A.weight", "lora_B.weight": "lora_B.weight"}


def _linears(transformer: Any) -> dict[str, tuple[int, ...]]:
    import torch

    # A module that already carries adapters is peft's wrapper around ``<path>.base_layer`` (its own
    # lora_A/lora_B Linears are not modules of the model).
    return {path.removesuffix(".base_layer"): tuple(module.weight.shape)
            for path, module in transformer.named_modules()
            if isinstance(module, torch.nn.Linear) and ".lora_A." not in path and ".lora_B." not in path}


def _names(keys: list[str], limit: int = 20) -> str:
    return ", ".join(sorted(keys)[:limit]) + (f" … and {len(keys) - limit} more" if len(keys) > limit else "")


def _native_table(linears: dict[str, tuple[int, ...]], family: str) -> dict[str, list[tuple[str, NativePlace]]]:
    """native module path → the diffusers modules it holds (with their row block), for this transformer."""
    table: dict[str, list[tuple[str, NativePlace]]] = {}
    for path in linears:
        try:
            place = native_place(family, path)
        except InvalidInput:
            continue  # a Linear no LoRA format names natively (e.g. an embedder the table leaves out)
        table.setdefault(place.module, []).append((path, place))
    return table


def _from_flat(tensors: dict[str, Any], linears: dict[str, tuple[int, ...]], family: str,
               ) -> tuple[dict[str, Any], list[str]]:
    """kohya / OneTrainer names and ``diffusion_model.<native module>`` keys → diffusers keys (alpha folded into
    B, fused modules split); returns (converted, foreign keys)."""
    flat = {path.replace(".", "_"): path for path in linears}
    natives = _native_table(linears, family)
    flat_natives = {native.replace(".", "_"): native for native in natives}
    groups: dict[str, dict[str, Any]] = {}
    foreign = []
    for key, value in tensors.items():
        if key.startswith("diffusion_model."):
            stem, _, part = key.removeprefix("diffusion_model.").rpartition(".lora_")
            part = f"lora_{part}"
            if key.endswith(".alpha"):
                stem, part = key.removeprefix("diffusion_model.").removesuffix(".alpha"), "alpha"
        else:
            stem, _, part = key.partition(".")
            stem = flat.get(_flat_stem(stem)) or flat_natives.get(_flat_stem(stem), "")
        if not stem or part not in (*_NATIVE_PARTS, "alpha"):
            foreign.append(key)
            continue
        groups.setdefault(stem, {})[part] = value
    converted: dict[str, Any] = {}
    for stem, parts in groups.items():
        down = parts.get("lora_down.weight", parts.get("lora_A.weight"))
        up = parts.get("lora_up.weight", parts.get("lora_B.weight"))
        if down is None or up is None:
            foreign.extend(f"{stem}.{part}" for part in parts)
            continue
        alpha = parts.get("alpha")
        up = up.float() * (float(alpha) / up.shape[1] if alpha is not None else 1.0)
        if stem in linears:
            converted[f"transformer.{stem}.lora_A.weight"], converted[f"transformer.{stem}.lora_B.weight"] = \
                down.float(), up
            continue
        converted.update(_unfuse(natives[stem], down.float(), up))
    return converted, foreign


def _flat_stem(stem: str) -> str:
    return stem.removeprefix("lora_unet_").removeprefix("lora_transformer_")


def _unfuse(modules: list[tuple[str, NativePlace]], down: Any, up: Any) -> dict[str, Any]:
    """A native module's LoRA → its diffusers modules' (each row block of ``up`` with the rank columns it uses)."""
    out = {}
    parts = modules[0][1].parts
    size = up.shape[0] // parts
    for path, place in modules:
        block = up[place.part * size:(place.part + 1) * size]
        used = block.abs().sum(dim=0) > 0
        if parts > 1 and not bool(used.any()):
            continue  # a q/k/v part the LoRA does not train
        if parts > 1:
            block, part_down = block[:, used], down[used]
        else:
            part_down = down
        out[f"transformer.{path}.lora_A.weight"], out[f"transformer.{path}.lora_B.weight"] = part_down, block
    return out


def to_diffusers(transformer: Any, tensors: dict[str, Any], family: str) -> dict[str, Any]:
    """The file's LoRA as diffusers keys (``transformer.<module>.lora_A/B.weight``), checked against the model."""
    import diffusers

    if family not in PIPELINES:
        raise InvalidInput(f"not a DiT family: {family!r}")
    linears = _linears(transformer)
    natives = {f"diffusion_model.{native}." for native in _native_table(linears, family) if native not in linears}
    flat = {k: v for k, v in tensors.items() if k.startswith(_FLAT_PREFIXES) or k.startswith(tuple(natives))}
    rest = {("transformer." + k.removeprefix("base_model.model.")) if k.startswith("base_model.model.") else k: v
            for k, v in tensors.items() if k not in flat}
    converted, foreign = _from_flat(flat, linears, family)
    if rest:
        try:
            loaded = getattr(diffusers, PIPELINES[family]).lora_state_dict(rest)
        except (ValueError, KeyError, RuntimeError) as error:
            raise InvalidInput(f"the LoRA's keys do not convert for {family}: {error}") from error
        converted.update({k: v.float() for k, v in (loaded[0] if isinstance(loaded, tuple) else loaded).items()})
    for key, value in converted.items():
        module, _, part = key.removeprefix("transformer.").rpartition(".lora_")
        shape = linears.get(module)
        expected = ((value.shape[0], shape[1]) if part == "A.weight" else (shape[0], value.shape[1])) if shape else None
        if not key.startswith("transformer.") or shape is None or tuple(value.shape) != expected:
            foreign.append(key)
    if foreign:
        raise InvalidInput(f"{len(foreign)} key(s) name no module of this {family} transformer (or have another "
                           f"shape), so the LoRA does not fit it: {_names(foreign)}")
    if not converted:
        raise InvalidInput(f"no LoRA weights for a {family} transformer in the file")
    return converted


def _with_alpha_folded(tensors: dict[str, Any], data: bytes) -> dict[str, Any]:
    """A diffusers file keeps alpha only in its adapter metadata (ours: alpha ≠ rank); the converted file has no
    metadata, so each ``transformer.…lora_B`` takes its module's alpha / rank here."""
    config = _adapter_configs(read_header(data)[1]).get("transformer")
    if not config:
        return tensors
    out = dict(tensors)
    for key, value in tensors.items():
        if key.startswith("transformer.") and key.endswith(".lora_B.weight"):
            module, rank = key.removeprefix("transformer.").removesuffix(".lora_B.weight"), int(value.shape[1])
            out[key] = value.float() * (_module_alpha(config, module, rank) / rank)
    return out


def convert(transformer: Any, data: bytes, *, family: str, directory: Path) -> dict[str, object]:
    """Convert, load into ``transformer`` (every module must take its layer), save ``directory/WEIGHTS_FILE``;
    leaves the transformer without the adapter. Returns the report."""
    from safetensors.torch import load, save_file

    tensors = load(data)
    kind = algorithm(tensors)
    if kind != "lora":
        return _convert_lycoris(transformer, tensors, read_header(data)[1], family=family, kind=kind,
                                directory=directory)
    state = to_diffusers(transformer, _with_alpha_folded(tensors, data), family)
    modules = {key.rsplit(".lora_", 1)[0] for key in state}
    transformer.load_lora_adapter(state, prefix="transformer", adapter_name=ADAPTER)
    try:
        loaded = sum(1 for m in transformer.modules() if ADAPTER in (getattr(m, "lora_A", None) or {}))
        if loaded != len(modules):
            raise InvalidInput(f"only {loaded} of the file's {len(modules)} LoRA modules loaded into the {family} "
                               "transformer")
    finally:
        transformer.delete_adapters(ADAPTER)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / WEIGHTS_FILE),
              metadata={"studio_family": family})
    return {"modules": {"transformer": len(modules)}, "keys": len(state), "algorithm": "lora"}


# --------------------------------------------------------------------------------------- LoKr / LoHa

_DOTTED_PREFIXES = ("transformer.", "diffusion_model.", "base_model.model.")
_LYCORIS_FLAT = ("lora_unet_", "lora_transformer_", "lycoris_")


def _convert_lycoris(transformer: Any, tensors: dict[str, Any], metadata: dict[str, str], *, family: str, kind: str,
                     directory: Path) -> dict[str, object]:
    """A LoKr/LoHa file (also the studio's own peft LoKr, whose alpha / r is folded in): every module located among
    the transformer's Linear modules by its dotted (diffusers, ComfyUI/ai-toolkit, PEFT) or flattened (kohya/musubi,
    OneTrainer, LyCORIS) name and its ΔW computed against the weight; saved as ``transformer.<module>.<tensor>``
    (+ ``.alpha``), marked for generation's merge path. Original (BFL) module names are not mapped for LoKr/LoHa:
    their fused projections are refused by name."""


    if family not in PIPELINES:
        raise InvalidInput(f"not a DiT family: {family!r}")
    linears = _linears(transformer)
    flat = {path.replace(".", "_"): path for path in linears}
    scale = lycoris.peft_scales(metadata, "transformer")
    modules, unknown = lycoris.group_modules(tensors)
    refused = [f"{key} (not a LoKr/LoHa/LoRA tensor)" for key in unknown]
    out: dict[str, Any] = {}
    for stem, parts in sorted(modules.items()):
        dotted = next((stem.removeprefix(p) for p in _DOTTED_PREFIXES if stem.startswith(p)), None)
        flattened = next((stem.removeprefix(p) for p in _LYCORIS_FLAT if stem.startswith(p)), None)
        path = dotted if dotted in linears else flat.get(flattened or "")
        if path is None:
            refused += [f"{stem}.{part}" for part in sorted(parts)]
            continue
        if scale is not None:
            parts = lycoris.fold_scale(parts, scale(path))
        try:
            lycoris.module_delta(parts, linears[path])
        except lycoris.ShapeError as error:
            refused.append(f"{stem} ({error})")
            continue
        out.update({f"transformer.{path}.{part}": value.float().contiguous() for part, value in parts.items()})
    if refused:
        raise InvalidInput(f"{len(refused)} key(s) name no module of this {family} transformer (or do not fit its "
                           f"shape), so the {kind} LoRA does not fit it: {_names(refused)}")
    lycoris.save_merge_file(out, directory, algorithm=kind, studio_family=family)
    return {"modules": {"transformer": len(modules)}, "keys": len(tensors), "algorithm": kind}


def merge_resolver(pipe: Any) -> Any:
    """For generation: a module stem of an imported LoKr/LoHa file (``transformer.<path>``) → the module."""
    transformer = getattr(pipe.transformer, "_orig_mod", pipe.transformer)
    return lambda stem: transformer.get_submodule(stem.removeprefix("transformer."))
