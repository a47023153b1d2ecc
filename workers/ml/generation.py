"""The diffusers side of image generation: cached pipelines, schedulers, LoRA adapters, batched renders.

No database, queue or storage here; workers/generation.py wires those in. The pieces::

    with pipeline_cache().acquire(model, "sd15", device="cuda:0") as loaded:   # held for the whole job
        with loaded.adapters([LoraAdapter("lora_3", path, 0.8)]):           # always unloaded again
            for batch in loaded.render(RenderSettings(...), indexes=[0, 1, 2], on_step=...):
                ...  # batch.indexes, batch.images (PIL), stored as each batch finishes

A base pipeline is loaded once per worker process and kept in a small LRU cache
(``STUDIO_GENERATION_PIPELINES``, default 1). Several GPU-slot threads share a process, so each
cached pipeline has a lock held by one job at a time: a job's adapters and scheduler are never
seen by another job. Image ``i`` of a request is drawn with its own generator seeded ``seed + i``,
so it is the same picture whatever batch it lands in (and a resumed job makes the same images).
"""

from __future__ import annotations

import gc
import inspect
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from core.config import get_settings
from core.errors import PermanentJobError
from core.generation.templates import schedulers_for
from core.jobs.routing import report_held
from workers.ml import lora_import, lora_import_dit
from workers.ml.families import FAMILY_MODULES, FamilyError, get_family
from workers.ml.locks import MODEL_CONSTRUCTION_LOCK
from workers.ml.lycoris import WeightPatches, is_merge_file, merge_file

_logger = logging.getLogger("studio.generation")

