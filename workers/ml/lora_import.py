"""Community LoRA files → the studio's diffusers LoRA file, checked against the base model they are for.

diffusers' own loader does the conversion (``load_lora_weights`` reads kohya/A1111 incl. LoCon, diffusers and
PEFT keys); this module only brings ComfyUI's and PEFT's spellings to one it reads, refuses keys that name no
module of the model (naming them: diffusers would drop some with a warning), checks that every module of
the file became a LoRA layer, and keeps the file kohya-named (diffusers files as they are), which generation's
``load_lora_weights`` reads and the kohya export passes through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from core.loras.kohya import kohya_module_path, read_header
from core.loras.lycoris import algorithm, names
from core.training.params import WEIGHTS_FILE
from workers.ml import lycoris

ADAPTER = "studio_import"
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
_KOHYA_PREFIX = {"sd15": {"lora_unet": "unet", "lora_te": "text_encoder", "lora_te1": "text_encoder"},
                 "sdxl": {"lora_unet": "unet", "lora_te1": "text_encoder", "lora_te2": "text_encoder_2"}}
_KOHYA_PARTS = ("lora_down.weight", "lora_up.weight", "alpha", "lora_mid.weight")
_COMFY_TEXT = {"text_encoders.clip_l.transformer.": "text_encoder",
               "text_encoders.clip_g.transformer.": "text_encoder_2"}
_PEFT_PART = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight"}


@dataclass
class ImportReport:
    source_format: str
    modules: dict[str, int] = field(default_factory=dict)  # component → LoRA layers loaded
    keys: int = 0
    algorithm: str = "lora"  # lora (LoRA/LoCon), lokr or loha

    def as_dict(self) -> dict[str, object]:
        return {"source_format": self.source_format, "modules": self.modules, "keys": self.keys,
                "algorithm": self.algorithm}


def to_kohya_names(tensors: dict[str, Any], source_format: str, family: str) -> dict[str, Any]:
    """ComfyUI and PEFT spellings as kohya keys (diffusers' loader reads kohya and diffusers directly)."""
    if source_format in ("kohya", "diffusers"):
        return dict(tensors)
    renamed = {}
    for key, value in tensors.items():
        module, part = _split_part(key)
        renamed[f"{kohya_stem(module, source_format, family)}.{part}"] = value
    return renamed


def kohya_stem(module: str, source_format: str, family: str) -> str:
    """A ComfyUI or PEFT module name (the key without its part) as kohya names it."""
    if source_format == "peft":
        # A PEFT model of the UNet: base_model.model.<unet module path>.
        return "lora_unet_" + module.removeprefix("base_model.model.").replace(".", "_")
    if source_format == "lycoris":
        # The LyCORIS library wrapping a diffusers UNet: lycoris_<diffusers path with _>, a spelling kohya_targets has.
        return "lora_unet_" + module.removeprefix("lycoris_")
    if source_format != "comfyui":
        return module
    if module.startswith("diffusion_model."):
        # ComfyUI's generic format: the original (SGM) UNet path, which ComfyUI maps as lora_unet_<path>.
        return "lora_unet_" + module.removeprefix("diffusion_model.").replace(".", "_")
    start = next((p for p in _COMFY_TEXT if module.startswith(p)), None)
    if start is None:
        raise InvalidInput(f"unknown ComfyUI key {module!r}")
    te_prefix = {"text_encoder": "lora_te1" if family == "sdxl" else "lora_te", "text_encoder_2": "lora_te2"}
    return f"{te_prefix[_COMFY_TEXT[start]]}_" + module.removeprefix(start).replace(".", "_")


def _split_part(key: str) -> tuple[str, str]:
    for suffix, part in (*_PEFT_PART.items(), *((p, p) for p in _KOHYA_PARTS)):
        if key.endswith("." + suffix):
            return key[: -len(suffix) - 1], part
    raise InvalidInput(f"unsupported LoRA key {key!r} (DoRA, full-weight diffs and LyCORIS algorithms other than "
                       "LoKr/LoHa are not imported)")


def kohya_targets(pipe: Any, family: str) -> dict[str, tuple[str, str]]:
    """kohya module name → (component, module path), for every Linear/Conv2d of the model (both UNet spellings
    on SDXL)."""
    import torch

    names: dict[str, tuple[str, str]] = {}
    reverse = {component: prefix for prefix, component in _KOHYA_PREFIX[family].items()}
    for component in COMPONENTS:
        model = getattr(pipe, component, None)
        if model is None:
            continue
        model = getattr(model, "_orig_mod", model)  # a torch.compile'd UNet
        prefixes = [p for p, c in _KOHYA_PREFIX[family].items() if c == component] or [reverse[component]]
        for path, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
                continue
            spellings = {path, kohya_module_path(family, component, path)}
            if family == "sdxl" and component == "unet":
                spellings |= _sgm_sampler_spellings(path, model)
            for prefix in prefixes:
                for spelling in spellings:
                    names[f"{prefix}_{spelling.replace('.', '_')}"] = (component, path)
    return names


def _sgm_sampler_spellings(path: str, unet: Any) -> set[str]:
    """SGM paths of the down/upsamplers (kohya LoCon trains them): input_blocks.3.0.op, output_blocks.2.1.conv."""
    if match := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv", path):
        return {f"input_blocks.{3 * (int(match[1]) + 1)}.0.op"}
    if match := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv", path):
        block = unet.up_blocks[int(match[1])]
        slot = 2 if getattr(block, "attentions", None) else 1
        return {f"output_blocks.{3 * int(match[1]) + 2}.{slot}.conv"}
    return set()


def check_keys(tensors: dict[str, Any], targets: dict[str, tuple[str, str]], family: str) -> dict[str, int]:
    """component → modules in the file; raises naming every key whose module the model does not have."""
    foreign = []
    per_component: dict[str, int] = {}
    for key in tensors:
        module, part = _split_part(key)
        if part != "lora_down.weight":
            if part in ("lora_up.weight", "alpha") and f"{module}.lora_down.weight" not in tensors:
                foreign.append(key)  # an up weight or alpha without its down weight
            continue
        target = targets.get(module)
        if target is None:
            foreign.append(key)
        else:
            component = target[0]
            per_component[component] = per_component.get(component, 0) + 1
    if foreign:
        shown = ", ".join(sorted(foreign)[:20]) + (" …" if len(foreign) > 20 else "")
        raise InvalidInput(f"{len(foreign)} key(s) name no module of this {family} model, so the LoRA does not "
                           f"fit it: {shown}")
    return per_component


def convert(pipe: Any, data: bytes, *, source_format: str, family: str, directory: Path) -> ImportReport:
    """Load the file into ``pipe`` with diffusers' loader, verify it, save it in our format; leaves ``pipe``
    without adapters. Returns what was loaded."""
    from safetensors.torch import load

    _, metadata = read_header(data)
    raw = load(data)
    kind = algorithm(raw)
    if kind != "lora":
        return _convert_lycoris(pipe, raw, metadata, source_format=source_format, family=family, kind=kind,
                                directory=directory)
    tensors = to_kohya_names(raw, source_format, family)
    report = ImportReport(source_format=source_format, keys=len(tensors))
    expected = (check_keys(tensors, kohya_targets(pipe, family), family) if source_format != "diffusers"
                else _diffusers_modules(pipe, tensors))
    pipe.unload_lora_weights()
    try:
        try:
            pipe.load_lora_weights({k: v.float() for k, v in tensors.items()}, adapter_name=ADAPTER)
        except (ValueError, KeyError, RuntimeError) as error:
            raise InvalidInput(f"the LoRA does not load into this {family} model: {error}") from error
        report.modules = _loaded_layers(pipe)
        if report.modules != expected:
            raise InvalidInput(f"only part of the LoRA loaded (file: {expected}, loaded: {report.modules}); "
                               "it is not for this model")
        _save(tensors, metadata if source_format == "diffusers" else {}, source_format, directory)
    finally:
        pipe.unload_lora_weights()
    return report


_DIFFUSERS_DOWN = re.compile(r"^(?P<component>[^.]+)\.(?P<module>.+)\."
                             r"(lora\.down|lora_linear_layer\.down|lora_A)\.weight$")


def _diffusers_modules(pipe: Any, tensors: dict[str, Any]) -> dict[str, int]:
    """component → modules of a diffusers-format file; raises naming every key whose module the model lacks."""
    counts: dict[str, int] = {}
    foreign = []
    for key in tensors:
        match = _DIFFUSERS_DOWN.match(key)
        if match is None:
            continue
        component = getattr(pipe, match["component"], None) if match["component"] in COMPONENTS else None
        paths = {match["module"], match["module"].removeprefix("text_model.")}
        if component is None or not any(_has_module(component, path) for path in paths):
            foreign.append(key)
        else:
            counts[match["component"]] = counts.get(match["component"], 0) + 1
    if foreign:
        raise InvalidInput(f"{len(foreign)} key(s) name no module of this model, so the LoRA does not fit it: "
                           + ", ".join(sorted(foreign)[:20]))
    return counts


def _has_module(model: Any, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def _loaded_layers(pipe: Any) -> dict[str, int]:
    counts = {}
    for name in COMPONENTS:
        component = getattr(pipe, name, None)
        if component is not None:
            count = sum(1 for m in component.modules() if ADAPTER in (getattr(m, "lora_A", None) or {}))
            if count:
                counts[name] = count
    return counts


def _save(tensors: dict[str, Any], metadata: dict[str, str], source_format: str, directory: Path) -> None:
    """The checked file, kohya-named (or diffusers as it came), in fp32: generation's load_lora_weights reads it
    as it read it here. (Re-saving through peft's state dict lost part of a LoRA mixing conv and attention
    layers, so the keys diffusers was seen to load correctly are what is kept.)"""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, str(directory / WEIGHTS_FILE),
              metadata={**metadata, "studio_source_format": source_format})


# --------------------------------------------------------------------------------------- LoKr / LoHa

_SAVE_PREFIX = {"sd15": {"unet": "lora_unet", "text_encoder": "lora_te"},
                "sdxl": {"unet": "lora_unet", "text_encoder": "lora_te1", "text_encoder_2": "lora_te2"}}


def _convert_lycoris(pipe: Any, tensors: dict[str, Any], metadata: dict[str, str], *, source_format: str,
                     family: str, kind: str, directory: Path) -> ImportReport:
    """A LoKr/LoHa file: every module located in the model and its ΔW computed against the module's weight (so a
    wrong shape is refused here, not at generation); saved kohya-named with the LyCORIS tensors as they came (the
    kohya export passes it through; ComfyUI and Forge read it), marked for generation's merge path."""


    modules, unknown = lycoris.group_modules(tensors)
    targets = kohya_targets(pipe, family)
    refused = [f"{key} (not a LoKr/LoHa/LoRA tensor)" for key in unknown]
    out: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for stem, parts in sorted(modules.items()):
        located = _locate(pipe, stem, source_format, family, targets)
        if located is None:
            refused += [f"{stem}.{part}" for part in sorted(parts)]
            continue
        component, path = located
        scale = lycoris.peft_scales(metadata, component) if source_format == "diffusers" else None
        if scale is not None:  # the studio's own (peft) LoKr: alpha / r from its config, folded in
            parts = lycoris.fold_scale(parts, scale(path))
        weight = getattr(pipe, component).get_submodule(path).weight
        try:
            lycoris.module_delta(parts, weight.shape)
        except lycoris.ShapeError as error:
            refused.append(f"{stem} ({error})")
            continue
        name = f"{_SAVE_PREFIX[family][component]}_{kohya_module_path(family, component, path).replace('.', '_')}"
        out.update({f"{name}.{part}": value.float().contiguous() for part, value in parts.items()})
        counts[component] = counts.get(component, 0) + 1
    if refused:
        raise InvalidInput(f"{len(refused)} key(s) name no module of this {family} model (or do not fit its "
                           f"shape), so the {kind} LoRA does not fit it: {names(sorted(refused))}")
    lycoris.save_merge_file(out, directory, algorithm=kind, studio_source_format=source_format)
    return ImportReport(source_format=source_format, modules=counts, keys=len(tensors), algorithm=kind)


def _locate(pipe: Any, stem: str, source_format: str, family: str,
            targets: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """(component, module path) of a module stem in any of the SD formats, or None."""
    if source_format == "diffusers":
        component, _, path = stem.partition(".")
        model = getattr(pipe, component, None) if component in COMPONENTS else None
        for candidate in (path, path.removeprefix("text_model.")):
            if model is not None and _has_module(model, candidate):
                return component, candidate
        return None
    try:
        return targets.get(kohya_stem(stem, source_format, family))
    except InvalidInput:
        return None


def merge_resolver(pipe: Any, family: str) -> Any:
    """For generation: a module stem of an imported LoKr/LoHa file (kohya-named) → the pipeline's module."""
    targets = kohya_targets(pipe, family)

    def resolve(stem: str) -> Any:
        component, path = targets[stem]
        model = getattr(pipe, component)
        return getattr(model, "_orig_mod", model).get_submodule(path)

    return resolve
