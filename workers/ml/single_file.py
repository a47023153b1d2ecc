"""Single-file checkpoints, offline: a whole SD 1.5 / SDXL one → a diffusers folder; a DiT family's transformer alone
(FLUX.2 [klein], Z-Image, Qwen-Image as ComfyUI ships them) → paired with a base model's other components.

diffusers' ``from_single_file`` converts the weights; ``config=`` points it at a local folder of the family's
config files (``workers/ml/model_configs/<family>/`` unless the caller names another folder of the same
family), so it never asks the hub for them. The folder is written in the checkpoint's own precision.

The bundled folders hold the published configs of ``stable-diffusion-v1-5/stable-diffusion-v1-5`` and
``stabilityai/stable-diffusion-xl-base-1.0`` (written out, no weights; tests/test_models_registry.py checks that
they build the published parameter counts) without the safety checker. Their CLIP tokenizers (``vocab.json``
1.6 MB + ``merges.txt``) are not shipped twice: they are written once, at first use, into
``<models_dir>/configs/<family>/`` from the CLIP BPE file the studio already bundles (core/datasets/data).

A transformer file stays where it is: the install checks its keys and shapes against the transformer config (meta
tensors from the header, nothing read) and writes a small folder holding ``studio-transformer.json`` (the file,
its family, the config folder and the base model the text encoder, VAE and scheduler come from, resolved at
install). The families' loaders (workers/ml/families/flow.py) load such a folder through diffusers'
``from_single_file`` (its own key converter, ``config=`` a local folder: no network) and the rest from the base.
The transformer config is the paired base's own ``transformer/config.json`` when the base is a folder here (a
fine-tune has its base's shapes), else the bundled ``model_configs/<family>/transformer/config.json``: the
published configs of ``black-forest-labs/FLUX.2-klein-4B``, ``Tongyi-MAI/Z-Image-Turbo`` and ``Qwen/Qwen-Image``
(values as published on the hub; tests/test_single_file_dit.py checks they build the published sizes).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import get_settings
from core.datasets.tokens import clip_vocab_and_merges
from core.errors import InvalidInput
from core.models_registry.files import COMFY_PREFIX, file_header, precision_of

CONFIG_ROOT = Path(__file__).parent / "model_configs"
PIPELINES = {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}
TRANSFORMERS = {"flux2_klein": "Flux2Transformer2DModel", "z_image": "ZImageTransformer2DModel",
                "qwen_image": "QwenImageTransformer2DModel"}
DESCRIPTOR = "studio-transformer.json"
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


# --- a DiT family's transformer alone -----------------------------------------------------------------------


@dataclass(frozen=True)
class TransformerInstall:
    """An installed transformer file and the base model whose other components it runs with."""

    family: str
    transformer: Path
    base_model: str  # resolved at install: a folder here, or a hub id (downloaded on first use)
    config: Path  # the folder holding the transformer's config.json

    def to_json(self) -> str:
        return json.dumps({"family": self.family, "transformer": str(self.transformer), "base_model": self.base_model,
                           "config": str(self.config)}, indent=2)


def transformer_install(model: str) -> TransformerInstall | None:
    """The install a model folder describes, or None for anything else (a hub id, a diffusers folder)."""
    descriptor = Path(model) / DESCRIPTOR
    if not descriptor.is_file():
        return None
    try:
        data = json.loads(descriptor.read_text())
        return TransformerInstall(family=str(data["family"]), transformer=Path(data["transformer"]),
                                  base_model=str(data["base_model"]), config=Path(data["config"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidInput(f"{descriptor}: unreadable ({error}); install the transformer file again") from error


def transformer_config(family: str, base_model: str, override: str = "") -> Path:
    """The folder of the transformer's ``config.json``: ``override`` (a config folder or a pipeline folder), the base
    model's own when it is a folder here, else the bundled one."""
    candidates = [Path(override), Path(override) / "transformer"] if override else []
    candidates += [Path(base_model) / "transformer", CONFIG_ROOT / family / "transformer"]
    for folder in candidates:
        if (folder / "config.json").is_file():
            return folder
    raise InvalidInput(f"no transformer config for {family} (looked in {', '.join(map(str, candidates))})")


def _strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    return {key.removeprefix(COMFY_PREFIX): value for key, value in state.items()}


def diffusers_transformer_state(state: dict[str, Any], family: str, config: Path) -> dict[str, Any]:
    """``state`` (original or diffusers names, ComfyUI's prefix or not) under diffusers' names, converted by
    diffusers' own single-file converter; InvalidInput naming the keys and shapes that do not fit the config.
    Works on meta tensors as well (the install checks a file from its header alone)."""
    import diffusers
    import torch
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

    model_class = getattr(diffusers, TRANSFORMERS[family])
    model_config = model_class.load_config(str(config))
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in model_class.from_config(model_config).state_dict().items()}
    state = _strip_prefix(state)
    if set(state) != set(expected):
        mapping: dict[str, Any] = SINGLE_FILE_LOADABLE_CLASSES[TRANSFORMERS[family]]  # type: ignore[assignment]
        convert = mapping["checkpoint_mapping_fn"]
        state = convert(checkpoint=dict(state), config=model_config)
    missing, unused = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} (config: {expected[k]})" for k in sorted(set(state) & set(expected))
              if tuple(state[k].shape) != expected[k]]
    if missing or unused or shapes:
        faults = [f"{len(missing)} missing (e.g. {', '.join(missing[:3])})" if missing else "",
                  f"{len(unused)} unused (e.g. {', '.join(unused[:3])})" if unused else "",
                  f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:2])})" if shapes else ""]
        raise InvalidInput(f"the file does not fit the {family} transformer config {config / 'config.json'}: "
                           + ", ".join(f for f in faults if f) + ". Another size of the family? Pair it with a base "
                           "model of its own size (its transformer config is used)")
    return state


def check_transformer_file(file: Path, family: str, config: Path) -> tuple[int, str]:
    """Refuse a file whose keys or shapes do not fit the config, reading its header only; (bytes, precision)."""
    import torch

    tensors, _ = file_header(file)
    names = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    meta = {key: torch.empty(info["shape"], dtype=names.get(info["dtype"], torch.float32), device="meta")
            for key, info in tensors.items() if isinstance(info, dict) and "shape" in info}
    diffusers_transformer_state(meta, family, config)
    dtypes = {info["dtype"] for info in tensors.values() if isinstance(info, dict) and "dtype" in info}
    return file.stat().st_size, precision_of(dtypes)


def load_transformer(install: TransformerInstall, *, dtype: Any, quantization: Any = None) -> Any:
    """The transformer through diffusers' ``from_single_file``, offline, with the install's config folder."""
    import diffusers
    from safetensors.torch import load_file

    if not install.transformer.is_file():
        raise InvalidInput(f"the transformer file {install.transformer} is gone; put it back or remove the model")
    state = diffusers_transformer_state(load_file(str(install.transformer)), install.family, install.config)
    options: dict[str, Any] = {"quantization_config": quantization} if quantization is not None else {}
    return getattr(diffusers, TRANSFORMERS[install.family]).from_single_file(
        state, config=str(install.config), local_files_only=True, torch_dtype=dtype, **options)


def write_transformer_install(install: TransformerInstall, target: Path) -> Path:
    """The install's folder at ``target`` (built aside, then moved in place)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with _built_aside(target) as build:
        (build / DESCRIPTOR).write_text(install.to_json())
    return target
