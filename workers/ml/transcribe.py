"""Word timestamps of the voice-over with openai-whisper, for subtitles that follow the actual speech.

``settings.whisper_model`` names the model: a size (``base``, ``small``…; downloaded once into
whisper's cache), or a path to a checkpoint ``.pt`` such as the tiny random one
``workers/ml/tiny_models.py`` builds. A worker loads each model once per device.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from core.errors import InvalidInput, PermanentJobError
from core.video.options import Word
from workers.ml.locks import MODEL_CONSTRUCTION_LOCK

SAMPLE_RATE = 16_000  # whisper resamples everything to 16 kHz mono
# The smallest released model ("tiny") is 384 wide; anything narrower is a test model with random
# weights, which decodes garbage until its context is full (minutes): cap it unless told otherwise.
_TOY_WIDTH = 384
TOY_MAX_TOKENS = 16

_SPOKEN = re.compile(r"\w")


class WhisperModel:
    """A whisper model on one device; ``transcribe`` calls on it run one at a time (whisper installs
    hooks on the model for word timestamps)."""

    def __init__(self, model: str, device: str | None = None, *, download_root: str | None = None) -> None:
        import torch
        import whisper

        self.model_name = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        name = model
        if model not in whisper.available_models():
            path = Path(model).expanduser()
            if not path.is_file():
                raise PermanentJobError(
                    f"could not load whisper model {model!r}: not a model size "
                    f"({', '.join(whisper.available_models())}) nor a checkpoint file"
                )
            name = str(path)
        try:
            with MODEL_CONSTRUCTION_LOCK:  # whisper builds its modules like any other model load
                self.model: Any = whisper.load_model(name, device=self.device, download_root=download_root)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            # Offline without the cached checkpoint, a corrupt download, or not a whisper checkpoint.
            raise PermanentJobError(f"could not load whisper model {model!r}: {exc}") from exc
        self.model.eval()
        self.is_toy = self.model.dims.n_text_state < _TOY_WIDTH
        self.lock = threading.Lock()

    def transcribe(self, audio: Any, *, language: str | None, max_tokens: int | None) -> dict[str, Any]:
        options: dict[str, Any] = {
            "word_timestamps": True,
            "fp16": self.device.startswith("cuda"),
            "condition_on_previous_text": False,
            "verbose": None,
        }
        if language and self.model.is_multilingual:
            options["language"] = language
        elif not self.model.is_multilingual:
            options["language"] = "en"
        if max_tokens is None and self.is_toy:
            max_tokens = TOY_MAX_TOKENS
        if max_tokens is not None:
            options["sample_len"] = max_tokens
            if self.is_toy:
                # Random weights fail every quality check, which would retry at five more temperatures.
                options["temperature"] = 0.0
        with self.lock:
            return self.model.transcribe(audio, **options)


_cache: dict[tuple[str, str], WhisperModel] = {}
_cache_lock = threading.Lock()


def load_whisper(model: str, device: str | None = None, *, download_root: str | None = None) -> WhisperModel:
    """The process-wide whisper model for (model, device), loaded on first use."""
    if not model:
        raise InvalidInput("no speech model is set (STUDIO_WHISPER_MODEL); subtitles follow the TTS timings instead")
    import torch

    key = (model, device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = WhisperModel(model, key[1], download_root=download_root)
        return _cache[key]


def clear_whisper_cache() -> None:
    """Forget loaded whisper models (tests, or freeing GPU memory)."""
    with _cache_lock:
        _cache.clear()


def clean_words(raw: list[dict[str, Any]], duration: float) -> list[Word]:
    """whisper's word dicts → ``Word``s inside ``[0, duration]``, sorted, without empty or
    punctuation-only words."""
    words: list[Word] = []
    for item in raw:
        text = " ".join(str(item.get("word", "")).split())
        if not _SPOKEN.search(text):
            continue
        try:
            start, end = float(item["start"]), float(item["end"])
        except (KeyError, TypeError, ValueError):
            continue
        if start != start or end != end:  # NaN
            continue
        start = min(max(start, 0.0), duration)
        end = min(max(end, start), duration)
        words.append(Word(text=text, start=start, end=end))
    words.sort(key=lambda w: (w.start, w.end))
    return words


def transcribe_words(
    wav_path: Path | str,
    model: str,
    *,
    language: str | None = "en",
    device: str | None = None,
    max_tokens: int | None = None,
    download_root: str | None = None,
) -> list[Word]:
    """The words spoken in ``wav_path`` with their times (seconds), sorted and within the audio.

    ``max_tokens`` caps the tokens decoded per 30 s window (whisper's ``sample_len``); a tiny random
    test model gets ``TOY_MAX_TOKENS`` unless told otherwise. The words are whatever the model
    heard: callers must accept any text (subtitles do).
    """
    import whisper

    path = Path(wav_path)
    if not path.is_file():
        raise PermanentJobError(f"no voice-over audio at {path}")
    try:
        audio = whisper.load_audio(str(path))
    except RuntimeError as exc:  # ffmpeg could not decode it
        raise PermanentJobError(f"could not read the voice-over audio {path.name}: {exc}") from exc
    duration = audio.shape[0] / SAMPLE_RATE
    if duration <= 0:
        return []
    loaded = load_whisper(model, device, download_root=download_root)
    result = loaded.transcribe(audio, language=language, max_tokens=max_tokens)
    raw = [word for segment in result.get("segments", []) for word in segment.get("words", [])]
    return clean_words(raw, duration)
