"""Wan 2.x image-to-video through diffusers' ``WanImageToVideoPipeline``.

Loads a hub id (``Wan-AI/Wan2.2-TI2V-5B-Diffusers``, ``Wan-AI/Wan2.2-I2V-A14B-Diffusers``) or a local
diffusers folder with the same layout (the tests' tiny random Wan from workers/ml/tiny_models.py goes
through this very code). One pipeline per worker process stays loaded; a lock gives it to one job at a
time. No database, queue or storage here: workers/motion.py wires those in.

Prompts are encoded here rather than by the pipeline: diffusers cleans them with ``ftfy``, which the
studio does not install; the cleaning below is the rest of diffusers' (HTML entities, whitespace) and the
embeddings are built exactly as its ``_get_t5_prompt_embeds`` builds them (zero-padded to 512 tokens).
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.errors import PermanentJobError
from core.jobs.routing import report_held
from workers.ml.generation import cover_crop, dtype_name, resolve_device, resolve_dtype
from workers.ml.locks import MODEL_CONSTRUCTION_LOCK

FAMILY = "wan"
MAX_SEQUENCE_LENGTH = 512  # Wan's text length (umt5-xxl), as diffusers pads it


class MotionError(PermanentJobError):
    """A model that does not load, or a request it cannot run as given."""


@dataclass(frozen=True)
class MotionSettings:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    frames: int
    steps: int
    guidance: float
    seed: int


@dataclass
class LoadedWan:
    model: str
    device: str
    dtype: torch.dtype
    pipe: Any
    load_seconds: float
    cached: bool = False

    @property
    def dtype_label(self) -> str:
        return dtype_name(self.dtype)

    def check(self, settings: MotionSettings) -> None:
        """Refuse what the pipeline would silently round: the clip must be exactly what was asked for."""
        temporal = self.pipe.vae_scale_factor_temporal
        patch = self.pipe.transformer.config.patch_size
        spatial = self.pipe.vae_scale_factor_spatial * patch[1]
        if (settings.frames - 1) % temporal:
            raise MotionError(f"{settings.frames} frames: this model needs {temporal}k + 1 frames")
        if settings.width % spatial or settings.height % spatial:
            raise MotionError(f"{settings.width}×{settings.height}: this model needs sides that are multiples "
                              f"of {spatial}")

    def encode(self, text: str) -> torch.Tensor:
        text = re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()
        tokens = self.pipe.tokenizer([text], padding="max_length", max_length=MAX_SEQUENCE_LENGTH, truncation=True,
                                     add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        used = int(tokens.attention_mask.sum())
        encoder = self.pipe.text_encoder
        with torch.no_grad():
            hidden = encoder(tokens.input_ids.to(encoder.device),
                             tokens.attention_mask.to(encoder.device)).last_hidden_state[0, :used]
        padded = torch.cat([hidden, hidden.new_zeros(MAX_SEQUENCE_LENGTH - used, hidden.size(1))])
        return padded[None].to(self.device, self.pipe.transformer.dtype)

    def animate(self, image: Image.Image, settings: MotionSettings,
                on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
        """The clip as uint8 frames (frames, height, width, 3); its first frame is ``image`` (cover-cropped).
        ``on_step(done, total)`` runs after each denoising step; what it raises (a cancel) stops the run."""
        self.check(settings)

        def callback(_pipe: Any, index: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            if on_step is not None:
                on_step(index + 1, settings.steps)
            return tensors

        generator = torch.Generator(device="cpu").manual_seed(settings.seed)
        with torch.inference_mode():
            output = self.pipe(
                image=cover_crop(image, settings.width, settings.height),
                prompt_embeds=self.encode(settings.prompt),
                negative_prompt_embeds=self.encode(settings.negative_prompt) if settings.guidance > 1 else None,
                height=settings.height, width=settings.width, num_frames=settings.frames,
                num_inference_steps=settings.steps, guidance_scale=settings.guidance, generator=generator,
                output_type="np", callback_on_step_end=callback,
            )
        frames = np.asarray(output.frames[0])
        return (frames.clip(0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def load_wan(model: str, device: str | None = None) -> LoadedWan:
    """The pipeline from a hub id or a local diffusers folder; the VAE stays in float32 (Wan's advice)."""
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline

    device = resolve_device(device)
    dtype = resolve_dtype(device)
    source = str(Path(model).expanduser()) if Path(model).expanduser().is_dir() else model
    started = time.perf_counter()
    try:
        with MODEL_CONSTRUCTION_LOCK:  # see workers/ml/locks.py
            vae = AutoencoderKLWan.from_pretrained(source, subfolder="vae", dtype=torch.float32)
            pipe = WanImageToVideoPipeline.from_pretrained(source, vae=vae, dtype=dtype)
    except (OSError, ValueError) as error:
        raise MotionError(f"the motion model {model!r} does not load (a Wan image-to-video hub id or diffusers "
                          f"folder is expected; offline, only a local folder works): {error}") from error
    if pipe.vae.config.z_dim == 48 and pipe.transformer.config.image_dim is None and not pipe.config.expand_timesteps:
        # A TI2V-5B folder saved for text-to-video (WanPipeline): its image-to-video mode conditions through
        # the first latent frame's timestep (diffusers' "expand_timesteps" path), not through extra channels.
        pipe.register_to_config(expand_timesteps=True)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return LoadedWan(model=model, device=device, dtype=dtype, pipe=pipe, load_seconds=time.perf_counter() - started)


class _Cache:
    """One loaded model per worker process (a 5B video model fills a GPU); one job uses it at a time.
    What it holds is told to ``on_change`` after each load or loss, so motion jobs are routed to it."""

    def __init__(self, on_change: Callable[[list[str]], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.loaded: LoadedWan | None = None
        self.loads = 0
        self._on_change = on_change or (lambda models: report_held(models, source="motion"))

    @contextmanager
    def acquire(self, model: str, device: str | None = None) -> Iterator[LoadedWan]:
        with self.lock:
            wanted = resolve_device(device)
            if self.loaded is not None and (self.loaded.model, self.loaded.device) == (model, wanted):
                self.loaded.cached = True
            else:
                self.loaded = None  # free the old one before loading the next
                try:
                    self.loaded = load_wan(model, wanted)
                finally:
                    self._on_change([self.loaded.model] if self.loaded is not None else [])
                self.loads += 1
            yield self.loaded


_CACHE = _Cache()


def wan_cache() -> _Cache:
    return _CACHE
