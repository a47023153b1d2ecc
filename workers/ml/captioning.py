"""Image captioning with BLIP (``Salesforce/blip-image-captioning-*`` or a local folder of the same shape).

A worker loads a model once (``load_captioner`` caches per model and device) and captions images in
batches: one ``generate`` call per batch is what makes captioning a dataset fast on a GPU.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import InvalidInput, PermanentJobError
from workers.ml.locks import MODEL_CONSTRUCTION_LOCK

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class CaptionOptions:
    prompt: str = ""
    """Conditional prefix such as "a photo of"; the caption continues it (and the prefix is removed)."""
    max_length: int = 40
    """Maximum number of new tokens per caption."""
    num_beams: int = 1


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _looks_like_path(model: str) -> bool:
    # Hub ids are "owner/name"; anything absolute, relative to "." or "~", or existing is a folder.
    return model.startswith(("/", ".", "~")) or Path(model).exists()


class Captioner:
    """A BLIP captioning model and its processor, loaded once onto one device."""

    def __init__(self, model: str, device: str | None = None) -> None:
        import torch
        from transformers import AutoConfig, AutoProcessor, BlipForConditionalGeneration

        self.model_name = model
        self.device = device or default_device()
        # Half precision halves memory and roughly doubles throughput on GPUs; CPUs are slow at fp16.
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        if _looks_like_path(model) and not Path(model).expanduser().is_dir():
            raise PermanentJobError(f"could not load caption model {model!r}: no such folder")
        source = str(Path(model).expanduser()) if _looks_like_path(model) else model
        try:
            config = AutoConfig.from_pretrained(source)
            if config.model_type != "blip":
                raise PermanentJobError(
                    f"could not load caption model {model!r}: it is a {config.model_type!r} model, not BLIP"
                )
            self.processor = AutoProcessor.from_pretrained(source)
            # transformers v5 builds an empty tokenizer (special tokens only) instead of raising when the
            # tokenizer files are missing; every caption would silently come out empty.
            if len(self.processor.tokenizer) < config.text_config.vocab_size // 2:
                raise PermanentJobError(f"could not load caption model {model!r}: its tokenizer files are missing")
            with MODEL_CONSTRUCTION_LOCK:  # a training in another GPU slot may be building modules
                self.model = BlipForConditionalGeneration.from_pretrained(source, dtype=self.dtype)
        except (OSError, ValueError) as exc:
            # Not found, not a model folder, or a hub id while offline: retrying will not help.
            raise PermanentJobError(f"could not load caption model {model!r}: {exc}") from exc
        # transformers wraps Module.to, and its stub misreads the bound call (the model as its first argument).
        self.model.to(self.device).eval()  # type: ignore[arg-type]

    def caption(self, images: Sequence[Image.Image], options: CaptionOptions) -> list[str]:
        """Caption ``images`` in one ``generate`` call; greedy unless ``options.num_beams`` > 1."""
        import torch

        if not images:
            return []
        rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        prompt = " ".join(options.prompt.split())
        if prompt:
            # Same prompt for every image, so the batch needs no padding and matches one-by-one output.
            inputs = self.processor(images=rgb, text=[prompt] * len(rgb), return_tensors="pt")
        else:
            inputs = self.processor(images=rgb, return_tensors="pt")
        inputs = inputs.to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs, max_new_tokens=options.max_length, num_beams=options.num_beams, do_sample=False
            )
        texts = self.processor.batch_decode(output, skip_special_tokens=True)
        echoed = self._echoed_prompt(prompt)
        return [_strip_prefix(text, echoed) for text in texts]

    def _echoed_prompt(self, prompt: str) -> str:
        # The decoder continues the prompt's tokens, so the output starts with the prompt as the
        # tokenizer decodes it (lower-cased, punctuation spaced), not necessarily as the user typed it.
        if not prompt:
            return ""
        tokenizer = self.processor.tokenizer
        return tokenizer.decode(tokenizer(prompt, add_special_tokens=False)["input_ids"], skip_special_tokens=True)


def _strip_prefix(text: str, prefix: str) -> str:
    text = text.strip()
    if prefix and text.lower().startswith(prefix.lower()):
        text = text[len(prefix) :]
    return text.strip()


_cache: dict[tuple[str, str], Captioner] = {}
_cache_lock = threading.Lock()


def load_captioner(model: str, device: str | None = None) -> Captioner:
    """The process-wide captioner for (model, device), loaded on first use."""
    key = (model, device or default_device())
    with _cache_lock:
        # Loading under the lock: two worker threads asking at once must not load the model twice.
        if key not in _cache:
            _cache[key] = Captioner(model, key[1])
        return _cache[key]


def clear_captioner_cache() -> None:
    """Forget loaded captioners (tests, or freeing GPU memory for another job kind)."""
    with _cache_lock:
        _cache.clear()


def caption_in_batches(
    captioner: Captioner,
    images: Sequence[Image.Image],
    options: CaptionOptions,
    batch_size: int,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Caption ``images`` ``batch_size`` at a time, calling ``on_batch(done, total)`` after each batch.

    ``on_batch`` is where a job reports progress and checks for cancellation (by raising).
    """
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
    total = len(images)
    captions: list[str] = []
    for start in range(0, total, batch_size):
        captions.extend(captioner.caption(images[start : start + batch_size], options))
        if on_batch is not None:
            on_batch(len(captions), total)
    return captions
