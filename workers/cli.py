"""The worker CLI: run workers, enqueue jobs, and inspect, cancel or retry them.

    python -m workers run                      # all queues, supervised (what the app's run script uses)
    python -m workers enqueue sleep --payload '{"seconds": 5}'
    python -m workers jobs --status failed
    python -m workers show 3f2a --follow       # a unique prefix of the id is enough
    python -m workers train 1 --config "Tiny (offline demo)" --set rank=4
    python -m workers generate --template tiny-lora --prompt "at the beach" --lora 3:0.8 --count 4
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from cryptography.fernet import Fernet
from sqlalchemy.exc import OperationalError, ProgrammingError

from core.automation.demo import run_demo
from core.automation.scheduler import scheduler_tick
from core.catalogue import all_specs
from core.characters import characters
from core.characters.characters import resolve_character
from core.characters.scope import character_scope, scoped_character_id
from core.config import get_settings
from core.db import upgrade_schema
from core.errors import InvalidInput, StudioError
from core.generation.requests import submit_generation
from core.infra import strict_json
from core.infra.auth import hash_password
from core.infra.logging_setup import configure_logging
from core.infra.storage import prepare_storage, protect_data_dir
from core.jobs import lifecycle as jobs
from core.jobs import logs as joblogs
from core.jobs.serialize import job_to_dict
from core.loras import files as lora_files
from core.loras.imports import submit_import
from core.models import utcnow
from core.publishing.planning import submit_plan
from core.publishing.posts import posts_between
from core.publishing.social_accounts import reencrypt_tokens
from core.training import configs as lora_configs
from core.training import runs as training
from workers.launcher import up as launch
from workers.ml.tiny_models import ensure_tiny_models
from workers.models_cli import app as models_app
from workers.process import Supervisor, default_groups, run_worker

app = typer.Typer(
    help="InfluencerAI Studio workers: run the background workers and manage jobs from the shell.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models_app, name="models")


def _setup_logging(verbose: bool = False) -> None:
    # Text or JSON lines per STUDIO_LOG_FORMAT, job context on each line, secrets masked (core/infra/logging_setup.py).

    configure_logging("DEBUG" if verbose else None, stream=sys.stderr)


def _fail(error: Exception) -> typer.Exit:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def _missing_schema(error: Exception) -> bool:
    """True for "the studio's tables do not exist" on SQLite or PostgreSQL (SQLSTATE 42P01)."""
    original = getattr(error, "orig", None)
    return "no such table" in str(original) or getattr(original, "sqlstate", None) == "42P01"


def run_cli() -> None:
    """``python -m workers``: the commands, with a plain answer for a database nobody migrated yet."""

    try:
        app(prog_name="python -m workers")
    except (OperationalError, ProgrammingError) as error:
        if not _missing_schema(error):
            raise
        typer.secho("error: the database has no studio tables yet: run `python -m workers migrate` "
                    "(./scripts/run and `workers run` do it when they start)", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


def _short(job_id: str) -> str:
    return job_id[:8]


_character_ref: list[str | None] = [None]  # the --character the command line gave (one process, one command)


@contextmanager
def _for_character(*, listing: bool = False) -> Iterator[None]:
    """Run a command for the --character given (id or slug); left out, the only character (exit 2 when there are
    several). ``listing``: left out, every character's rows."""
    ref = _character_ref[0]
    if listing and ref is None:
        yield
        return
    try:
        character_id = resolve_character(ref).id
    except StudioError as error:
        raise _fail(error) from None
    with character_scope(character_id):
        yield


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
         character: Annotated[str | None, typer.Option(
             envvar="STUDIO_CHARACTER", help="The character (id or slug) the command works for; default: the "
                                              "only one. See `characters`.")] = None) -> None:
    _character_ref[0] = character
    _setup_logging(verbose)
    for noisy in ("dramatiq", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    # httpx logs every request URL at INFO; platform and presigned URLs can carry credentials.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


@app.command()
def run(
    queues: Annotated[str, typer.Option(help="Comma-separated queues to serve: gpu, cpu, default.")] = "",
) -> None:
    """Start supervised worker processes (one for 'gpu', one for 'cpu'+'default') and the reconciler.

    A worker process that dies is restarted; Ctrl-C or SIGTERM stops them gracefully and hands
    unfinished messages back to the queue.
    """

    protect_data_dir()  # umask 077, inherited by every worker process it starts
    upgrade_schema()
    prepare_storage()
    try:
        groups = default_groups([q.strip() for q in queues.split(",") if q.strip()] or None)
    except ValueError as error:
        raise _fail(error) from None
    raise typer.Exit(Supervisor(groups).run())


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Address the web server listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the UI and the /api routes.")] = 8501,
    demo_models: Annotated[bool, typer.Option(help="Use tiny local models for every model setting left at its "
                                                   "hub default (offline demo).")] = True,
) -> None:
    """Run the whole studio here: a local Redis if none is reachable, the workers and the web app."""

    raise typer.Exit(launch(host, port, demo_models=demo_models))


