"""The model manager's jobs: ``install-model`` (a single file converted to a diffusers folder, or a DiT transformer
file checked and paired with a base model) and
``download-model`` (a hub download with progress, resumable). The row in ``core.models_registry`` follows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import constants as hub_constants
from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

from core.errors import InvalidInput, PermanentJobError, TransientError
from core.jobs.lifecycle import JobContext, get_job
from core.models_registry import hub, registry
from core.models_registry.files import TRANSFORMER_FAMILIES, folder_family
from core.models_registry.install import DownloadModelPayload, InstallModelPayload
from core.training.runs import resolve_base_model
from workers.ml.single_file import (
    TransformerInstall,
    check_transformer_file,
    convert_to_folder,
    transformer_config,
    write_transformer_install,
)


def install_model(ctx: JobContext[InstallModelPayload]) -> dict[str, Any]:
    payload = ctx.payload
    if payload.family in TRANSFORMER_FAMILIES:
        return _install_transformer(ctx)
    ctx.stage("convert")
    target = registry.owned_path(payload.name)
    try:
        convert_to_folder(Path(payload.file), payload.family, target, config=payload.config)
    except (InvalidInput, OSError, ValueError, KeyError, RuntimeError) as error:
        registry.fail_install(payload.name, str(error))
        raise PermanentJobError(f"{Path(payload.file).name}: {error}") from error
    model = registry.finish_install(payload.name, path=target, family=payload.family)
    ctx.progress(1.0, "installed")
    return {"name": model.name, "path": model.path, "size_bytes": model.size_bytes, "precision": model.precision}


def _install_transformer(ctx: JobContext[InstallModelPayload]) -> dict[str, Any]:
    """A DiT transformer file, used in place: its keys and shapes checked against the config (header only), its
    pairing resolved, and a hub id pairing that cannot be fetched (offline, not cached) refused now."""
    payload = ctx.payload
    file = Path(payload.file)
    ctx.stage("check")
    try:
        base = resolve_base_model(payload.base_model)
        if not Path(base).is_dir():
            _check_hub_reachable(base)
        config = transformer_config(payload.family, base, payload.config)
        stats = check_transformer_file(file, payload.family, config)
        install = TransformerInstall(family=payload.family, transformer=file, base_model=base, config=config)
        target = write_transformer_install(install, registry.owned_path(payload.name))
    except (InvalidInput, OSError, ValueError, KeyError, RuntimeError) as error:
        registry.fail_install(payload.name, str(error))
        raise PermanentJobError(f"{file.name}: {error}") from error
    ctx.log(f"{file.name}: {payload.family} transformer ({config / 'config.json'}); text encoder and VAE from {base}")
    model = registry.finish_install(payload.name, path=target, family=payload.family, stats=stats)
    ctx.progress(1.0, "installed")
    return {"name": model.name, "path": model.path, "size_bytes": model.size_bytes, "precision": model.precision,
            "base_model": base}


def _check_hub_reachable(repo_id: str) -> None:
    """A hub id pairing offline: usable only when huggingface_hub's cache already holds it."""
    if hub_constants.HF_HUB_OFFLINE and cached_snapshot(repo_id, "main") is None:
        raise InvalidInput(f"the text encoder and VAE would come from {repo_id}, which is not on this machine, and "
                           "this machine is offline (HF_HUB_OFFLINE): install that base model first or pair with an "
                           "installed one")


def download_model(ctx: JobContext[DownloadModelPayload]) -> dict[str, Any]:
    payload = ctx.payload
    ctx.stage("plan")
    try:
        cached = cached_snapshot(payload.repo_id, payload.revision)
        if cached is not None:
            ctx.log(f"huggingface_hub's cache already holds {payload.repo_id}: {cached}")
            return _finish(ctx, payload, cached)
        plan = hub.plan_download(payload.repo_id, payload.revision)
        ctx.log(f"{payload.repo_id}@{plan.commit[:12]}: {len(plan.files)} files, {plan.total_bytes:,} bytes")
        ctx.stage("download")

        def progress(done: int, total: int, name: str) -> None:
            ctx.progress(done / max(total, 1), f"{done / 2**20:,.1f} of {total / 2**20:,.1f} MiB · {name}")

        folder = hub.download(plan, registry.owned_path(payload.name), on_progress=progress)
        return _finish(ctx, payload, folder)
    except TransientError as error:
        if ctx.attempt >= get_job(ctx.job_id).max_attempts:  # the last attempt: the row must not stay installing
            registry.fail_install(payload.name, str(error))
        raise  # retried with backoff; the .part files make the retry resume
    except InvalidInput as error:
        registry.fail_install(payload.name, str(error))
        raise PermanentJobError(str(error)) from error


def _finish(ctx: JobContext[DownloadModelPayload], payload: DownloadModelPayload, folder: Path) -> dict[str, Any]:
    family = folder_family(folder)
    model = registry.finish_install(payload.name, path=folder, family=family)
    ctx.progress(1.0, "installed")
    return {"name": model.name, "path": model.path, "family": family, "size_bytes": model.size_bytes}


def cached_snapshot(repo_id: str, revision: str) -> Path | None:
    """A whole diffusers snapshot huggingface_hub's own cache already holds (no network), or None."""
    try:
        path = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return path if (path / "model_index.json").is_file() else None
