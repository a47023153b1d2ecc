"""A single-file checkpoint (original SD 1.5 / SDXL layout) → a diffusers folder, offline.

diffusers' ``from_single_file`` converts the weights; ``config=`` points it at a local folder of the family's
config files (``workers/ml/model_configs/<family>/`` unless the caller names another folder of the same
family), so it never asks the hub for them. The folder is written in the checkpoint's own precision.

The bundled folders hold the published configs of ``stable-diffusion-v1-5/stable-diffusion-v1-5`` and
``stabilityai/stable-diffusion-xl-base-1.0`` (written out, no weights; tests/test_models_registry.py checks that
they build the published parameter counts) without the safety checker. Their CLIP tokenizers (``vocab.json``
1.6 MB + ``merges.txt``) are not shipped twice: they are written once, at first use, into
``<models_dir>/configs/<family>/`` from the CLIP BPE file the studio already bundles (core/datasets/data).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.config import get_settings
from core.datasets.tokens import clip_vocab_and_merges
from core.errors import InvalidInput
from core.models_registry.files import file_header, precision_of

CONFIG_ROOT = Path(__file__).parent / "model_configs"
PIPELINES = {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}
_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


def config_folder(family: str, override: str = "") -> Path:
    """The folder of config files ``from_single_file`` reads: ``override``, or the bundled one with tokenizers."""
    folder = Path(override) if override else CONFIG_ROOT / family
    if not (folder / "model_index.json").is_file():
        raise InvalidInput(f"no config folder for {family} at {folder} (model_index.json missing)")
    return folder if override else with_tokenizers(folder, get_settings().models_dir / "configs" / family)


def with_tokenizers(bundled: Path, target: Path) -> Path:
    """A copy of ``bundled`` whose ``tokenizer*/`` folders hold the real CLIP vocabulary (made once)."""
    if (target / "model_index.json").is_file():
        return target
    from transformers import CLIPTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with _built_aside(target) as build:
        shutil.copytree(bundled, build, dirs_exist_ok=True)
        vocab, merges = clip_vocab_and_merges()
        for folder in sorted(build.glob("tokenizer*")):
            settings = json.loads((folder / "tokenizer_config.json").read_text())
            tokenizer = CLIPTokenizer(vocab=vocab, merges=merges,  # type: ignore[arg-type]
                                      pad_token=settings["pad_token"], model_max_length=settings["model_max_length"])
            tokenizer.save_pretrained(str(folder))
    return target


def load_single_file(file: Path, family: str, *, config: str = "") -> Any:
    """The pipeline of a single-file checkpoint, loaded offline with the family's config files."""
    import diffusers
    import torch

    if family not in PIPELINES:
        raise InvalidInput(f"single-file install covers {', '.join(PIPELINES)}, not {family!r}")
    tensors, _ = file_header(file)
    precision = precision_of({t["dtype"] for t in tensors.values() if isinstance(t, dict) and "dtype" in t})
    dtype = getattr(torch, _DTYPES.get(precision, "float32"))
    pipeline_class = getattr(diffusers, PIPELINES[family])
    return pipeline_class.from_single_file(str(file), config=str(config_folder(family, config)),
                                           local_files_only=True, torch_dtype=dtype)


def convert_to_folder(file: Path, family: str, target: Path, *, config: str = "") -> Path:
    """Write the checkpoint as a diffusers folder at ``target`` (built aside, then moved in place)."""
    pipeline = load_single_file(file, family, config=config)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _built_aside(target) as build:
        pipeline.save_pretrained(build, safe_serialization=True)
    return target


@contextmanager
def _built_aside(target: Path) -> Iterator[Path]:
    """A folder to build ``target`` in, beside it; moved in place when the block ends well, removed otherwise, so a
    reader never sees half a folder."""
    build = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield build
        if target.exists():
            shutil.rmtree(target)
        build.rename(target)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
