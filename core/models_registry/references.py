"""What a job's ``base_model`` may name, and where the loaders find it: one place for both.

A reference is an installed model's name (the model manager's), a folder on this machine (a diffusers
pipeline, or a transformer-only install's folder), a folder name under the studio's models directory (the tiny
demo models live there), or a Hugging Face hub id, which the GPU worker downloads on first use.
:func:`resolve` turns it into what ``from_pretrained`` (or the family's single-file loader) takes;
:func:`check` refuses, before any job row is written, a reference that can never load: a model that is still
installing or failed, one of another family, and a name that is neither installed, nor a folder, nor a hub id.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.config import get_settings
from core.errors import InvalidInput
from core.models_registry import registry
from core.models_registry.files import PIPELINE_FAMILIES
from core.models_registry.hub import REPO_ID
from core.training.families import FAMILY_LABELS, family_spec


def resolve(name: str) -> str:
    """An installed model's folder, an existing folder, a folder under the models directory, else the name
    unchanged (a hub id)."""
    installed = registry.resolve(name)  # the model manager's names (and installed hub ids) first
    if installed:
        return installed
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    local = get_settings().models_dir / name
    if "/" not in name.strip("/") and local.is_dir():
        return str(local)
    return name


def _folder_family(folder: Path) -> str | None:
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return None
    return PIPELINE_FAMILIES.get(str(index.get("_class_name", ""))) if isinstance(index, dict) else None


def check(name: str, family: str) -> str:
    """``name`` (stripped) when a job of ``family`` can load it; InvalidInput saying why not otherwise."""
    name = name.strip()
    label = family_spec(family).label
    installed = registry.find_model(name)
    if installed is not None:
        if installed.status != registry.READY:
            raise InvalidInput(f"base model {name!r} is {installed.status}"
                               + (f" ({installed.error})" if installed.error else "") + "; choose a ready model")
        if installed.family != family:
            raise InvalidInput(f"base model {name!r} is a {FAMILY_LABELS.get(installed.family, installed.family)} "
                               f"model; this needs a {label} one")
        return name
    folder = Path(resolve(name))
    if folder.is_dir():
        found = _folder_family(folder)
        if found is not None and found != family:
            raise InvalidInput(f"base model {name!r} is a {FAMILY_LABELS[found]} folder; this needs a {label} one")
        return name
    if name == family_spec(family).tiny_model:
        return name  # built on the worker host at start (workers/launcher.py), maybe not on this one
    if REPO_ID.fullmatch(name) and ".." not in name:
        return name  # a hub id: the GPU worker downloads it on first use
    if Path(name).expanduser().is_file():
        raise InvalidInput(f"base model {name!r} is a file: install it on the Models page first, then choose it "
                           "by name")
    raise InvalidInput(f"base model {name!r} is not installed, not a folder on this machine and not a hub id "
                       "('owner/name'); install it on the Models page or name a hub id")
