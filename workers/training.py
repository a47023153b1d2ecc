"""The ``train`` job: runs the LoRA trainer under the job lifecycle.

The trainer (workers/ml/training) knows nothing of jobs; this module feeds it the dataset and
turns its hooks into durable state: metrics in batches, samples and checkpoints in object
storage, the resume point in the job row. The order matters for resume: a checkpoint's metrics
are flushed before the checkpoint is recorded, and a resumed attempt first discards whatever
its predecessor recorded after that checkpoint, so the loss curve has no gap or duplicate.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from core.characters.likeness import recommend_checkpoint
from core.config import get_settings
from core.datasets.captions import compose_caption
from core.datasets.datasets import all_images, get_dataset
from core.errors import JobInterrupted, PermanentJobError
from core.infra.storage import get_object_store
from core.jobs.lifecycle import JobContext, get_job, shutting_down
from core.jobs.routing import report_held
from core.models import Dataset, Job
from core.training import runs as training
from core.training.configs import get_config, params_of
from core.training.params import LoraParams
from core.training.runs import TrainPayload
from core.training.views import format_duration
from workers.gpu_slots import assigned_device
from workers.identity import Scorer

_logger = logging.getLogger("studio.training")
FLUSH_INTERVAL_S = 1.0
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


def materialise_dataset(dataset: Dataset, cache_dir: Path) -> list[Any]:
    """Copy the dataset's images to a local cache (by content hash, shared by runs) with captions.

    Each caption gets the trigger word if it lacks it; an uncaptioned image trains on the
    trigger word alone.
    """
    from workers.ml.training import TrainingExample

    cache_dir.mkdir(parents=True, exist_ok=True)
    store = get_object_store()
    examples = []
    for image in all_images(dataset.id or 0):
        path = cache_dir / f"{image.sha256}{_EXTENSIONS.get(image.content_type, '.img')}"
        if not path.exists():
            # A private temporary name, then an atomic rename: runs in other threads or processes may
            # fetch the same image at the same moment, and none may ever read half a file.
            with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".part", delete=False) as out:
                with store.iter_chunks(image.key) as chunks:
                    for chunk in chunks:
                        out.write(chunk)
            Path(out.name).replace(path)
        examples.append(TrainingExample(path=path, caption=compose_caption(image.caption,
                                                                           trigger_word=dataset.trigger_word)))
    return examples


class JobHooks:
    """The trainer's hooks, bound to one job attempt."""

    def __init__(self, ctx: JobContext, job: Job, params: LoraParams, scorer: Scorer | None = None) -> None:
        self.ctx = ctx
        self.scorer = scorer  # None: the character has no face fingerprint, samples are not scored
        self.job = job
        self.params = params
        self.pending: list[training.MetricPoint] = []
        self.last_flush = time.monotonic()
        self.last_loss: float | None = None
        self.smoothed: float | None = None
        self.first_step: tuple[int, float] | None = None  # (step, time) of this attempt's first step
        self.final_lora_id: int | None = None

    def stage(self, name: str) -> None:
        self.ctx.stage(name)

    def log(self, message: str) -> None:
        self.ctx.log(message)

    def flush(self) -> None:
        if self.pending and not self.ctx.lease_lost:
            training.record_metrics(self.ctx.job_id, self.pending)
        self.pending = []
        self.last_flush = time.monotonic()

    def _pace(self, step: int) -> float | None:
        now = time.monotonic()
        if self.first_step is None:
            self.first_step = (step, now)
            return None
        first, started = self.first_step
        return (step - first) / (now - started) if now > started and step > first else None

    def on_step(self, step: int, total_steps: int, epoch: int, loss: float, lr: float) -> None:
        self.pending.append(training.MetricPoint(step=step, epoch=epoch, loss=loss, lr=lr))
        self.last_loss = loss
        self.smoothed = loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * loss
        if time.monotonic() - self.last_flush >= FLUSH_INTERVAL_S:
            self.flush()
        message = f"step {step}/{total_steps} · loss {self.smoothed:.4f}"
        if pace := self._pace(step):
            message += f" · {pace:.2f} steps/s · ETA {format_duration((total_steps - step) / pace)}"
        try:
            self.ctx.progress(step / total_steps, message, force=True)  # raises when the run is cancelled
        except JobInterrupted:
            pass  # should_pause() saves a checkpoint first; then the job is handed back

    def on_samples(self, step: int, images: list[Any]) -> None:
        distances = []
        for image in images:
            asset = training.save_sample(self.job, step=step, prompt_index=image.prompt_index, prompt=image.prompt,
                                         seed=image.seed, png=image.png)
            if self.scorer is not None and asset.id is not None:
                distances.append(self.scorer.score_asset(asset.id, image.png).distance)
        scored = [d for d in distances if d is not None]
        likeness = (f"; likeness: {len(scored)}/{len(distances)} with a face"
                    + (f", mean face distance {sum(scored) / len(scored):.3f}" if scored else "")) if distances else ""
        self.ctx.log(f"step {step}: {len(images)} sample image(s) saved{likeness}")

    def on_checkpoint(self, step: int, directory: Path, final: bool) -> None:
        self.flush()  # every metric up to this step is durable before the checkpoint is
        lora = training.register_checkpoint(self.job, step=step, directory=directory, final=final,
                                            loss=self.smoothed)
        if final:
            self.final_lora_id = lora.id
        try:
            self.ctx.save_checkpoint({"step": step, "lora_id": lora.id})
        except JobInterrupted:
            pass  # the checkpoint is saved; should_pause() stops the run next
        pruned = training.prune_checkpoints(self.ctx.job_id, keep=self.params.keep_checkpoints)
        self.ctx.log(f"checkpoint saved at step {step}" + (" (final)" if final else "")
                     + (f"; pruned steps {', '.join(map(str, pruned))}" if pruned else ""))
        shutil.rmtree(directory, ignore_errors=True)

    def should_pause(self) -> bool:
        return shutting_down()