@app.command(name="build-tiny-models")
def build_tiny_models(
    folder: Annotated[str, typer.Option(help="Where to build them; default: <data dir>/models.")] = "",
) -> None:
    """Build the tiny, randomly initialised models the offline demo and the tests use (no download)."""

    for name, path in ensure_tiny_models(Path(folder) if folder else get_settings().models_dir).items():
        typer.echo(f"{name}: {path}")


@app.command(hidden=True)
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues.")],
    threads: Annotated[int, typer.Option(min=1, max=64)] = 4,
    prefetch: Annotated[int, typer.Option(min=0, help="Messages fetched ahead; 0 = twice the threads.")] = 0,
) -> None:
    """One unsupervised worker process (the supervisor starts these)."""

    run_worker([q for q in queues.split(",") if q], threads, prefetch)


@app.command()
def enqueue(
    kind: Annotated[str, typer.Argument(help="Job kind, e.g. noop or sleep (see `kinds`).")],
    payload: Annotated[str, typer.Option(help="The job's payload as a JSON object.")] = "{}",
) -> None:
    """Create a job and put it on its queue; prints the job id."""
    try:
        data = strict_json.parse(payload)
    except InvalidInput as error:
        raise _fail(ValueError(f"--payload is not valid JSON: {error}")) from None
    if not isinstance(data, dict):
        raise _fail(ValueError("--payload must be a JSON object"))
    try:
        with _for_character():
            job = jobs.create_job(kind, data)
    except StudioError as error:
        raise _fail(error) from None
    typer.echo(job.id)


@app.command()
def train(
    dataset_id: Annotated[int, typer.Argument(help="Dataset to train on.")],
    config: Annotated[str, typer.Option(help="LoRA config name; default: the default config.")] = "",
    set_values: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a parameter, e.g. --set rank=32 --set steps=2000 (repeatable).")] = None,
    name: Annotated[str, typer.Option(help="Run name.")] = "",
) -> None:
    """Queue a LoRA training run; prints the job id (follow it with `show ID --follow`)."""

    try:
        chosen = lora_configs.get_config_by_name(config) if config else lora_configs.get_default_config()
        values = lora_configs.params_of(chosen).model_dump()
        for item in set_values or []:
            key, separator, raw = item.partition("=")
            if not separator:
                raise ValueError(f"--set {item!r} is not key=value")
            try:
                values[key.strip()] = json.loads(raw)
            except json.JSONDecodeError:
                values[key.strip()] = raw  # a bare string, e.g. --set base_model=tiny-sd15
        with _for_character():
            job = training.submit_training(dataset_id=dataset_id, config_id=chosen.id, params=values, name=name)
    except (StudioError, ValueError) as error:
        raise _fail(error) from None
    typer.echo(job.id)


@app.command("lora-export")
def lora_export(
    lora_id: Annotated[int, typer.Argument(help="LoRA id (see the Checkpoints tab or `show JOB`).")],
    out: Annotated[Path, typer.Option(help="Folder or file to write; default: the current folder.")] = Path("."),
    fmt: Annotated[str, typer.Option("--format", help="kohya (ComfyUI, A1111, Forge, sd-scripts; "
                                                      "for FLUX.2 / Z-Image / Qwen-Image ComfyUI), "
                                                      "comfyui (FLUX.2 / Z-Image / Qwen-Image, ai-toolkit's layout) "
                                                      "or diffusers.")] = "kohya",
) -> None:
    """Write a LoRA in kohya (default), ComfyUI or diffusers format; prints the file's path."""
    try:
        exported = lora_files.export_lora_by_id(lora_id, fmt)
    except StudioError as error:
        raise _fail(error) from None
    target = out / exported.file_name if out.is_dir() else out
    target.write_bytes(exported.data)
    typer.echo(str(target))


