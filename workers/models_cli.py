"""``python -m workers models list|install|remove|import-lora``: the model manager from the shell."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from core.errors import StudioError
from core.jobs import lifecycle as jobs
from core.models import JobStatus
from core.models_registry import install, registry

app = typer.Typer(help="Installed base models and LoRAs: list, install (folder, single file, hub id), remove.",
                  no_args_is_help=True)


def _fail(error: Exception) -> typer.Exit:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def _size(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


@app.command("list")
def list_models(page: Annotated[int, typer.Option(help="Page (50 a page).")] = 1) -> None:
    """Base models and LoRAs with family, format, precision, size, source and when installed."""
    models, loras, use = registry.list_models(page=page), registry.list_loras(page=page), registry.disk_use()
    typer.echo(f"base models: {use.models} ({_size(use.model_bytes)}) · LoRAs: {use.loras} ({_size(use.lora_bytes)})")
    for m in models.items:
        typer.echo(f"model  {m.name}  {m.family or '?'}  {m.format}  {m.precision or '?'}  {_size(m.size_bytes)}  "
                   f"{m.source_kind}:{m.source}  {m.status}  {m.installed_at or ''}"
                   + (f"  paired with {m.base_model}" if m.base_model else ""))
    for lora in loras.items:
        typer.echo(f"lora   {lora.id}  {lora.name}  {lora.family}  {lora.format}  {lora.precision}  "
                   f"{_size(lora.size_bytes)}  {lora.source}  {lora.installed_at}")


@app.command("install")
def install_model(
    source: Annotated[str, typer.Argument(help="A diffusers folder, a single .safetensors checkpoint, or a hub id.")],
    name: Annotated[str, typer.Option(help="Name to install it as; default: the folder, file or hub id.")] = "",
    config: Annotated[str, typer.Option(help="Single file: a folder of the family's config files (default: the "
                                             "bundled one).")] = "",
    base_model: Annotated[str, typer.Option(help="A DiT transformer file: the installed model, folder or hub id "
                                                 "its text encoder and VAE come from (default: the family's hub "
                                                 "id).")] = "",
    wait: Annotated[bool, typer.Option(help="Follow the install job with a progress bar until it ends.")] = True,
) -> None:
    """Install a base model; prints its name (and follows its job unless --no-wait)."""
    path = Path(source).expanduser()
    try:
        if path.is_dir():
            typer.echo(install.install_folder(path=str(path), name=name).name)
            return
        if path.suffix.lower() in (".safetensors", ".ckpt") or path.exists():
            model, job = install.submit_single_file(path=str(path), name=name, config=config, base_model=base_model)
        else:
            model, job = install.submit_hub(repo_id=source, name=name)
    except StudioError as error:
        raise _fail(error) from None
    typer.echo(f"{model.name}: job {job.id}")
    if wait:
        follow(job.id)


def follow(job_id: str, *, interval: float = 0.5) -> None:
    """A text progress bar on stderr until the job ends; exits 1 when it did not succeed."""
    while True:
        job = jobs.get_job(job_id)
        filled = int(job.progress * 30)
        typer.echo(f"\r[{'#' * filled}{'.' * (30 - filled)}] {job.progress:4.0%} {job.progress_message or job.status}"
                   .ljust(100), err=True, nl=False)
        if job.job_status.is_terminal:
            typer.echo("", err=True)
            if job.status != JobStatus.SUCCEEDED:
                raise _fail(RuntimeError(job.error or job.status))
            return
        time.sleep(interval)


@app.command("remove")
def remove_model(name: Annotated[str, typer.Argument(help="The installed model's name.")]) -> None:
    """Unregister a model (refused while a job uses it) and delete the files the studio made for it."""
    try:
        registry.remove_model(name=name)
    except StudioError as error:
        raise _fail(error) from None
    typer.echo(f"removed {name}")


@app.command("import-lora")
def import_lora(
    url: Annotated[str, typer.Argument(help="An http(s) URL of a .safetensors LoRA.")],
    base_model: Annotated[str, typer.Option(help="The base model it is for.")],
    family: Annotated[str, typer.Option(help="sd15 or sdxl.")] = "sd15",
    name: Annotated[str, typer.Option(help="Name; default: the file's name.")] = "",
    trigger_word: Annotated[str, typer.Option(help="The word that calls the LoRA's subject.")] = "",
) -> None:
    """Fetch a LoRA (upload limits apply) and queue its import; prints the job id."""
    try:
        job = install.import_lora_from_url(url, base_model=base_model, family=family, name=name,
                                           trigger_word=trigger_word)
    except StudioError as error:
        raise _fail(error) from None
    typer.echo(job.id)