# core.generation.templates.SCHEDULERS key → (diffusers class, extra from_config arguments).
SCHEDULER_CLASSES: dict[str, tuple[str, dict[str, Any]]] = {
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "dpmpp_2m_sde_karras": ("DPMSolverMultistepScheduler",
                            {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    # Built from the model's own config: keeps the family's shift (fixed or resolution-dependent).
    "flow_euler": ("FlowMatchEulerDiscreteScheduler", {}),
}
PIPELINE_CLASSES = {name: family.pipeline_class for name, family in FAMILY_MODULES.items()}
IMG2IMG_CLASSES = {name: family.img2img_class for name, family in FAMILY_MODULES.items() if family.img2img_class}


class GenerationError(PermanentJobError):
    """A request that cannot work as given (unknown scheduler, model of the other family, …)."""


# --------------------------------------------------------------------------------------- choices


def resolve_device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_dtype(device: str) -> torch.dtype:
    """bf16 on a CUDA GPU that has it, else fp16 there; fp32 on the CPU (half kernels are slow or missing).

    ``STUDIO_GENERATION_DTYPE`` (fp32, fp16, bf16) overrides it on a GPU, e.g. to benchmark fp16.
    """
    if not device.startswith("cuda"):
        return torch.float32
    wanted = get_settings().generation_dtype
    if wanted in _DTYPES and not (wanted == "bf16" and not torch.cuda.is_bf16_supported()):
        return _DTYPES[wanted]
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def dtype_name(dtype: torch.dtype) -> str:
    return next((name for name, value in _DTYPES.items() if value == dtype), str(dtype))


def make_scheduler(key: str, config: Any) -> Any:
    """A fresh diffusers scheduler for a studio scheduler key, built from the model's own scheduler config."""
    import diffusers

    try:
        class_name, extra = SCHEDULER_CLASSES[key]
    except KeyError:
        raise GenerationError(f"unknown scheduler {key!r}; known: {', '.join(SCHEDULER_CLASSES)}") from None
    return getattr(diffusers, class_name).from_config(config, **extra)


def cover_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """Resize to cover width×height (keeping the aspect ratio), then crop the centre."""
    image = image.convert("RGB")
    scale = max(width / image.width, height / image.height)
    size = (max(width, math.ceil(image.width * scale)), max(height, math.ceil(image.height * scale)))
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def _compile_enabled() -> bool:
    return get_settings().generation_compile


def _cache_size() -> int:
    return get_settings().generation_pipelines


# --------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class LoraAdapter:
    """One LoRA file to apply at a strength; ``name`` is its adapter name (unique within a job)."""

    name: str
    path: Path
    strength: float


@dataclass(frozen=True)
class RenderSettings:
    """What every image of a request shares; image ``i`` uses seed ``seed + i``."""

    prompt: str
    negative_prompt: str
    steps: int
    cfg: float
    width: int
    height: int
    scheduler: str
    seed: int
    batch_size: int = 1
    init_image: Image.Image | None = None  # img2img: start from this picture (any size; cover-cropped)
    strength: float = 0.6  # img2img: how far from the init image
    reference_images: tuple[Image.Image, ...] = ()  # reference editing (FLUX.2 [klein]): made from these


@dataclass
class StepEvent:
    """One finished denoising step of one batch, for progress reports."""

    batch_indexes: list[int]
    step: int  # 1-based
    total_steps: int


@dataclass
class RenderedBatch:
    indexes: list[int]
    images: list[Image.Image]
    seconds: float


# --------------------------------------------------------------------------------------- pipelines


@dataclass
class LoadedPipeline:
    """A base pipeline in memory and what a job needs to use it alone."""

    key: tuple[str, str, str, str, bool]
    family: str
    device: str
    dtype: torch.dtype
    pipe: Any
    base_scheduler_config: Any
    load_seconds: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    cached: bool = False  # True when the current holder found it already loaded by an earlier job
    acquisitions: int = 0
    _img2img: Any = None
    _patches: WeightPatches = field(default_factory=WeightPatches)  # imported LoKr/LoHa merged for the job

    @property
    def model(self) -> str:
        return self.key[0]

    # ---- adapters

    def adapter_names(self) -> list[str]:
        listed = self.pipe.get_list_adapters() if hasattr(self.pipe, "get_list_adapters") else {}
        return sorted({name for names in listed.values() for name in names})

    def unload_adapters(self) -> None:
        """Remove every LoRA layer and merged LoKr/LoHa: the modules are the base model's again, exactly."""
        if self.adapter_names():
            self.pipe.unload_lora_weights()
        self._patches.restore()

    @contextmanager
    def adapters(self, loras: Sequence[LoraAdapter]) -> Iterator[None]:
        """Load the LoRAs with their strengths for the block; always unloaded after, even on error.

        Imported LyCORIS files (LoKr/LoHa) are merged into the weights at their strength first (see
        workers/ml/lycoris.py), so they are found on the plain modules; the others become peft adapters."""
        self.unload_adapters()  # never inherit what an interrupted job might have left
        try:
            merged = [lora for lora in loras if self._is_merged(lora)]
            for lora in merged:
                try:
                    merge_file(lora.path, lora.strength, self._patches, self._resolver())
                except (ValueError, KeyError, AttributeError, RuntimeError, OSError) as error:
                    raise GenerationError(f"LoRA {lora.name} does not load into {self.model}: {error}") from error
            layered = [lora for lora in loras if lora not in merged]
            if layered:
                for lora in layered:
                    with MODEL_CONSTRUCTION_LOCK:  # peft builds layers: see workers/ml/locks.py
                        try:
                            get_family(self.family).load_lora(self.pipe, lora.path, adapter_name=lora.name)
                        except (ValueError, KeyError, RuntimeError, OSError) as error:
                            raise GenerationError(f"LoRA {lora.name} does not load into {self.model}: "
                                                  f"{error}") from error
                self.pipe.set_adapters([lora.name for lora in layered],
                                       adapter_weights=[float(lora.strength) for lora in layered])
            yield
        finally:
            self.unload_adapters()

    def _is_merged(self, lora: LoraAdapter) -> bool:
        try:
            return is_merge_file(lora.path)
        except OSError:
            return False  # peft's loader reports the missing or unreadable file

    def _resolver(self) -> Callable[[str], Any]:
        """A merged file's module stem → the module (kohya names for SD, ``transformer.<path>`` for the DiTs)."""
        if hasattr(self.pipe, "unet"):
            return lora_import.merge_resolver(self.pipe, self.family)
        return lora_import_dit.merge_resolver(self.pipe)

    # ---- rendering

    def _pipeline_for(self, settings: RenderSettings) -> Any:
        """The text-to-image pipeline, or its img2img sibling (same modules) when there is an init image."""
        if settings.init_image is None:
            return self.pipe
        if self.family not in IMG2IMG_CLASSES:
            raise GenerationError(f"{self.family} has no img2img pipeline")
        if self._img2img is None:
            import diffusers

            with MODEL_CONSTRUCTION_LOCK:
                self._img2img = getattr(diffusers, IMG2IMG_CLASSES[self.family]).from_pipe(self.pipe)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    def render(self, settings: RenderSettings, indexes: Sequence[int],
               on_step: Callable[[StepEvent], None] | None = None) -> Iterator[RenderedBatch]:
        """Images ``indexes`` of a request, ``settings.batch_size`` per pipeline call, yielded batch by batch.

        ``on_step`` runs after each denoising step; an exception it raises (a cancel) stops the
        render between steps, and the batches already yielded stay the caller's.
        """
        if settings.scheduler not in SCHEDULER_CLASSES:
            raise GenerationError(f"unknown scheduler {settings.scheduler!r}")
        if settings.scheduler not in schedulers_for(self.family):
            raise GenerationError(f"{self.family} cannot sample with {settings.scheduler!r}; use one of: "
                                  f"{', '.join(schedulers_for(self.family))}")
        pipe = self._pipeline_for(settings)
        pipe.scheduler = make_scheduler(settings.scheduler, self.base_scheduler_config)  # fresh per job
        extra: dict[str, Any] = {"width": settings.width, "height": settings.height}
        if settings.reference_images:
            if get_family(self.family).spec.reference_images < len(settings.reference_images):
                raise GenerationError(f"{self.family} cannot take {len(settings.reference_images)} reference image(s)")
            extra["image"] = list(settings.reference_images)
        if settings.init_image is not None:
            if int(settings.steps * settings.strength) < 1:
                raise GenerationError(f"img2img with strength {settings.strength:g} runs no step of {settings.steps}; "
                                      "raise the steps or the strength")
            # The output has the init image's size, so it is brought to width × height first.
            extra = {"image": cover_crop(settings.init_image, settings.width, settings.height),
                     "strength": settings.strength}
            if "height" in inspect.signature(pipe.__call__).parameters:
                # The DiTs' img2img pipelines default to their native size, not the image's.
                extra.update(width=settings.width, height=settings.height)
        indexes = list(indexes)
        size = max(1, settings.batch_size)
        for start in range(0, len(indexes), size):
            batch = indexes[start:start + size]
            # One generator per image, seeded seed + index: each image depends on its own seed only.
            generators = [torch.Generator(self.device).manual_seed(settings.seed + i) for i in batch]

            def callback(pipeline: Any, step_index: int, timestep: Any, kwargs: dict[str, Any],
                         batch: list[int] = batch) -> dict[str, Any]:
                if on_step is not None:
                    on_step(StepEvent(batch_indexes=batch, step=step_index + 1,
                                      total_steps=int(getattr(pipeline, "num_timesteps", 0) or settings.steps)))
                return kwargs

            started = time.perf_counter()
            with torch.inference_mode():
                output = pipe(
                    **get_family(self.family).call_arguments(settings.prompt, settings.negative_prompt, settings.cfg),
                    num_inference_steps=settings.steps, num_images_per_prompt=len(batch), generator=generators,
                    callback_on_step_end=callback, output_type="pil", **extra,
                )
            if self.device.startswith("cuda"):
                torch.cuda.synchronize(self.device)
            yield RenderedBatch(indexes=batch, images=list(output.images), seconds=time.perf_counter() - started)


def _load(model: str, family: str, device: str, dtype: torch.dtype, compile_unet: bool) -> Any:
    if family not in FAMILY_MODULES:
        raise GenerationError(f"unknown model family {family!r}; known: {', '.join(FAMILY_MODULES)}")
    with MODEL_CONSTRUCTION_LOCK:
        try:
            pipe = get_family(family).load_pipeline(model, dtype=dtype)
        except FamilyError as error:
            raise GenerationError(str(error)) from error
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if compile_unet:
        if hasattr(pipe, "unet"):
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.unet = torch.compile(pipe.unet)
        else:
            pipe.transformer = torch.compile(pipe.transformer)
    return pipe


class PipelineCache:
    """Base pipelines by (model, family, dtype, device, compiled), least recently used evicted first."""

    def __init__(self, max_size: int | None = None,
                 on_change: Callable[[list[str]], None] = report_held) -> None:
        self._max_size = max_size
        self._on_change = on_change  # told the models held after every load and eviction (GPU routing)
        self._entries: OrderedDict[tuple[str, str, str, str, bool], LoadedPipeline] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    @property
    def max_size(self) -> int:
        return self._max_size or _cache_size()

    def keys(self) -> list[tuple[str, str, str, str, bool]]:
        with self._lock:
            return list(self._entries)

    def _get(self, model: str, family: str, device: str, dtype: torch.dtype) -> LoadedPipeline:
        compile_unet = _compile_enabled()
        key = (model, family, dtype_name(dtype), device, compile_unet)
        with self._lock:  # held while loading: two threads never load the same model twice
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            evicted = False
            while len(self._entries) >= self.max_size:
                old_key, _ = self._entries.popitem(last=False)
                _logger.info("pipeline cache: evicted %s", old_key[0])
                evicted = True
            if evicted:
                gc.collect()  # the evicted pipeline is freed once no job uses it any more
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
            started = time.perf_counter()
            try:
                pipe = _load(model, family, device, dtype, compile_unet)
            except BaseException:
                self._on_change([k[0] for k in self._entries])  # what was evicted is gone all the same
                raise
            entry = LoadedPipeline(key=key, family=family, device=device, dtype=dtype, pipe=pipe,
                                   base_scheduler_config=pipe.scheduler.config,
                                   load_seconds=time.perf_counter() - started)
            self._entries[key] = entry
            self.loads += 1
            held = [k[0] for k in self._entries]
        self._on_change(held)
        return entry

    @contextmanager
    def acquire(self, model: str, family: str, *, device: str | None = None,
                dtype: torch.dtype | None = None) -> Iterator[LoadedPipeline]:
        """The cached pipeline, loaded if needed, held by this caller alone for the block."""
        device = resolve_device(device)
        dtype = dtype or resolve_dtype(device)
        entry = self._get(model, family, device, dtype)
        with entry.lock:
            entry.acquisitions += 1
            entry.cached = entry.acquisitions > 1
            yield entry


_CACHE: PipelineCache | None = None
_CACHE_LOCK = threading.Lock()


def pipeline_cache() -> PipelineCache:
    """The worker process's pipeline cache."""
    global _CACHE
    with _CACHE_LOCK:
        if _CACHE is None:
            _CACHE = PipelineCache()
        return _CACHE
