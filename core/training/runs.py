"""LoRA training runs: submission, per-step metrics, sample images, checkpoints and promotion.

A run is a job of kind ``train``. Its payload holds a snapshot of the params, so a config can be
edited while the run is queued. The worker's trainer reports through the functions here:
metrics in batches, samples as assets, checkpoints as ``LoraModel`` rows with their files in
object storage. On resume everything after the checkpoint is discarded first, so the loss curve
and the sample grid never have a gap or a duplicate step.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field
from sqlalchemy import delete, func, insert, select, update
from sqlmodel import col

from core.characters.scope import in_scope
from core.datasets.datasets import get_dataset
from core.db import get_or_raise, session_scope
from core.errors import InvalidInput, NotFound, referenced_by
from core.infra.storage import get_object_store, job_key
from core.jobs.kinds import JobSpec, Payload, Queue, register
from core.jobs.lifecycle import create_job, get_job, list_jobs
from core.library import assets
from core.library.assets import AssetSource
from core.models import Asset, AssetKind, Job, JobStatus, LoraModel, TrainingMetric, utcnow
from core.models_registry import references
from core.pagination import Page, clamp
from core.training.configs import (
    TRAIN_KIND,
    create_config,
    delete_config,
    get_config,
    get_default_config,
    params_of,
)
from core.training.params import STATE_FILE, WEIGHTS_FILE, LoraParams, parse_params
from core.training.vram import VramEstimate, estimate_vram

MAX_SAMPLE_ROWS = 2_000


# --- models ---------------------------------------------------------------------------------------


class TrainPayload(Payload):
    """Train a LoRA on a dataset. ``params`` is the snapshot the run uses; when omitted it is
    taken from the config (or the default config) at submission."""

    dataset_id: int = Field(ge=1)
    config_id: int | None = Field(default=None, ge=1)
    params: LoraParams | None = None
    name: str = Field(default="", max_length=200)
    # At the end of the run, promote the checkpoint with the best likeness (core.characters.likeness).
    promote_recommended: bool = False


def resolve_base_model(name: str) -> str:
    """A base model as the loaders want it (core.models_registry.references owns the rules)."""
    return references.resolve(name)


# --- submission -----------------------------------------------------------------------------------


def _default_run_name(dataset_name: str, config_name: str) -> str:
    return f"{dataset_name} · {config_name} · {utcnow():%Y-%m-%d %H:%M}"[:200]


def prepare_train_payload(payload: TrainPayload) -> tuple[TrainPayload, int | None]:
    """Called by ``create_job``: the dataset must have images; params default to the config's."""
    with referenced_by("dataset_id"):
        dataset = get_dataset(payload.dataset_id)
    if dataset.image_count == 0:
        raise InvalidInput(f"dataset {dataset.name!r} has no images to train on")
    with referenced_by("config_id"):
        config = get_config(payload.config_id) if payload.config_id else get_default_config()
    params = payload.params or params_of(config)
    references.check(params.base_model, params.family)  # a base model that can never load: refused now
    name = payload.name.strip() or _default_run_name(dataset.name, config.name)
    prepared = payload.model_copy(update={"config_id": config.id, "params": params, "name": name})
    return prepared, dataset.character_id


def submit_training(
    *, dataset_id: int, config_id: int | None = None, params: dict[str, Any] | LoraParams | None = None,
    name: str = "", save_as: str = "", promote_recommended: bool = False,
) -> Job:
    """Queue a training run. ``params`` (the wizard's edited form) overrides the config's values;
    ``save_as`` also keeps them as a new config, which the run then names. Either both happen or
    neither: a run that cannot be queued removes the config it just saved."""
    if isinstance(params, dict):
        params = parse_params(params)
    saved = None
    if save_as.strip():
        based_on = get_config(config_id).name if config_id else get_default_config().name
        saved = create_config(name=save_as, params=params or params_of(get_config(config_id or 0)),
                              description=f"Saved from the training wizard, based on {based_on}.")
        config_id = saved.id
    payload = {"dataset_id": dataset_id, "config_id": config_id, "name": name,
               "params": params.model_dump(mode="json") if params else None,
               "promote_recommended": promote_recommended}
    try:
        return create_job(TRAIN_KIND, payload)
    except Exception:
        if saved is not None and saved.id is not None:
            delete_config(saved.id)
        raise


def run_params(job: Job) -> LoraParams:
    return LoraParams.model_validate(job.payload["params"])


def list_runs(*, statuses: list[str] | None = None, page: int = 1, page_size: int = 20) -> Page[Job]:
    """Training runs, newest first (the (kind, created_at) index serves it)."""
    return list_jobs(kinds=[TRAIN_KIND], statuses=statuses, page=page, page_size=page_size)