def _params(payload: TrainPayload) -> LoraParams:
    if payload.params is not None:
        return payload.params
    if payload.config_id is None:
        raise PermanentJobError("the training job names neither params nor a config")
    return params_of(get_config(payload.config_id))


def _resume_point(ctx: JobContext, work_dir: Path) -> Path | None:
    """Download the latest checkpoint of an earlier attempt, after discarding what came after it."""
    step = int((ctx.checkpoint or {}).get("step", 0))
    training.discard_after(ctx.job_id, step)
    if not step:
        return None
    ctx.log(f"resuming from the checkpoint at step {step}")
    return training.download_training_state(ctx.job_id, step, work_dir / "resume" / f"step-{step:06d}")


def _recommend(ctx: JobContext[TrainPayload], payload: TrainPayload) -> dict[str, Any]:
    """The recommended checkpoint (best likeness, guarded), promoted when the run asked for it."""
    recommendation = recommend_checkpoint(ctx.job_id)
    promoted = False
    if recommendation.lora_id is not None and payload.promote_recommended:
        training.promote_lora(recommendation.lora_id)
        promoted = True
    ctx.log(f"recommended checkpoint: step {recommendation.step} ({recommendation.reason})"
            + ("; promoted" if promoted else "") if recommendation.lora_id else
            f"no recommended checkpoint: {recommendation.reason}")
    return {**recommendation.as_dict(), "promoted": promoted}


def train(ctx: JobContext[TrainPayload]) -> dict[str, Any]:
    from workers.ml.training import LoraTrainer, TrainerConfig, TrainingPaused

    payload = ctx.payload
    params = _params(payload)
    job = get_job(ctx.job_id)
    settings = get_settings()
    dataset = get_dataset(payload.dataset_id)
    work_dir = settings.data_dir / "work" / "train" / ctx.job_id
    shutil.rmtree(work_dir, ignore_errors=True)  # scratch of a previous attempt on this machine

    ctx.stage("fetch dataset")
    examples = materialise_dataset(dataset, settings.data_dir / "cache" / "images")
    if not examples:
        raise PermanentJobError(f"dataset {dataset.name!r} has no images")
    resumed_from = int((ctx.checkpoint or {}).get("step", 0))
    resume_from = _resume_point(ctx, work_dir)
    scorer = None
    if params.sample_every:
        ctx.stage("face fingerprint")
        scorer = Scorer.for_character(job.character_id, training_dataset_id=dataset.id)
        ctx.log("samples are scored by likeness" if scorer else
                "samples are not scored by likeness: the character has no face fingerprint")
    hooks = JobHooks(ctx, job, params, scorer)
    config = TrainerConfig(
        params=params,
        base_model=training.resolve_base_model(params.base_model),
        sample_prompts=params.prompts_for(dataset.trigger_word) if params.sample_every else [],
        work_dir=work_dir,
        device=assigned_device(),
    )
    ctx.log(f"training {params.family} LoRA (rank {params.rank}) on {len(examples)} images of {dataset.name!r}, "
            f"base {config.base_model}")
    # The run's frozen base model fills this GPU until the run ends, but no other job can use it (it carries
    # this run's adapters and is freed at the end): routing counts the worker busy, not a holder (core/jobs/routing.py).
    report_held([config.base_model], source=f"training:{ctx.job_id}", reusable=False)
    try:
        result = LoraTrainer(config, examples, hooks).run(resume_from=resume_from)
    except TrainingPaused as paused:
        raise JobInterrupted(f"paused at a checkpoint for worker shutdown: {paused}") from None
    finally:
        report_held([], source=f"training:{ctx.job_id}", reusable=False)
        hooks.flush()
        shutil.rmtree(work_dir, ignore_errors=True)
    training.discard_training_states(ctx.job_id)
    recommendation = _recommend(ctx, payload) if scorer is not None else None
    return {
        "recommended": recommendation,
        "steps": result.steps, "epochs": result.epochs, "final_loss": result.final_loss,
        "eval_loss_start": result.eval_loss_start, "eval_loss_end": result.eval_loss_end,
        "seconds": round(result.seconds, 2), "steps_per_second": round(result.steps_per_second, 3),
        "device": result.device, "peak_memory_mb": round(result.peak_memory_mb, 1),
        "memory_kind": getattr(result, "memory_kind", ""), "lora_id": hooks.final_lora_id,
        "resumed_from": resumed_from,
        "images": len(examples),
    }
