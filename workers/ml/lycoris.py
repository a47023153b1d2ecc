"""LyCORIS LoKr and LoHa modules as weight deltas, merged into a pipeline's weights for one job and taken out again
bit for bit.

The deltas are LyCORIS' own definitions (``lycoris/modules/lokr.py``, ``loha.py``; ComfyUI and A1111 apply the
same), for a module of weight shape ``(out, in, *k)``:

* LoKr: ``ΔW = scale · kron(w1, w2)`` with ``w1 = lokr_w1`` or ``lokr_w1_a @ lokr_w1_b``, ``w2 = lokr_w2``, or
  ``lokr_w2_a @ lokr_w2_b``, or the Tucker form ``einsum(t2, w2_a, w2_b)``; ``scale = alpha / rank`` with rank the
  factored dimension (``w2_b.shape[0]``, else ``w1_b.shape[0]``), and 1 when both factors are full matrices (LyCORIS
  then ignores alpha) or the file has no alpha.
* LoHa: ``ΔW = scale · (w1_a @ w1_b) ⊙ (w2_a @ w2_b)`` (or the Tucker forms with ``hada_t1``/``hada_t2``), ``scale =
  alpha / w1_b.shape[0]``.
* plain LoRA modules of such a file: ``ΔW = alpha / rank · up @ down``.

Why merge rather than peft's LoKr/LoHa layers: peft rebuilds each layer's factor shapes from its config (one
decompose factor, balanced splits, no ``full_matrix``), so files from other trainers need not fit, and its forward
computes the whole ΔW on every call anyway. A job's strength scales ΔW linearly; ``WeightPatches.restore`` copies
the saved originals back, so the cached pipeline is exactly the base model again after the job.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.loras.lycoris import LOHA_PARTS, LOKR_PARTS, split_key
from core.training.params import WEIGHTS_FILE

if TYPE_CHECKING:
    import torch

MERGE_MARKER = "studio_adapter"  # metadata key of a file generation merges: value "lycoris"
MERGED = "lycoris"


class ShapeError(ValueError):
    """The module's tensors do not make a delta of the target weight's shape (or miss a tensor)."""


def _alpha_scale(parts: Mapping[str, torch.Tensor], rank: int | None) -> float:
    alpha = parts.get("alpha")
    if rank is None or alpha is None or float(alpha) == 0:  # LyCORIS: alpha None/0 means alpha = rank
        return 1.0
    return float(alpha) / rank


def _need(parts: Mapping[str, torch.Tensor], *names: str) -> list[torch.Tensor]:
    missing = [name for name in names if name not in parts]
    if missing:
        raise ShapeError(f"missing {', '.join(missing)}")
    return [parts[name].float() for name in names]


def lokr_delta(parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """kron(w1, w2) · scale, as a 2-D (out, in·k·k) matrix."""
    import torch  # torch stays out of the import of the job modules that name this one

    if "lokr_w1" in parts:
        (w1,) = _need(parts, "lokr_w1")
    else:
        w1a, w1b = _need(parts, "lokr_w1_a", "lokr_w1_b")
        w1 = w1a @ w1b
    if "lokr_w2" in parts:
        (w2,) = _need(parts, "lokr_w2")
    elif "lokr_t2" in parts:
        t2, w2a, w2b = _need(parts, "lokr_t2", "lokr_w2_a", "lokr_w2_b")
        w2 = torch.einsum("i j ..., i p, j r -> p r ...", t2, w2a, w2b)
    else:
        w2a, w2b = _need(parts, "lokr_w2_a", "lokr_w2_b")
        w2 = w2a @ w2b.flatten(1)
    factored = parts.get("lokr_w2_b", parts.get("lokr_w1_b"))
    scale = _alpha_scale(parts, int(factored.shape[0]) if factored is not None else None)
    # kron of w1 with w2 flattened to (out_k, in_n·k·k) equals LyCORIS' kron of w1[..., None, None] with the 4-D w2.
    return torch.kron(w1.flatten(1), w2.flatten(1)) * scale


def loha_delta(parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(w1_a @ w1_b) ⊙ (w2_a @ w2_b) · scale, as a 2-D matrix (4-D for the Tucker form)."""
    import torch

    w1a, w1b, w2a, w2b = _need(parts, "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
    if "hada_t1" in parts or "hada_t2" in parts:
        t1, t2 = _need(parts, "hada_t1", "hada_t2")
        m1 = torch.einsum("i j ..., j r, i p -> p r ...", t1, w1b, w1a)
        m2 = torch.einsum("i j ..., j r, i p -> p r ...", t2, w2b, w2a)
    else:
        m1, m2 = w1a @ w1b.flatten(1), w2a @ w2b.flatten(1)
    return m1 * m2 * _alpha_scale(parts, int(w1b.shape[0]))


def lora_delta(parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
    down, up = _need(parts, "lora_down.weight", "lora_up.weight")
    return (up.flatten(1) @ down.flatten(1)) * _alpha_scale(parts, int(down.shape[0]))


def module_delta(parts: Mapping[str, torch.Tensor], shape: Sequence[int]) -> torch.Tensor:
    """The module's ΔW in fp32, shaped like its weight; ``ShapeError`` when the tensors do not make that shape."""
    if any(name in parts for name in LOKR_PARTS):
        delta = lokr_delta(parts)
    elif any(name in parts for name in LOHA_PARTS):
        delta = loha_delta(parts)
    else:
        delta = lora_delta(parts)
    expected = (int(shape[0]), math.prod(int(n) for n in shape[1:]))
    if (delta.shape[0], delta[0].numel()) != expected:
        raise ShapeError(f"makes a {tuple(delta.shape)} change for a {tuple(shape)} weight")
    return delta.reshape(tuple(shape))


def group_modules(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """module stem → its parts; and the keys whose part is none we apply."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in tensors.items():
        stem, part = split_key(key)
        if part in (*LOKR_PARTS, *LOHA_PARTS, "alpha", "lora_down.weight", "lora_up.weight"):
            modules.setdefault(stem, {})[part] = value
        else:
            unknown.append(key)
    return modules, unknown


def base_module(module: Any) -> Any:
    """The module whose weight the model computes with (peft wraps adapted ones around ``base_layer``)."""
    return getattr(module, "base_layer", module)


class WeightPatches:
    """Deltas merged into modules' weights; ``restore`` puts every touched weight back exactly."""

    def __init__(self) -> None:
        self._originals: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __bool__(self) -> bool:
        return bool(self._originals)

    def add(self, module: Any, delta: torch.Tensor, strength: float) -> None:
        import torch

        weight = base_module(module).weight
        if id(weight) not in self._originals:
            # Kept off the GPU: a LoKr over a whole DiT touches gigabytes of weights.
            self._originals[id(weight)] = (weight, weight.detach().to("cpu", copy=True))
        with torch.no_grad():
            # In fp32, then rounded once to the weight's dtype (as ComfyUI patches bf16/fp16 weights).
            weight.copy_(weight.float() + delta.to(weight.device) * float(strength))

    def restore(self) -> None:
        import torch

        with torch.no_grad():
            for weight, original in self._originals.values():
                weight.copy_(original)
        self._originals.clear()


def save_merge_file(tensors: Mapping[str, torch.Tensor], directory: Path, *, algorithm: str, **metadata: str) -> None:
    """Write an imported LyCORIS file as the one generation merges (``is_merge_file`` reads the marker back)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(dict(tensors), str(directory / WEIGHTS_FILE),
              metadata={MERGE_MARKER: MERGED, "studio_algorithm": algorithm, **metadata})


def is_merge_file(path: Path) -> bool:
    """Whether the importer marked this file for merging (reads the safetensors header only)."""
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return False
        (length,) = struct.unpack("<Q", head)
        if length > 100_000_000:  # no real header is this big: not a safetensors file
            return False
        try:
            header = json.loads(handle.read(length))
        except ValueError:
            return False
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return isinstance(metadata, dict) and metadata.get(MERGE_MARKER) == MERGED


def merge_file(path: Path, strength: float, patches: WeightPatches, resolve: Callable[[str], Any]) -> int:
    """Merge every module of a LyCORIS file saved by the importer at ``strength``; returns the modules merged.

    ``resolve`` maps a module stem of the file to the model's module (``KeyError`` when there is none)."""
    from safetensors.torch import load_file

    modules, unknown = group_modules(load_file(str(path)))
    if unknown:
        raise ShapeError(f"unknown keys in {path.name}: {', '.join(sorted(unknown)[:10])}")
    resolved = [(resolve(stem), parts) for stem, parts in modules.items()]  # all found before any weight moves
    for module, parts in resolved:
        weight = base_module(module).weight
        patches.add(module, module_delta(parts, weight.shape).to(weight.device), strength)
    return len(resolved)


def peft_scales(metadata: Mapping[str, str], component: str) -> Callable[[str], float] | None:
    """A peft LoKr/LoHa file's (the studio's own) scale per module path: alpha / r from the adapter config diffusers
    keeps in the metadata (``rank_pattern``/``alpha_pattern`` included); None when the file has no such config."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return None
    config = {key.partition(".")[2]: value for key, value in json.loads(raw).items()
              if str(key).startswith(component + ".")}
    if "r" not in config or config.get("peft_type") not in ("LOKR", "LOHA", None):
        return None
    rank, alpha = float(config["r"]), float(config.get("alpha", config["r"]))

    def pick(patterns: Mapping[str, float] | None, path: str, default: float) -> float:
        # peft's rule (tuners_utils.get_pattern_key): a pattern matches the module path's tail.
        for pattern, value in (patterns or {}).items():
            if re.match(rf"(.*\.)?({pattern})$", path):
                return float(value)
        return default

    return lambda path: pick(config.get("alpha_pattern"), path, alpha) / pick(config.get("rank_pattern"), path, rank)


def fold_scale(parts: Mapping[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """The module's tensors with ``scale`` multiplied into its first factor and no alpha (LyCORIS' scale is then 1):
    peft's alpha / r, which applies even where LyCORIS would ignore alpha (both LoKr factors full)."""
    first = next(name for name in ("lokr_w1", "lokr_w1_a", "hada_w1_a", "lora_up.weight") if name in parts)
    return {name: value.float() * scale if name == first else value for name, value in parts.items() if name != "alpha"}