@app.command("lora-import")
def lora_import(
    file: Annotated[Path, typer.Argument(help="A .safetensors LoRA (kohya, LoKr, LoHa, ComfyUI, diffusers, PEFT).")],
    base_model: Annotated[str, typer.Option(help="The base model it is for (hub id, folder or tiny-sd15…).")],
    family: Annotated[str, typer.Option(help="sd15 or sdxl.")] = "sd15",
    name: Annotated[str, typer.Option(help="Name; default: the file's name.")] = "",
    trigger_word: Annotated[str, typer.Option(help="The word that calls the LoRA's subject.")] = "",
    character_id: Annotated[int | None, typer.Option(help="Character it belongs to.")] = None,
) -> None:
    """Queue the import of a community LoRA; prints the job id (its result names the new LoRA)."""
    try:
        with _for_character():
            job = submit_import(file.read_bytes(), file_name=file.name, name=name, family=family,
                                base_model=base_model, trigger_word=trigger_word,
                                character_id=character_id if character_id is not None else scoped_character_id())
    except (StudioError, OSError) as error:
        raise _fail(error) from None
    typer.echo(job.id)


def _lora_choice(text: str) -> dict[str, float | int]:
    """``ID`` or ``ID:STRENGTH`` → a LoraChoice request."""
    raw_id, separator, raw_strength = text.partition(":")
    try:
        choice: dict[str, float | int] = {"lora_id": int(raw_id)}
        if separator:
            choice["strength"] = float(raw_strength)
    except ValueError:
        raise ValueError(f"--lora {text!r} is not ID or ID:STRENGTH (e.g. --lora 3:0.8)") from None
    return choice


