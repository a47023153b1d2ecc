"""Sesame CSM (transformers ``CsmForConditionalGeneration``): a modern TTS that clones a reference clip.

Why CSM: Chatterbox and Qwen3-TTS, the engines the studio first looked at, need ``torchaudio`` at
import (Kaldi filterbanks) and pin other torch/transformers releases; no torchaudio build loads with
the studio's torch. CSM (Apache-2.0, ``sesame/csm-1b``) ships inside the pinned transformers: a Llama
backbone and depth decoder that write Mimi codec frames (12.5 per second, 24 kHz audio).

Cloning is CSM's "context": the reference clip (and, when known, what it says) is the conversation's
first turn, spoken by the same speaker as the sentence to say, so the model continues in that voice.
Each sentence is spoken on its own with the same context (``workers.ml.tts.CsmSynthesizer``), so the
sentence timings stay exact as for the other engines. Sampling is seeded per sentence: one sentence with one
clip always sounds the same.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InvalidInput, PermanentJobError
from workers.ml.locks import MODEL_CONSTRUCTION_LOCK

SAMPLE_RATE = 24_000
FRAME_RATE = 12.5
"""Mimi codec frames per second: each generated frame is 1,920 samples at 24 kHz."""
SPEAKER = "0"
MAX_SENTENCE_S = 20.0
# CSM stops on its own (an all-zero frame); this cap only bounds a sentence the model never ends: a
# generous allowance over the time the words take at the requested rate.
_HEADROOM = 1.6
_MIN_FRAMES = 13


@dataclass(frozen=True)
class Reference:
    """A cloned voice's reference: 24 kHz mono samples and what they say ("" when unknown)."""

    samples: np.ndarray
    transcript: str = ""


def max_frames(sentence: str, rate_wpm: float) -> int:
    """The most codec frames a sentence may take: its words at ``rate_wpm``, with headroom, capped."""
    words = max(1, len(sentence.split()))
    seconds = min(MAX_SENTENCE_S, words * 60.0 / rate_wpm * _HEADROOM + 0.5)
    return max(_MIN_FRAMES, math.ceil(seconds * FRAME_RATE))


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or Path(model).exists()


class CsmEngine:
    """One loaded CSM model (process-wide per model and device); ``synthesize`` takes the reference."""

    def __init__(self, model: str, device: str, *, seed: int = 0) -> None:
        import torch
        from transformers import AutoConfig, AutoProcessor, CsmForConditionalGeneration

        self.model_name = model
        self.device = device
        self.seed = seed
        self._lock = threading.Lock()
        if _looks_like_path(model) and not Path(model).expanduser().is_dir():
            raise PermanentJobError(f"could not load CSM model {model!r}: no such folder")
        source = str(Path(model).expanduser()) if _looks_like_path(model) else model
        try:
            config = AutoConfig.from_pretrained(source)
            if config.model_type != "csm":
                raise PermanentJobError(f"could not load CSM model {model!r}: it is a {config.model_type!r} model")
            self.processor: Any = AutoProcessor.from_pretrained(source)
            with MODEL_CONSTRUCTION_LOCK:
                self.model: Any = CsmForConditionalGeneration.from_pretrained(source)
        except (OSError, ValueError) as exc:
            raise PermanentJobError(f"could not load CSM model {model!r}: {exc}") from exc
        self.model.to(self.device).eval()
        self.sample_rate = int(self.model.config.codec_config.sampling_rate)
        if self.sample_rate != SAMPLE_RATE:
            raise PermanentJobError(f"CSM model {model!r} writes {self.sample_rate} Hz audio, expected {SAMPLE_RATE}")
        self._torch = torch

    def _conversation(self, text: str, reference: Reference | None) -> list[dict[str, Any]]:
        turns: list[dict[str, Any]] = []
        if reference is not None:
            content: list[dict[str, Any]] = [{"type": "audio", "path": reference.samples}]
            if reference.transcript:
                content.insert(0, {"type": "text", "text": reference.transcript})
            turns.append({"role": SPEAKER, "content": content})
        turns.append({"role": SPEAKER, "content": [{"type": "text", "text": text}]})
        return turns

    def speak(self, text: str, reference: Reference | None, *, frames: int) -> np.ndarray:
        torch = self._torch
        inputs = self.processor.apply_chat_template(
            self._conversation(text, reference), tokenize=True, return_dict=True
        ).to(self.device)
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with self._lock, torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(self.seed)
            audio = self.model.generate(**inputs, output_audio=True, max_new_tokens=frames, do_sample=True)
        samples: np.ndarray = audio[0].float().cpu().numpy().reshape(-1)
        if samples.size == 0:
            raise PermanentJobError(f"CSM said nothing for {text!r}")
        return samples


def reference_from_wav(samples: np.ndarray, sample_rate: int, transcript: str) -> Reference:
    """A stored reference clip (24 kHz mono WAV, see core.video.voice_clips) as the engine's input."""
    if sample_rate != SAMPLE_RATE:
        raise InvalidInput(f"a reference clip must be {SAMPLE_RATE} Hz (re-upload it), not {sample_rate} Hz")
    return Reference(samples=np.asarray(samples, dtype=np.float32), transcript=transcript)


_engines: dict[tuple[str, str], CsmEngine] = {}
_engines_lock = threading.Lock()


def load_csm(model: str, device: str) -> CsmEngine:
    """The process-wide CSM engine for (model, device), loaded on first use."""
    with _engines_lock:
        if (model, device) not in _engines:
            _engines[(model, device)] = CsmEngine(model, device)
        return _engines[(model, device)]


def clear_csm_cache() -> None:
    with _engines_lock:
        _engines.clear()
