"""Installing base models: a local diffusers folder (at once), a single ``.safetensors`` checkpoint or a hub id
(each a job: ``install-model`` converts on the GPU queue, ``download-model`` fetches on the CPU queue).

The submit functions check what they can without torch or network (the file's header and family, the name,
the hub id) and write nothing when they refuse; the job's row starts ``installing`` and ends ``ready`` or
``failed`` with the error. Also a LoRA fetched from a URL with the upload limits, then imported like an upload.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
from pydantic import Field

from core.errors import InvalidInput, StudioError
from core.jobs.kinds import JobSpec, Payload, Queue, register
from core.jobs.lifecycle import create_job
from core.loras.imports import MAX_IMPORT_BYTES, submit_import
from core.models import InstalledModel, Job
from core.models_registry import references, registry
from core.models_registry.files import (
    SINGLE_FILE_FAMILIES,
    TRANSFORMER_FAMILIES,
    detect_single_file,
    file_header,
    single_file_format,
)
from core.models_registry.hub import check_repo_id
from core.training.families import family_spec

INSTALL_KIND = "install-model"
DOWNLOAD_KIND = "download-model"


class InstallModelPayload(Payload):
    """Convert a single-file SD checkpoint into a diffusers folder the studio owns, or check a DiT transformer-only
    file against its config and pair it with a base model's other components (the file stays where it is)."""

    name: str = Field(min_length=1, max_length=200)
    file: str = Field(min_length=1, max_length=1000)
    family: str = Field(max_length=16)
    # A local folder of the same family whose config files to use (no weights needed); "" = the bundled one
    # (for a transformer file: the paired base model's own transformer config when it is a local folder).
    config: str = Field(default="", max_length=1000)
    # A transformer file's pairing: the installed model, folder or hub id its text encoder and VAE come from.
    base_model: str = Field(default="", max_length=1000)


class DownloadModelPayload(Payload):
    """Fetch a diffusers pipeline from the hub (resumable) and install it."""

    name: str = Field(min_length=1, max_length=200)
    repo_id: str = Field(min_length=3, max_length=200)
    revision: str = Field(default="main", min_length=1, max_length=100)


def install_folder(*, path: str, name: str = "") -> InstalledModel:
    return registry.register_folder(path=path, name=name)


def submit_single_file(*, path: str, name: str = "", config: str = "",
                       base_model: str = "") -> tuple[InstalledModel, Job]:
    """A ``.safetensors`` file: a whole SD checkpoint in the original layout (how Civitai ships them), or a DiT
    family's transformer alone (ComfyUI's "diffusion_models" files), family from its keys. A transformer pairs
    with ``base_model`` (installed, a folder or a hub id of its family; default: the family's hub id)."""
    file = Path(path).expanduser().resolve()
    if file.suffix.lower() != ".safetensors":
        raise InvalidInput(f"{file.name}: only .safetensors checkpoints are installed (a .ckpt is a pickle, which "
                           "can run code when loaded)")
    if not file.is_file():
        raise InvalidInput(f"{path}: no such file")
    tensors, _ = file_header(file)
    family = detect_single_file(tensors)
    fmt = single_file_format(family)
    assert family in SINGLE_FILE_FAMILIES + TRANSFORMER_FAMILIES
    base = ""
    if fmt == "transformer":
        base = _pairing(base_model.strip() or family_spec(family).default_base_model, family)
    elif base_model.strip():
        raise InvalidInput(f"{file.name} is a whole {family} checkpoint: it pairs with no base model")
    payload = InstallModelPayload(name=registry.check_name(name or file.stem), file=str(file), family=family,
                                  config=config, base_model=base)
    return _start(INSTALL_KIND, payload, source_kind="single_file", source=str(file), family=family, fmt=fmt,
                  base_model=base or None)


def _pairing(base: str, family: str) -> str:
    """The base model a transformer file takes its text encoder and VAE from: a complete model of its family."""
    base = references.check(base, family)
    installed = registry.find_model(base)
    if installed is not None and installed.format == "transformer":
        raise InvalidInput(f"{base!r} is itself a transformer file; pair with a complete {family} model")
    return base


def submit_hub(*, repo_id: str, name: str = "", revision: str = "main") -> tuple[InstalledModel, Job]:
    """Queue a hub download; its size, limit and family are checked by the job's first call to the hub."""
    repo_id = check_repo_id(repo_id)
    payload = DownloadModelPayload(name=registry.check_name(name or repo_id), repo_id=repo_id, revision=revision)
    return _start(DOWNLOAD_KIND, payload, source_kind="hub", source=repo_id, family="", fmt="diffusers")


def _start(kind: str, payload: InstallModelPayload | DownloadModelPayload, *, source_kind: str, source: str,
           family: str, fmt: str, base_model: str | None = None) -> tuple[InstalledModel, Job]:
    model = registry.begin_install(name=payload.name, family=family, source_kind=source_kind, source=source,
                                   fmt=fmt, base_model=base_model)
    try:
        job = create_job(kind, payload.model_dump())
    except StudioError:
        registry.remove_model(name=model.name)
        raise
    registry.attach_job(model.name, job.id)
    return registry.get_model(model.name), job


# --- LoRA from a URL ------------------------------------------------------------------------------------


def fetch_lora(url: str, *, max_bytes: int = MAX_IMPORT_BYTES) -> tuple[bytes, str]:
    """(bytes, file name) of a LoRA at an http(s) URL, refused past ``max_bytes`` (announced or streamed)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidInput(f"{url!r}: only http(s) URLs are fetched")
    name = unquote(Path(parsed.path).name) or "download.safetensors"
    try:
        with httpx.Client(timeout=httpx.Timeout(30.0, read=120.0), follow_redirects=True) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                raise InvalidInput(f"{url}: the server answered {response.status_code}")
            announced = int(response.headers.get("content-length") or 0)
            if announced > max_bytes:
                raise InvalidInput(f"{name} is {announced:,} bytes; the limit is {max_bytes:,}")
            disposition = response.headers.get("content-disposition", "")
            if "filename=" in disposition:
                name = disposition.split("filename=", 1)[1].strip('"; ') or name
            chunks, size = [], 0
            for chunk in response.iter_bytes(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    raise InvalidInput(f"{name} is over the limit of {max_bytes:,} bytes")
                chunks.append(chunk)
    except httpx.TransportError as error:
        raise InvalidInput(f"cannot fetch {url} ({type(error).__name__}): offline or unreachable") from error
    return b"".join(chunks), Path(name).name


def import_lora_from_url(url: str, *, base_model: str, family: str = "sd15", name: str = "",
                         trigger_word: str = "", character_id: int | None = None) -> Job:
    """Fetch, then check and queue like an upload (``.safetensors`` only, size, header, key layout)."""
    data, file_name = fetch_lora(url)
    return submit_import(data, file_name=file_name, name=name, family=family, base_model=base_model,
                         trigger_word=trigger_word, character_id=character_id)


register(JobSpec(
    INSTALL_KIND, Queue.GPU, InstallModelPayload,
    "Installs a single-file .safetensors checkpoint as a diffusers folder (family config bundled, offline), or "
    "checks a DiT transformer-only file against its config and pairs it with a base model.",
    max_attempts=1,
))
register(JobSpec(
    DOWNLOAD_KIND, Queue.CPU, DownloadModelPayload,
    "Downloads a diffusers model from the hub (resumable, size-limited) and installs it.",
    max_attempts=5,
))