@app.command()
def generate(
    prompt: Annotated[str, typer.Option(help="What to draw; each LoRA's trigger word is added when missing.")],
    template: Annotated[str, typer.Option(help="Generation template (workflows/generation); default: the "
                                               "LoRA family's.")] = "",
    lora: Annotated[list[str] | None, typer.Option(
        help="LoRA version to apply, as ID or ID:STRENGTH (repeatable); none given: the promoted LoRA.")] = None,
    no_lora: Annotated[bool, typer.Option("--no-lora", help="Use no LoRA at all.")] = False,
    count: Annotated[int, typer.Option(min=1, max=64, help="How many images.")] = 1,
    seed: Annotated[int | None, typer.Option(help="Seed of the first image (image i uses seed + i).")] = None,
    negative: Annotated[str | None, typer.Option(help="Negative prompt; default: the template's.")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps; default: the template's.")] = None,
    init_asset: Annotated[int | None, typer.Option(help="img2img: start from this image asset.")] = None,
    strength: Annotated[float, typer.Option(help="img2img: how far to move from the start image.")] = 0.6,
    reference: Annotated[list[int] | None, typer.Option(
        help="Reference image asset for editing (FLUX.2 [klein] templates; repeatable, up to 4).")] = None,
) -> None:
    """Queue an image generation job; prints the job id (follow it with `show ID --follow`)."""

    request: dict[str, object] = {"prompt": prompt, "template": template, "count": count}
    for name, value in (("seed", seed), ("negative_prompt", negative), ("steps", steps),
                        ("init_asset_id", init_asset)):
        if value is not None:
            request[name] = value
    if init_asset is not None:
        request["img2img_strength"] = strength
    if reference:
        request["reference_asset_ids"] = list(reference)
    try:
        if no_lora:
            request["loras"] = []
        elif lora:
            request["loras"] = [_lora_choice(item) for item in lora]
        with _for_character():
            job = submit_generation(**request)
    except (StudioError, ValueError) as error:
        raise _fail(error) from None
    typer.echo(job.id)


@app.command()
def configs() -> None:
    """List the LoRA training configs (* marks the default)."""

    for config in lora_configs.list_configs(page_size=100).items:
        params = lora_configs.params_of(config)
        marker = "*" if config.is_default else " "
        typer.echo(f"{marker} {config.name:<28} {params.family:<5} {params.resolution:>5}px rank {params.rank:<4} "
                   f"{params.total_steps(1) if params.duration_unit == 'steps' else str(params.epochs) + ' epochs'}"
                   f"  {params.base_model}")


@app.command(name="characters")
def list_characters(
    archived: Annotated[bool, typer.Option("--archived", help="Archived ones too.")] = False,
) -> None:
    """List the characters: id, slug (what --character, the API and n8n take) and name."""
    for character in characters.list_characters(include_archived=archived, page_size=200).items:
        note = "  (archived)" if character.archived_at else ""
        typer.echo(f"{character.id:<5} {character.slug or '':<32} {character.name}{note}")


@app.command()
def kinds() -> None:
    """List the job kinds, their queues and what they do."""

    for spec in all_specs():
        typer.echo(f"{spec.kind:<16} {spec.queue:<8} {spec.description}")


@app.command(name="jobs")
def list_jobs(
    status: Annotated[list[str] | None, typer.Option(help="Filter by status (repeatable).")] = None,
    kind: Annotated[list[str] | None, typer.Option(help="Filter by kind (repeatable).")] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=200)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List jobs, newest first (the --character's, when given)."""
    with _for_character(listing=True):
        result = jobs.list_jobs(statuses=status, kinds=kind, page=page, page_size=page_size)
    if as_json:
        typer.echo(json.dumps({"total": result.total, "items": [job_to_dict(j) for j in result.items]}))
        return
    typer.echo(f"{'ID':<10}{'KIND':<14}{'STATUS':<11}{'PROGRESS':>9}  {'CREATED':<20} STAGE / ERROR")
    for job in result.items:
        created = jobs.aware(job.created_at).strftime("%Y-%m-%d %H:%M:%S")
        note = job.error or job.stage or ""
        typer.echo(
            f"{_short(job.id):<10}{job.kind:<14}{job.status:<11}{job.progress:>8.0%}  {created:<20} {note[:60]}"
        )
    typer.echo(f"page {result.page}/{result.pages} · {result.total} job(s)")


def _resolve(job_id: str) -> str:
    try:
        return jobs.resolve_job_id(job_id)
    except StudioError as error:
        raise _fail(error) from None


@app.command()
def show(
    job_id: Annotated[str, typer.Argument(help="Job id or a unique prefix of it.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Tail the log until the job ends.")] = False,
) -> None:
    """Show a job's state and its log; with --follow, stream new log lines live."""

    full_id = _resolve(job_id)
    job = jobs.get_job(full_id)
    typer.echo(f"job {job.id}  kind={job.kind}  queue={job.queue}  status={job.status}  "
               f"attempts={job.attempts}/{job.max_attempts}  progress={job.progress:.0%}")
    if job.error:
        typer.echo(f"error ({job.error_stage}): {job.error}")
    cursor = 0
    while True:
        page = joblogs.read_logs(full_id, after=cursor)
        for entry in page.entries:
            typer.echo(f"{jobs.aware(entry.created_at):%H:%M:%S} {entry.level:<7} {entry.message}")
        cursor = page.cursor
        if not follow:
            break
        if jobs.get_job(full_id).job_status.is_terminal and not page.entries:
            typer.echo(f"-- job {jobs.get_job(full_id).status}")
            break
        time.sleep(0.5)


@app.command()
def cancel(job_id: Annotated[str, typer.Argument(help="Job id or a unique prefix.")]) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    try:
        job = jobs.cancel_job(_resolve(job_id))
    except StudioError as error:
        raise _fail(error) from None
    typer.echo(f"{job.id} {job.status}{' (stop requested)' if job.status == 'running' else ''}")


@app.command()
def retry(job_id: Annotated[str, typer.Argument(help="Job id or a unique prefix.")]) -> None:
    """Queue a failed or cancelled job again (it resumes from its checkpoint when it has one)."""
    try:
        job = jobs.retry_job(_resolve(job_id))
    except StudioError as error:
        raise _fail(error) from None
    typer.echo(f"{job.id} {job.status}")


@app.command()
def reconcile() -> None:
    """Re-enqueue jobs the broker lost and fail jobs past their time limit (the supervisor does this too)."""
    report = jobs.reconcile()
    typer.echo(f"requeued {len(report.requeued)}, orphaned {len(report.orphaned)}, "
               f"timed out {len(report.timed_out)}, moved to the queue head {len(report.expedited)}")


@app.command()
def migrate() -> None:
    """Upgrade the database schema to the newest migration."""

    protect_data_dir()
    upgrade_schema()
    typer.echo("schema up to date")
    if prepare_storage():
        typer.echo("object storage ready")


@app.command(name="hash-password")
def hash_password_command() -> None:
    """Make a login password hash for STUDIO_UI_PASSWORD_HASH (reads the password from stdin or a prompt)."""

    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else typer.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    try:
        typer.echo(hash_password(password))
    except ValueError as error:
        raise _fail(error) from None


@app.command(name="new-encryption-key")
def new_encryption_key() -> None:
    """Print a new Fernet key for STUDIO_TOKEN_ENCRYPTION_KEY (social account tokens are encrypted with it)."""

    typer.echo(Fernet.generate_key().decode())


@app.command(name="rotate-tokens")
def rotate_tokens() -> None:
    """Re-encrypt every stored social token with the first key of STUDIO_TOKEN_ENCRYPTION_KEY (after a rotation)."""

    try:
        typer.echo(f"re-encrypted the tokens of {reencrypt_tokens()} account(s)")
    except StudioError as error:
        raise _fail(error) from None


@app.command()
def plan(
    theme: Annotated[str, typer.Option(help="What the posts are about.")],
    platform: Annotated[list[str], typer.Option(help="instagram, facebook, youtube or tiktok (repeatable).")],
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last day, YYYY-MM-DD.")],
    per_week: Annotated[int, typer.Option(min=1, max=28, help="Posts per week on each platform.")] = 3,
    planner: Annotated[str, typer.Option(help="auto (the LLM when configured), llm or template.")] = "auto",
) -> None:
    """Queue a content plan from the character's persona; prints the job id. The posts arrive as drafts."""

    try:
        with _for_character():
            job = submit_plan(theme=theme, platforms=platform, start=start, end=end, posts_per_week=per_week,
                              planner=planner)
    except (StudioError, ValueError) as error:
        raise _fail(error) from None
    typer.echo(job.id)


@app.command(name="posts")
def list_posts(
    days: Annotated[int, typer.Option(min=1, max=366, help="How many days ahead (and 1 back).")] = 14,
) -> None:
    """The posts on the calendar around today: time, platform, status, caption."""

    now = utcnow()
    for post in posts_between(now - timedelta(days=1), now + timedelta(days=days)):
        when = jobs.aware(post.scheduled_at).strftime("%Y-%m-%d %H:%M")
        caption = post.caption.replace("\n", " ")[:60]
        typer.echo(f"{post.id:>6}  {when}  {post.platform:<9}  {post.status:<10}  {caption}")


@app.command(name="publish-due")
def publish_due() -> None:
    """Hand every post whose time has come to the workers (the supervisor does this on a timer)."""

    report = scheduler_tick()
    typer.echo(f"handed {len(report.claimed)} post(s) to the workers; failed {report.failed_swept} stuck post(s)")


@app.command()
def demo() -> None:
    """Run the whole pipeline on the demo data through the running studio (./scripts/run): dataset →
    captions → tiny LoRA → 4 images → 9:16 video → draft post (the `demo` pipeline, as the Home page's
    button starts it); prints each stage with its time."""

    def show(name: str, seconds: float, what: str) -> None:
        typer.echo(f"{name:<24} {seconds:6.1f} s  {what}")

    try:
        report = run_demo(on_stage=show)
    except StudioError as error:
        raise _fail(error) from None
    for name, seconds, what in report.jobs:
        typer.echo(f"  {name:<22} {seconds:6.1f} s  (longest job; {what})")
    typer.echo(f"{'total':<24} {report.total_s:6.1f} s  pipeline {report.pipeline_id}, post {report.post_id}")