def get_run(job_id: str) -> Job:
    job = get_job(job_id)
    if job.kind != TRAIN_KIND:
        raise NotFound(f"job {job_id} is not a training run")
    return job


# --- metrics --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricPoint:
    step: int
    epoch: int
    loss: float
    lr: float


def record_metrics(job_id: str, points: Sequence[MetricPoint]) -> None:
    """One INSERT for a batch of steps (the trainer flushes about once a second)."""
    if not points:
        return
    with session_scope() as session:
        session.execute(insert(TrainingMetric), [
            {"job_id": job_id, "step": p.step, "epoch": p.epoch, "loss": p.loss, "lr": p.lr} for p in points
        ])


def discard_after(job_id: str, step: int) -> None:
    """Forget what an interrupted attempt recorded after its last checkpoint (it will be redone)."""
    with session_scope() as session:
        session.execute(delete(TrainingMetric)
                        .where(col(TrainingMetric.job_id) == job_id, col(TrainingMetric.step) > step))
    assets.remove_assets([a.id for a in _sample_assets(job_id)
                          if a.id is not None and int(a.meta.get("step", 0)) > step])


@dataclass
class MetricSeries:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    bucket: int = 1  # steps averaged into each point

    @property
    def last_step(self) -> int:
        return self.steps[-1] if self.steps else 0


