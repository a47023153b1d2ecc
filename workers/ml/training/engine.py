"""LoraTrainer: LoRA / LoKr training of every model family as five named stages.

    load → prepare data → cache → train → save

In the spirit of diffusers' train_text_to_image_lora(_sdxl).py, minus accelerate and the long main():
all state lives on the trainer, the caller sees progress through hooks, and a checkpoint holds
everything needed to continue a run bit for bit (same batches, same noise, same optimizer state).
What differs per architecture (conditioning, latents, the objective, sampling, saving) is asked of
the run's family module (workers/ml/families/).
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.training.params import WEIGHTS_FILE
from workers.ml.families import Family, FamilyError, get_family
from workers.ml.locks import MODEL_CONSTRUCTION_LOCK
from workers.ml.training.api import (
    SampleImage,
    TrainerConfig,
    TrainerError,
    TrainingExample,
    TrainingHooks,
    TrainingPaused,
    TrainingResult,
)
from workers.ml.training.checkpoint import (
    checkpoint_dir,
    prune_checkpoints,
    read_state,
    restore_rng_states,
    rng_states,
    write_checkpoint,
)
from workers.ml.training.data import BatchPlan, PreparedImage, drops_caption, load_crop, prepare_images
from workers.ml.training.memory import MemoryTracker
from workers.ml.training.models import (
    Components,
    add_lora,
    build_lr_scheduler,
    build_optimizer,
    enable_gradient_checkpointing,
    load_components,
    load_lora_state_dicts,
    lora_state_dicts,
    resolve_precision,
    save_lora_weights,
    trainable_parameters,
)

CACHE_BATCH = 2  # images per VAE encode while caching: small, since a 1024² fp32 VAE encode is GBs
EVAL_TIMESTEPS = 4  # noise levels per eval image, one from each quarter of the schedule
RECENT_LOSSES = 10  # steps averaged into TrainingResult.final_loss


@dataclass
class EvalItem:
    """One image of the fixed eval batch with its fixed noise and timesteps."""

    index: int
    noise: torch.Tensor
    timesteps: torch.Tensor


class LoraTrainer:
    """Trains one LoRA. Call run(), or the stages one by one: load(), prepare_data(), cache(), train(), save()."""

    def __init__(self, config: TrainerConfig, examples: Sequence[TrainingExample], hooks: TrainingHooks) -> None:
        if not examples:
            raise TrainerError("there are no training images")
        self.config = config
        self.params = config.params
        self.examples = list(examples)
        self.hooks = hooks
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.family: Family = get_family(self.params.family)
        except FamilyError as error:
            raise TrainerError(str(error)) from None
        self.weight_dtype = torch.float32
        self._components: Components | None = None
        self._plan: BatchPlan | None = None
        self.images: list[PreparedImage] = []
        self.total_steps = 0
        # Filled by cache(): latents per image, the family's text conditioning (or token ids) per caption.
        self.latents: list[torch.Tensor] = []
        self.text_cache: dict[str, Any] = {}
        self.eval_set: list[EvalItem] = []
        # Filled by train().
        self.optimizer: torch.optim.Optimizer | None = None
        self.lr_scheduler: Any = None
        self.grad_scaler: torch.amp.GradScaler | None = None
        self.noise_generator: torch.Generator | None = None
        self.step = 0
        self.losses: list[float] = []
        self.eval_loss_start = math.nan
        self.eval_loss_end = math.nan
        self.steps_this_run = 0
        self.train_seconds = 0.0
        self._pipeline: Any = None
        self._cached = False

    # ----------------------------------------------------------------------------------- stages

    def run(self, resume_from: Path | None = None) -> TrainingResult:
        """All stages; from a checkpoint folder when ``resume_from`` is given."""
        started = time.perf_counter()
        memory = MemoryTracker(self.device)
        self.load()
        self.prepare_data()
        self.cache()
        self.train(resume_from)
        lora_path = self.save()
        return TrainingResult(
            steps=self.step,
            epochs=math.ceil(self.total_steps / self.plan.batches_per_epoch),
            final_loss=float(np.mean(self.losses[-RECENT_LOSSES:])) if self.losses else math.nan,
            eval_loss_start=self.eval_loss_start,
            eval_loss_end=self.eval_loss_end,
            lora_path=lora_path,
            seconds=time.perf_counter() - started,
            steps_per_second=self.steps_this_run / self.train_seconds if self.train_seconds else 0.0,
            device=self.device,
            peak_memory_mb=memory.peak_mb(),
            memory_kind=memory.kind,
        )

    def load(self) -> None:
        """Frozen model in the run's precision, LoRA adapters in fp32."""
        self.hooks.stage("load")
        self.weight_dtype = resolve_precision(self.params.mixed_precision, self.device, self.hooks.log)
        if self._on_cuda:
            # TF32 matmuls (cuDNN convolutions use it by default): faster fp32 parts on Ampere+, ample precision.
            torch.set_float32_matmul_precision("high")
        with MODEL_CONSTRUCTION_LOCK:  # see workers/ml/locks.py: module building is process-global state
            components = load_components(self.config.base_model, self.params.family, device=self.device,
                                         weight_dtype=self.weight_dtype, quantize=self.params.quantize_base)
            add_lora(components, self.params)
        if self.params.gradient_checkpointing:
            enable_gradient_checkpointing(components)
        if self._on_cuda:
            if components.denoiser_name == "unet":  # convolutions; the DiTs' linear layers gain nothing
                components.denoiser.to(memory_format=torch.channels_last)
        self._components = components
        trainable = sum(p.numel() for m in components.lora_modules().values() for p in trainable_parameters(m))
        self.hooks.log(f"loaded {self.config.base_model} ({self.params.family}) on {self.device} in "
                       f"{str(self.weight_dtype).removeprefix('torch.')}; {trainable:,} {self.params.adapter} "
                       f"parameters (rank {self.params.rank}, alpha {self.params.alpha:g})")
        if self.family.spec.objective == "flow" and self.params.min_snr_gamma is not None:
            self.hooks.log("Min-SNR weighting is for DDPM schedules; flow matching trains with a plain MSE")

    def prepare_data(self) -> None:
        """Aspect-ratio buckets and the deterministic batch plan; reads image headers only."""
        self.hooks.stage("prepare data")
        self.images = prepare_images(self.examples, self.params.resolution)
        self._plan = BatchPlan([image.bucket for image in self.images], self.params.batch_size, self.params.seed)
        per_epoch = self._plan.batches_per_epoch
        self.total_steps = self.params.steps if self.params.duration_unit == "steps" else self.params.epochs * per_epoch
        counts: dict[tuple[int, int], int] = defaultdict(int)
        for image in self.images:
            counts[image.bucket] += 1
        buckets = ", ".join(f"{w}×{h}: {n}" for (w, h), n in sorted(counts.items()))
        self.hooks.log(f"{len(self.images)} images in buckets {buckets}; {per_epoch} batches per epoch, "
                       f"{self.total_steps} steps")

    def cache(self) -> None:
        """VAE latents of every image and text conditioning of every caption, computed once."""
        self.hooks.stage("cache")
        components = self.components
        started = time.perf_counter()
        self.latents = self._encode_latents()
        captions = {image.caption for image in self.images} | {""}
        # Families that drop their text encoder after caching render samples from cached embeddings.
        captions |= set(self.config.sample_prompts)
        with self._autocast():
            self.text_cache = self.family.cache_captions(components, sorted(captions))
        self.family.release_text_encoders(components)
        self.eval_set = self._make_eval_set()
        self._cached = True
        self._offload_frozen()
        self.hooks.log(f"cached {len(self.latents)} latents and {len(captions)} captions in "
                       f"{time.perf_counter() - started:.1f} s")

    def train(self, resume_from: Path | None = None) -> None:
        """The optimisation loop, from step 1 or from the step after a checkpoint."""
        self.hooks.stage("train")
        self._require_cache()
        self._setup_optimisation()
        if resume_from is not None:
            self._restore(Path(resume_from))
        else:
            self.eval_loss_start = self.eval_loss()
            self.hooks.log(f"eval loss before training: {self.eval_loss_start:.4f}")
        started = time.perf_counter()
        try:
            while self.step < self.total_steps:
                self._advance()
        finally:
            self.train_seconds = time.perf_counter() - started
        self.eval_loss_end = self.eval_loss()
        self.hooks.log(f"eval loss after {self.step} steps: {self.eval_loss_end:.4f} "
                       f"(started at {self.eval_loss_start:.4f})")

    def save(self) -> Path:
        """The final checkpoint; returns its pytorch_lora_weights.safetensors."""
        self.hooks.stage("save")
        return self._save_checkpoint(self.step, final=True) / WEIGHTS_FILE

    # ----------------------------------------------------------------------------- public tools

    @torch.no_grad()
    def eval_loss(self) -> float:
        """Unweighted prediction MSE on the fixed eval images, noise and timesteps (comparable across runs)."""
        self._require_cache()
        components = self.components
        # Chunks of the training batch size, so evaluating never needs more memory than a training step.
        chunk = self.params.batch_size
        with self._eval_mode():
            losses: list[float] = []
            for item in self.eval_set:
                for start in range(0, len(item.timesteps), chunk):
                    timesteps = item.timesteps[start:start + chunk].to(self.device)
                    noise = item.noise[start:start + chunk].to(self.device)
                    latents = self.latents[item.index].to(self.device)[None].expand(len(timesteps), -1, -1, -1)
                    noisy = self.family.add_noise(components, latents, noise, timesteps)
                    prediction = self._predict(noisy, timesteps, [item.index] * len(timesteps), step=None)
                    errors = F.mse_loss(prediction.float(), self._target(latents, noise, timesteps), reduction="none")
                    losses += errors.mean(dim=[1, 2, 3]).tolist()
        return float(np.mean(losses))

    def sample(self) -> list[SampleImage]:
        """One image per sample prompt with the LoRA as it is now; same seed every time, so steps compare."""
        if not self.config.sample_prompts:
            return []
        pipeline = self._sample_pipeline()
        images = []
        with self._eval_mode(), self._frozen_on_device():
            for index, prompt in enumerate(self.config.sample_prompts):
                generator = torch.Generator(self.device).manual_seed(self.params.sample_seed)
                with torch.no_grad(), self._autocast():
                    picture = self.family.render_sample(
                        self.components, pipeline, prompt, steps=self.params.sample_steps,
                        guidance=self.params.sample_guidance, generator=generator, width=self.params.resolution,
                        height=self.params.resolution, cache=self.text_cache)
                buffer = io.BytesIO()
                picture.save(buffer, format="PNG")
                images.append(SampleImage(prompt_index=index, prompt=prompt, seed=self.params.sample_seed,
                                          png=buffer.getvalue()))
        return images

    @property
    def components(self) -> Components:
        if self._components is None:
            raise RuntimeError("call load() first")
        return self._components

    @property
    def plan(self) -> BatchPlan:
        if self._plan is None:
            raise RuntimeError("call prepare_data() first")
        return self._plan

    # ------------------------------------------------------------------------------------ caching

    def _encode_latents(self) -> list[torch.Tensor]:
        vae = self.components.vae
        by_bucket: dict[tuple[int, int], list[PreparedImage]] = defaultdict(list)
        for image in self.images:
            by_bucket[image.bucket].append(image)
        latents: list[torch.Tensor | None] = [None] * len(self.images)
        with torch.no_grad():
            for group in by_bucket.values():
                for start in range(0, len(group), CACHE_BATCH):
                    chunk = group[start:start + CACHE_BATCH]
                    pixels = torch.from_numpy(np.stack([load_crop(image) for image in chunk])).permute(0, 3, 1, 2)
                    # The distribution's mean, not a sample: deterministic, so a resumed run sees the same latents.
                    encoded = self.family.encode_latents(self.components, pixels.to(self.device, dtype=vae.dtype))
                    for image, latent in zip(chunk, encoded, strict=True):
                        latents[image.index] = latent.float().cpu()
        return [latent for latent in latents if latent is not None]

    def _make_eval_set(self) -> list[EvalItem]:
        seed = int(np.random.SeedSequence([self.params.seed, 2]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(seed)
        items = []
        for index in range(min(self.config.eval_examples, len(self.images))):
            noise = torch.randn((EVAL_TIMESTEPS, *self.latents[index].shape), generator=generator)
            # One timestep from each quarter of the schedule: less variance than uniform draws.
            offsets = torch.rand(EVAL_TIMESTEPS, generator=generator)
            fractions = (torch.arange(EVAL_TIMESTEPS) + offsets) / EVAL_TIMESTEPS
            timesteps = self.family.eval_timesteps(self.components, self.latents[index].shape, fractions)
            items.append(EvalItem(index=index, noise=noise, timesteps=timesteps))
        return items

    # ----------------------------------------------------------------------------------- training

    def _setup_optimisation(self) -> None:
        components = self.components
        self.optimizer = build_optimizer(self.params, components, self.hooks.log)
        self.lr_scheduler = build_lr_scheduler(self.params, self.optimizer, self.total_steps)
        # fp16 gradients underflow without loss scaling; bf16 and fp32 need none.
        self.grad_scaler = torch.amp.GradScaler("cuda") if self.weight_dtype == torch.float16 else None
        self.noise_generator = torch.Generator(self.device).manual_seed(self.params.seed)
        self.step = 0
        self.losses = []
        self.steps_this_run = 0
        for module in components.lora_modules().values():
            module.train()

    def _advance(self) -> None:
        """One optimizer step, then its hooks: samples, checkpoint, pause."""
        step = self.step + 1
        loss, lr = self._train_step(step)
        self.step = step
        self.steps_this_run += 1
        self.losses = [*self.losses[-(RECENT_LOSSES - 1):], loss]
        self.hooks.on_step(step, self.total_steps, self.plan.epoch_of(step) + 1, loss, lr)
        final = step == self.total_steps
        every = self.params.sample_every
        # The last step always gets samples (when sampling is on): they show what the LoRA ended as.
        if every and self.config.sample_prompts and (step % every == 0 or final):
            self.hooks.on_samples(step, self.sample())
        if final:
            return  # save() writes the final checkpoint; pausing now would only delay that
        saved = None
        if step % self.params.checkpoint_every == 0:
            saved = self._save_checkpoint(step, final=False)
        if self.hooks.should_pause():
            raise TrainingPaused(step, saved or self._save_checkpoint(step, final=False))

    def _train_step(self, step: int) -> tuple[float, float]:
        """Forward, loss, backward and the optimizer update for one batch; returns (loss, lr used)."""
        components, optimizer = self.components, self.optimizer
        assert optimizer is not None and self.noise_generator is not None
        indices = self.plan.batch(step)
        latents = torch.stack([self.latents[i] for i in indices]).to(self.device)
        generator = self.noise_generator
        noise = torch.randn(latents.shape, generator=generator, device=self.device)
        if self.params.noise_offset:
            # Offset noise shifts whole channels, so the model learns to change an image's mean brightness.
            noise += self.params.noise_offset * torch.randn((*latents.shape[:2], 1, 1), generator=generator,
                                                            device=self.device)
        timesteps = self.family.train_timesteps(components, latents, generator, self.params)
        noisy = self.family.add_noise(components, latents, noise, timesteps)
        prediction = self._predict(noisy, timesteps, indices, step=step)
        loss = self._loss(prediction, self._target(latents, noise, timesteps), timesteps)

        lr = float(self.lr_scheduler.get_last_lr()[0])
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(optimizer)
        else:
            loss.backward()
        if self.params.max_grad_norm > 0:
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(parameters, self.params.max_grad_norm)
        if self.grad_scaler is not None:
            self.grad_scaler.step(optimizer)
            self.grad_scaler.update()
        else:
            optimizer.step()
        self.lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach().item()), lr

    def _predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, indices: list[int],
                 step: int | None) -> torch.Tensor:
        with self._autocast():
            conditioning = self._conditioning(indices, step)
            return self.family.predict(self.components, noisy, timesteps, conditioning)

    def _target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.family.target(self.components, latents, noise, timesteps).float()

    def _loss(self, prediction: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """MSE per sample, weighted as the family's objective says (SD: Min-SNR when γ is set)."""
        per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=[1, 2, 3])
        weights = self.family.loss_weights(self.components, timesteps, self.params)
        return per_sample.mean() if weights is None else (per_sample * weights).mean()

    def _conditioning(self, indices: list[int], step: int | None) -> dict[str, Any]:
        """The family's conditioning of a batch (empty captions where caption dropout hits)."""
        params = self.params
        captions = [
            "" if step is not None and drops_caption(params.seed, step, position, params.caption_dropout)
            else self.images[index].caption
            for position, index in enumerate(indices)
        ]
        return self.family.conditioning(self.components, [self.text_cache[c] for c in captions],
                                        [self.images[i] for i in indices], self.device)

    # -------------------------------------------------------------------------- checkpoints

    def _fingerprint(self) -> dict[str, Any]:
        """What must not change between a checkpoint and its resume, or the run would not continue exactly."""
        p = self.params
        return {"family": p.family, "adapter": p.adapter, "rank": p.rank, "alpha": float(p.alpha),
                "train_text_encoder": p.train_text_encoder,
                "batch_size": p.batch_size, "seed": p.seed, "resolution": p.resolution, "total_steps": self.total_steps,
                "buckets": [list(image.bucket) for image in self.images]}

    def _save_checkpoint(self, step: int, *, final: bool) -> Path:
        assert self.optimizer is not None and self.noise_generator is not None
        state = {
            "step": step,
            "epoch": self.plan.epoch_of(step) + 1 if step else 0,
            "total_steps": self.total_steps,
            "fingerprint": self._fingerprint(),
            "lora": lora_state_dicts(self.components),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "grad_scaler": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "rng": rng_states(self.device),
            "noise_generator": self.noise_generator.get_state(),
            "eval_loss_start": self.eval_loss_start,
            "recent_losses": list(self.losses),
        }
        directory = write_checkpoint(checkpoint_dir(self.config.work_dir, step),
                                     lambda folder: save_lora_weights(self.components, folder), state)
        self.hooks.on_checkpoint(step, directory, final)
        if not final:
            prune_checkpoints(self.config.work_dir, self.params.keep_checkpoints)
        return directory

    def _restore(self, directory: Path) -> None:
        assert self.optimizer is not None and self.noise_generator is not None
        state = read_state(directory)
        saved, current = state["fingerprint"], self._fingerprint()
        changed = sorted(key for key in current if saved.get(key) != current[key])
        if changed:
            raise TrainerError(f"cannot resume from {directory.name}: it was trained with different "
                               f"{', '.join(changed)}")
        load_lora_state_dicts(self.components, state["lora"])
        # The optimizer's saved param groups carry the current learning rates; the scheduler its position.
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.grad_scaler is not None and state["grad_scaler"] is not None:
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        restore_rng_states(state["rng"])
        self.noise_generator.set_state(state["noise_generator"])
        self.step = int(state["step"])
        self.losses = [float(loss) for loss in state["recent_losses"]]
        self.eval_loss_start = float(state["eval_loss_start"])
        self.hooks.log(f"resumed at step {self.step} of {self.total_steps} from {directory.name}")

    # ------------------------------------------------------------------------------- plumbing

    @property
    def _on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def _require_cache(self) -> None:
        if not self._cached:
            raise RuntimeError("call cache() first")

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self._on_cuda and self.weight_dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.weight_dtype)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        modules = list(self.components.lora_modules().values())
        for module in modules:
            module.eval()
        try:
            yield
        finally:
            for module in modules:
                module.train()

    def _frozen_modules(self) -> list[torch.nn.Module]:
        components = self.components
        return [components.vae, *(e for e in components.text_encoders if e not in components.trained_text_encoders)]

    def _offload_frozen(self) -> None:
        """On a GPU, park the VAE and frozen text encoders in CPU memory between samples: training needs neither."""
        if self._on_cuda:
            for module in self._frozen_modules():
                module.to("cpu")
            torch.cuda.empty_cache()

    @contextlib.contextmanager
    def _frozen_on_device(self) -> Iterator[None]:
        if self._on_cuda:
            for module in self._frozen_modules():
                module.to(self.device)
        try:
            yield
        finally:
            self._offload_frozen()

    def _sample_pipeline(self) -> Any:
        """The family's pipeline around the in-memory modules (adapter active) and the model's own scheduler."""
        if self._pipeline is None:
            with MODEL_CONSTRUCTION_LOCK:
                self._pipeline = self.family.sample_pipeline(self.components, self.config.base_model)
            self._pipeline.set_progress_bar_config(disable=True)
        return self._pipeline
