"""Checkpoint folders: the LoRA in diffusers format plus everything an exact resume needs."""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from core.training.params import STATE_FILE
from workers.ml.training.api import TrainerError

STATE_FORMAT = 1


def checkpoint_dir(work_dir: Path, step: int) -> Path:
    return work_dir / "checkpoints" / f"step-{step:06d}"


def rng_states(device: str) -> dict[str, Any]:
    """Every random generator a step could touch, as tensors and plain values (safe to load)."""
    # The legacy state is a tuple (numpy's stubs also allow the dict of legacy=False).
    kind, keys, position, has_gauss, gauss = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if device.startswith("cuda") else [],
    }
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(states["python"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def write_checkpoint(directory: Path, save_weights: Any, state: dict[str, Any]) -> Path:
    """Write both files into a temporary sibling, then rename: ``directory`` is complete or absent."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_weights(str(partial))
        torch.save({"format": STATE_FORMAT, **state}, partial / STATE_FILE)
        if directory.exists():
            shutil.rmtree(directory)
        partial.rename(directory)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return directory


def read_state(directory: Path) -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise TrainerError(f"cannot resume: {path} is missing")
    # weights_only: checkpoints travel through object storage, so never unpickle arbitrary objects.
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT:
        raise TrainerError(f"cannot resume: {path} has format {state.get('format')!r}, expected {STATE_FORMAT}")
    return state


def prune_checkpoints(work_dir: Path, keep: int) -> None:
    """Keep the ``keep`` most recent checkpoint folders in the scratch space (the caller keeps its own copies)."""
    folders = sorted(p for p in (work_dir / "checkpoints").glob("step-*") if p.is_dir())
    for folder in folders[:-keep] if keep > 0 else []:
        shutil.rmtree(folder, ignore_errors=True)