def metric_series(job_id: str, *, max_points: int = 2_000) -> MetricSeries:
    """The loss and learning-rate curves, averaged in the database into at most ``max_points``
    buckets of consecutive steps, so a 100,000-step run still draws quickly."""
    with session_scope() as session:
        count, last = session.execute(
            select(func.count(), func.max(col(TrainingMetric.step))).where(col(TrainingMetric.job_id) == job_id)
        ).one()
        if not count:
            return MetricSeries()
        bucket = max(1, -(-int(last) // max_points))
        group = (col(TrainingMetric.step) - 1) // bucket  # floor division on both SQLite and PostgreSQL
        rows = session.execute(
            select(func.max(TrainingMetric.step), func.avg(TrainingMetric.loss), func.avg(TrainingMetric.lr))
            .where(col(TrainingMetric.job_id) == job_id).group_by(group).order_by(group)
        ).all()
    return MetricSeries(
        steps=[int(r[0]) for r in rows], loss=[float(r[1]) for r in rows], lr=[float(r[2]) for r in rows],
        bucket=bucket,
    )


def all_metric_steps(job_id: str) -> list[int]:
    with session_scope() as session:
        return list(session.execute(
            select(col(TrainingMetric.step))
            .where(col(TrainingMetric.job_id) == job_id).order_by(col(TrainingMetric.step))
        ).scalars())


# --- samples --------------------------------------------------------------------------------------


def sample_key(job_id: str, step: int, prompt_index: int) -> str:
    return job_key(job_id, f"samples/step-{step:06d}/prompt-{prompt_index:02d}.png")


def save_sample(job: Job, *, step: int, prompt_index: int, prompt: str, seed: int, png: bytes) -> Asset:
    """Store one sample image as an asset linked to its run and step (a rerun overwrites it)."""
    meta = {"step": step, "prompt_index": prompt_index, "prompt": prompt, "seed": seed}
    return assets.store_image(
        sample_key(job.id, step, prompt_index), png, source=AssetSource.SAMPLE, job_id=job.id,
        character_id=job.character_id, dataset_id=job.payload.get("dataset_id"), prompt=prompt, meta=meta,
    )


def _sample_assets(job_id: str) -> list[Asset]:
    with session_scope() as session:
        return list(session.execute(
            select(Asset).where(col(Asset.job_id) == job_id, col(Asset.source) == AssetSource.SAMPLE)
            .order_by(col(Asset.id).desc()).limit(MAX_SAMPLE_ROWS)
        ).scalars())


@dataclass
class SampleGrid:
    """Rows are prompts, columns are steps."""

    prompts: list[str]
    steps: list[int]
    cells: dict[tuple[int, int], Asset]

    def cell(self, prompt_index: int, step: int) -> Asset | None:
        return self.cells.get((prompt_index, step))


def sample_grid(job_id: str, *, last_steps: int | None = None) -> SampleGrid:
    """The run's samples; ``last_steps`` keeps only the newest columns."""
    assets = _sample_assets(job_id)
    steps = sorted({int(a.meta["step"]) for a in assets})
    if last_steps is not None:
        steps = steps[-last_steps:]
    prompts: dict[int, str] = {}
    cells = {}
    for asset in assets:
        index, step = int(asset.meta["prompt_index"]), int(asset.meta["step"])
        prompts.setdefault(index, asset.meta.get("prompt", ""))
        if step in steps:
            cells[(index, step)] = asset
    return SampleGrid(prompts=[prompts[i] for i in sorted(prompts)], steps=steps, cells=cells)


# --- checkpoints and LoRA versions --------------------------------------------------------------


def checkpoint_keys(job_id: str, step: int) -> tuple[str, str]:
    """(weights, training state) keys of a checkpoint."""
    folder = f"checkpoints/step-{step:06d}"
    return job_key(job_id, f"{folder}/{WEIGHTS_FILE}"), job_key(job_id, f"{folder}/{STATE_FILE}")


def register_checkpoint(job: Job, *, step: int, directory: Path, final: bool, loss: float | None) -> LoraModel:
    """Upload a checkpoint folder and record it as a LoRA version. Idempotent per (job, step)."""
    weights_key, state_key = checkpoint_keys(job.id, step)
    store = get_object_store()
    info = store.put_file(weights_key, directory / WEIGHTS_FILE, "application/octet-stream")
    state = directory / STATE_FILE
    if state.exists():
        store.put_file(state_key, state, "application/octet-stream")
    params = run_params(job)
    dataset_id = int(job.payload["dataset_id"])
    trigger = _trigger_word(dataset_id)
    name = job.payload.get("name") or job.id
    label = f"{name} · final" if final else f"{name} · step {step}"
    with session_scope() as session:
        lora = session.execute(
            select(LoraModel).where(col(LoraModel.job_id) == job.id, col(LoraModel.step) == step)
        ).scalar_one_or_none()
        if lora is None:
            lora = LoraModel(job_id=job.id, step=step, key=weights_key, family=params.family,
                             base_model=params.base_model, name=label[:200])
        lora.final = lora.final or final
        lora.name, lora.size_bytes, lora.loss = label[:200], info.size, loss
        lora.dataset_id, lora.config_id, lora.character_id = dataset_id, job.payload.get("config_id"), job.character_id
        lora.trigger_word = trigger
        session.add(lora)
        session.flush()
        session.refresh(lora)
    assert lora.id is not None  # the flush gave the row its id
    assets.record_asset(
        key=weights_key, kind=AssetKind.LORA, source=AssetSource.LORA, content_type="application/octet-stream",
        size_bytes=info.size, job_id=job.id, character_id=job.character_id, dataset_id=dataset_id,
        meta={"lora_id": lora.id, "name": lora.name, "step": step, "final": lora.final, "family": lora.family,
              "base_model": lora.base_model, "trigger_word": trigger},
        loras=[(lora.id, 1.0)],
    )
    return lora


def _trigger_word(dataset_id: int) -> str:
    try:
        return get_dataset(dataset_id).trigger_word
    except NotFound:
        return ""


def prune_checkpoints(job_id: str, *, keep: int) -> list[int]:
    """Delete all but the newest ``keep`` intermediate checkpoints; the final and promoted ones stay."""
    with session_scope() as session:
        loras = list(session.execute(
            select(LoraModel).where(col(LoraModel.job_id) == job_id, col(LoraModel.final).is_(False))
            .order_by(col(LoraModel.step).desc())
        ).scalars())
    doomed = [lora for lora in loras[keep:] if not lora.promoted]
    for lora in doomed:
        _remove_lora(lora)
    return [lora.step for lora in doomed]


def _remove_lora(lora: LoraModel) -> None:
    """A checkpoint's files (weights and training state) and its row."""
    store = get_object_store()
    weights_key, state_key = checkpoint_keys(lora.job_id, lora.step)
    store.delete(state_key)
    if (file_asset := assets.find_asset(weights_key)) and file_asset.id is not None:
        assets.remove_assets([file_asset.id])
    store.delete(weights_key)
    with session_scope() as session:
        session.execute(delete(LoraModel).where(col(LoraModel.id) == lora.id))


def discard_training_states(job_id: str) -> None:
    """After a run finishes its optimizer states are dead weight (often larger than the LoRA)."""
    store = get_object_store()
    for lora in list_loras(job_id=job_id, page_size=100).items:
        store.delete(checkpoint_keys(job_id, lora.step)[1])


def download_training_state(job_id: str, step: int, directory: Path) -> Path:
    """Fetch a checkpoint (weights and state) into ``directory`` for a resumed attempt."""
    directory.mkdir(parents=True, exist_ok=True)
    store = get_object_store()
    for key, name in zip(checkpoint_keys(job_id, step), (WEIGHTS_FILE, STATE_FILE), strict=True):
        with store.iter_chunks(key) as chunks, open(directory / name, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
    return directory


def list_loras(*, job_id: str | None = None, character_id: int | None = None, page: int = 1,
               page_size: int = 50) -> Page[LoraModel]:
    page, page_size = clamp(page, page_size, max_page_size=100)
    conditions = []
    if job_id:
        conditions.append(col(LoraModel.job_id) == job_id)
    if character_id is not None:
        conditions.append(col(LoraModel.character_id) == character_id)
    else:
        conditions += in_scope(col(LoraModel.character_id))
    order = col(LoraModel.step).desc() if job_id else col(LoraModel.created_at).desc()
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(LoraModel).where(*conditions)).scalar_one()
        items = list(session.execute(
            select(LoraModel).where(*conditions).order_by(order, col(LoraModel.id).desc())
            .offset((page - 1) * page_size).limit(page_size)
        ).scalars())
    return Page(items=items, total=int(total), page=page, page_size=page_size)


def get_lora(lora_id: int) -> LoraModel:
    return get_or_raise(LoraModel, lora_id, "LoRA")


def promote_lora(lora_id: int) -> LoraModel:
    """Make this checkpoint the LoRA generation uses by default for its character (one at a time)."""
    with session_scope() as session:
        lora = session.get(LoraModel, lora_id)
        if lora is None:
            raise NotFound(f"LoRA {lora_id} not found")
        same_owner = (col(LoraModel.character_id).is_(None) if lora.character_id is None
                      else col(LoraModel.character_id) == lora.character_id)
        session.execute(update(LoraModel).where(col(LoraModel.promoted).is_(True), same_owner).values(promoted=False))
        session.execute(update(LoraModel).where(col(LoraModel.id) == lora_id).values(promoted=True))
    return get_lora(lora_id)


def promoted_lora(character_id: int | None = None) -> LoraModel | None:
    """The promoted LoRA of a character (or of the studio, for work without a character)."""
    with session_scope() as session:
        condition = (col(LoraModel.character_id).is_(None) if character_id is None
                     else col(LoraModel.character_id) == character_id)
        return session.execute(
            select(LoraModel).where(col(LoraModel.promoted).is_(True), condition)
            .order_by(col(LoraModel.created_at).desc()).limit(1)
        ).scalar_one_or_none()


def read_lora_weights(lora: LoraModel) -> bytes:
    return get_object_store().get_bytes(lora.key)


# --- estimates ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunEstimate:
    steps: int
    vram: VramEstimate
    gpu_memory_gib: float | None  # the largest GPU of the online GPU workers; None: no GPU seen
    steps_per_second: float | None  # from earlier runs of the same family, resolution and batch
    seconds: float | None

    @property
    def vram_warning(self) -> str | None:
        if self.gpu_memory_gib is not None and self.vram.total_gib > self.gpu_memory_gib:
            return (f"Estimated {self.vram.total_gib:.1f} GiB exceeds the worker's GPU "
                    f"({self.gpu_memory_gib:.0f} GiB): enable gradient checkpointing, lower the batch size or "
                    f"resolution, or use 8-bit AdamW.")
        return None


def _measured_speed(params: LoraParams, *, history: int = 50) -> float | None:
    """Median steps/s of recent successful runs with the same family, base model, resolution and batch size."""
    with session_scope() as session:
        jobs = session.execute(
            select(col(Job.payload), col(Job.result))
            .where(col(Job.kind) == TRAIN_KIND, col(Job.status) == JobStatus.SUCCEEDED)
            .order_by(col(Job.created_at).desc()).limit(history)
        ).all()
    speeds = []
    for payload, result in jobs:
        earlier = (payload or {}).get("params") or {}
        same = all(earlier.get(k) == getattr(params, k) for k in ("family", "base_model", "resolution", "batch_size"))
        if same and (result or {}).get("steps_per_second"):
            speeds.append(float(result["steps_per_second"]))
    return statistics.median(speeds) if speeds else None


def estimate_run(params: LoraParams, *, image_count: int, gpu_memory_gib: float | None) -> RunEstimate:
    steps = params.total_steps(image_count)
    speed = _measured_speed(params)
    return RunEstimate(
        steps=steps, vram=estimate_vram(params), gpu_memory_gib=gpu_memory_gib, steps_per_second=speed,
        seconds=steps / speed if speed else None,
    )


assets.remove_loras_with(_remove_lora)  # purging a LoRA file from the library removes its version


# --- the job kinds of this domain (core.catalogue loads them all) ---

register(JobSpec(
    "train", Queue.GPU, TrainPayload, "Trains a LoRA on a dataset (checkpoints, samples, resume).",
    max_attempts=3, time_limit_s=None, prepare=prepare_train_payload,
))
