"""Text to speech for the voice-over: espeak-ng (offline default), a transformers VITS model, or Sesame
CSM cloning a reference clip (``workers/ml/tts_csm.py``).

Both engines share one interface: ``synthesize(sentences, rate_wpm=...)`` speaks each sentence on its
own, trims the silence the engine adds around it, and joins the sentences with a short pause into one
48 kHz mono 16-bit WAV. Because every sentence is placed by this code, its ``(start, end)`` span in the
track is known exactly, which is what places each sentence's subtitles.

torch and transformers are imported only by the VITS engine, so an espeak preview costs a subprocess.
"""

from __future__ import annotations

import io
import subprocess
import tempfile
import threading
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.config import get_settings
from core.errors import InvalidInput, PermanentJobError
from core.library.assets import read_asset
from core.video.options import Word
from core.video.voice_clips import get_reference_clip, transcript_of
from core.video.voices import DEFAULT_RATE_WPM, parse_voice_id, split_sentences, validate_rate, validate_voice
from workers.ml.locks import MODEL_CONSTRUCTION_LOCK
from workers.ml.tts_csm import CsmEngine, Reference, clear_csm_cache, load_csm, max_frames, reference_from_wav

OUTPUT_SAMPLE_RATE = 48_000
DEFAULT_PAUSE_S = 0.3
"""Silence between two sentences."""
PREVIEW_TEXT = "Hi, this is how I sound. Do you like my voice?"
PREVIEW_MAX_S = 5.0
ESPEAK_TIMEOUT_S = 60.0
FFMPEG_TIMEOUT_S = 300.0

# Engine silence below this fraction of full scale is trimmed, keeping a short margin so that soft
# consonants at either end survive.
_SILENCE_THRESHOLD = 0.01
_TRIM_MARGIN_S = 0.02
_MIN_SENTENCE_S = 0.1


@dataclass(frozen=True)
class Speech:
    """A voice-over track: one mono WAV and the span of every sentence in it (seconds).

    ``words`` holds the engine's own word timings when it reports them; neither engine here does yet
    (espeak-ng's command line has no word events, transformers' VITS keeps its durations inside), so
    the video job asks whisper instead when a speech model is set."""

    path: Path
    sample_rate: int
    duration: float
    sentences: tuple[str, ...]
    timings: tuple[tuple[float, float], ...]
    words: tuple[Word, ...] = ()


class Synthesizer(Protocol):
    voice_id: str

    def synthesize(
        self,
        sentences: Sequence[str],
        *,
        rate_wpm: float = DEFAULT_RATE_WPM,
        output: Path | None = None,
        pause_s: float = DEFAULT_PAUSE_S,
    ) -> Speech:
        """Speak ``sentences`` one by one into ``output`` (a new temporary file when omitted)."""
        ...


def check_sentences(sentences: Sequence[str]) -> list[str]:
    if isinstance(sentences, str):
        raise TypeError("synthesize takes a list of sentences; split a script with core.video.voices.split_sentences")
    cleaned = [" ".join(s.split()) for s in sentences]
    if not cleaned or not all(cleaned):
        raise InvalidInput("nothing to speak: the sentences are empty")
    return cleaned


def _trim_silence(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > _SILENCE_THRESHOLD)
    if loud.size:
        margin = round(_TRIM_MARGIN_S * sample_rate)
        samples = samples[max(0, loud[0] - margin) : loud[-1] + 1 + margin]
    minimum = round(_MIN_SENTENCE_S * sample_rate)
    if samples.size < minimum:
        samples = np.concatenate([samples, np.zeros(minimum - samples.size, dtype=np.float32)])
    return samples


def read_wav(path: Path | str | io.BytesIO) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV as mono float32 samples in [-1, 1] and its sample rate."""
    with wave.open(path if isinstance(path, io.BytesIO) else str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise PermanentJobError(f"expected 16-bit PCM audio, got {8 * wav.getsampwidth()}-bit")
        frames = wav.readframes(wav.getnframes())
        channels, rate = wav.getnchannels(), wav.getframerate()
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, rate


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Float samples → a mono 16-bit PCM WAV file's bytes."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


def wav_duration(path: Path | str) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def _resample_to_wav(samples: np.ndarray, sample_rate: int, output: Path) -> None:
    """Write ``samples`` to ``output`` as a 48 kHz mono 16-bit WAV (ffmpeg resamples when needed)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if sample_rate == OUTPUT_SAMPLE_RATE:
        output.write_bytes(wav_bytes(samples, sample_rate))
        return
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
        "-af", f"aresample={OUTPUT_SAMPLE_RATE}:resampler=soxr" if _has_soxr() else f"aresample={OUTPUT_SAMPLE_RATE}",
        "-ac", "1", "-c:a", "pcm_s16le", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags", "+bitexact",
        str(output),
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, input=samples.astype("<f4").tobytes(), capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise PermanentJobError("ffmpeg is not installed on this worker (apt-get install ffmpeg)") from exc
    except subprocess.TimeoutExpired as exc:
        raise PermanentJobError(f"ffmpeg did not resample the voice-over within {FFMPEG_TIMEOUT_S:.0f} s") from exc
    if result.returncode != 0:
        raise PermanentJobError(f"ffmpeg could not write the voice-over: {result.stderr.decode(errors='replace')}")


_soxr: bool | None = None


def _has_soxr() -> bool:
    global _soxr
    if _soxr is None:
        try:
            probe = subprocess.run(
                ["ffmpeg", "-hide_banner", "-buildconf"], capture_output=True, text=True, timeout=10, check=False
            )
            _soxr = "--enable-libsoxr" in probe.stdout
        except (OSError, subprocess.TimeoutExpired):
            _soxr = False
    return _soxr


def assemble(
    clips: Sequence[np.ndarray],
    sentences: Sequence[str],
    sample_rate: int,
    *,
    output: Path | None,
    pause_s: float,
) -> Speech:
    """Trim each sentence's clip, join them with ``pause_s`` of silence, write the 48 kHz track."""
    if pause_s < 0 or pause_s > 5:
        raise InvalidInput(f"pause between sentences must be 0–5 s, not {pause_s:g}")
    pause = np.zeros(round(pause_s * sample_rate), dtype=np.float32)
    parts: list[np.ndarray] = []
    timings: list[tuple[float, float]] = []
    position = 0
    for index, clip in enumerate(clips):
        if index:
            parts.append(pause)
            position += pause.size
        clip = _trim_silence(np.asarray(clip, dtype=np.float32).reshape(-1), sample_rate)
        parts.append(clip)
        timings.append((position / sample_rate, (position + clip.size) / sample_rate))
        position += clip.size
    if output is None:
        with tempfile.NamedTemporaryFile(prefix="voice-", suffix=".wav", delete=False) as handle:
            output = Path(handle.name)
    _resample_to_wav(np.concatenate(parts), sample_rate, output)
    duration = wav_duration(output)
    # Resampling rounds the length to whole output samples; keep the last span inside the file.
    timings[-1] = (min(timings[-1][0], duration), min(timings[-1][1], duration))
    return Speech(
        path=output, sample_rate=OUTPUT_SAMPLE_RATE, duration=duration, sentences=tuple(sentences),
        timings=tuple(timings),
    )


# --- espeak-ng ---------------------------------------------------------------------------------------


class EspeakSynthesizer:
    """espeak-ng, one subprocess per sentence (run a few at a time)."""

    def __init__(self, voice: str, *, timeout_s: float = ESPEAK_TIMEOUT_S, workers: int = 4) -> None:
        # ``voice`` is what follows "espeak:" in a voice id, e.g. "en-gb+f3".
        self.voice = voice
        self.voice_id = f"espeak:{voice}"
        self.timeout_s = timeout_s
        self.workers = workers

    def _speak(self, text: str, rate_wpm: int, folder: Path, index: int) -> tuple[np.ndarray, int]:
        path = folder / f"{index:04d}.wav"
        command = ["espeak-ng", "-v", self.voice, "-s", str(rate_wpm), "-b", "1", "-w", str(path), "--stdin"]
        try:
            result = subprocess.run(
                command, input=text.encode(), capture_output=True, timeout=self.timeout_s, check=False
            )
        except FileNotFoundError as exc:
            raise PermanentJobError("espeak-ng is not installed on this worker (apt-get install espeak-ng)") from exc
        except subprocess.TimeoutExpired as exc:
            raise PermanentJobError(f"espeak-ng took over {self.timeout_s:.0f} s on sentence {index + 1}") from exc
        if result.returncode != 0 or not path.exists():
            message = result.stderr.decode(errors="replace").strip() or f"exit code {result.returncode}"
            raise PermanentJobError(f"espeak-ng could not speak with voice {self.voice!r}: {message}")
        return read_wav(path)

    def synthesize(
        self,
        sentences: Sequence[str],
        *,
        rate_wpm: float = DEFAULT_RATE_WPM,
        output: Path | None = None,
        pause_s: float = DEFAULT_PAUSE_S,
    ) -> Speech:
        sentences = check_sentences(sentences)
        rate = validate_rate(rate_wpm)
        with tempfile.TemporaryDirectory(prefix="espeak-") as tmp, ThreadPoolExecutor(self.workers) as pool:
            spoken = list(pool.map(lambda item: self._speak(item[1], rate, Path(tmp), item[0]), enumerate(sentences)))
        rates = {sample_rate for _, sample_rate in spoken}
        if len(rates) != 1:
            raise PermanentJobError(f"espeak-ng wrote sentences at different sample rates: {sorted(rates)}")
        return assemble([clip for clip, _ in spoken], sentences, rates.pop(), output=output, pause_s=pause_s)


# --- VITS (transformers) --------------------------------------------------------------------------


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or Path(model).exists()


class VitsSynthesizer:
    """A transformers ``VitsModel`` (MMS-TTS and the like), loaded once per process and device.

    VITS samples noise for durations and the waveform; the global torch RNG is seeded for each
    sentence (inside ``fork_rng``), so one sentence always sounds the same.
    """

    def __init__(self, model: str, device: str | None = None, *, seed: int = 0) -> None:
        import torch
        from transformers import AutoConfig, AutoTokenizer, VitsModel

        self.model_name = model
        self.voice_id = f"vits:{model}"
        self.device = device or default_device()
        self.seed = seed
        self._lock = threading.Lock()
        if _looks_like_path(model) and not Path(model).expanduser().is_dir():
            raise PermanentJobError(f"could not load VITS model {model!r}: no such folder")
        source = str(Path(model).expanduser()) if _looks_like_path(model) else model
        try:
            config = AutoConfig.from_pretrained(source)
            if config.model_type != "vits":
                raise PermanentJobError(f"could not load VITS model {model!r}: it is a {config.model_type!r} model")
            self.tokenizer: Any = AutoTokenizer.from_pretrained(source)
            with MODEL_CONSTRUCTION_LOCK:  # another GPU slot may be building modules
                self.model: Any = VitsModel.from_pretrained(source)
        except (OSError, ValueError) as exc:
            raise PermanentJobError(f"could not load VITS model {model!r}: {exc}") from exc
        # transformers wraps Module.to, and its stub misreads the bound call (the model as its first argument).
        self.model.to(self.device).eval()  # type: ignore[arg-type]
        self.sample_rate = int(self.model.config.sampling_rate)
        self._torch = torch

    def _speak(self, text: str, speaking_rate: float) -> np.ndarray:
        torch = self._torch
        inputs = self.tokenizer(text, return_tensors="pt")
        ids = inputs["input_ids"]
        pad = self.tokenizer.pad_token_id
        if ids.numel() == 0 or bool((ids == pad).all()):
            raise PermanentJobError(
                f"the voice {self.voice_id!r} cannot pronounce {text!r}; write numbers and symbols out in words"
            )
        inputs = inputs.to(self.device)
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(self.seed)
            output = self.model(**inputs, speaking_rate=speaking_rate)
        length = int(output.sequence_lengths[0]) if output.sequence_lengths is not None else output.waveform.shape[-1]
        return output.waveform[0, :length].float().cpu().numpy()

    def synthesize(
        self,
        sentences: Sequence[str],
        *,
        rate_wpm: float = DEFAULT_RATE_WPM,
        output: Path | None = None,
        pause_s: float = DEFAULT_PAUSE_S,
    ) -> Speech:
        sentences = check_sentences(sentences)
        # VITS speaks at its own pace; DEFAULT_RATE_WPM is taken as that pace.
        speaking_rate = validate_rate(rate_wpm) / DEFAULT_RATE_WPM
        with self._lock:
            clips = [self._speak(sentence, speaking_rate) for sentence in sentences]
        return assemble(clips, sentences, self.sample_rate, output=output, pause_s=pause_s)


_vits_cache: dict[tuple[str, str], VitsSynthesizer] = {}
_vits_cache_lock = threading.Lock()


def load_vits(model: str, device: str | None = None) -> VitsSynthesizer:
    """The process-wide VITS synthesizer for (model, device), loaded on first use."""
    key = (model, device or default_device())
    with _vits_cache_lock:
        if key not in _vits_cache:
            _vits_cache[key] = VitsSynthesizer(model, key[1])
        return _vits_cache[key]


def clear_tts_cache() -> None:
    """Forget loaded VITS and CSM models (tests, or freeing GPU memory)."""
    with _vits_cache_lock:
        _vits_cache.clear()
    clear_csm_cache()


class CsmSynthesizer:
    """A CSM voice (``workers/ml/tts_csm.py``): the loaded engine plus, for a cloned voice, its reference clip."""

    def __init__(self, engine: CsmEngine, reference: Reference | None, voice_id: str) -> None:
        self.engine = engine
        self.reference = reference
        self.voice_id = voice_id

    def synthesize(
        self,
        sentences: Sequence[str],
        *,
        rate_wpm: float = DEFAULT_RATE_WPM,
        output: Path | None = None,
        pause_s: float = DEFAULT_PAUSE_S,
    ) -> Speech:
        sentences = check_sentences(sentences)
        # CSM has no rate control: the rate only sizes each sentence's frame budget.
        rate = validate_rate(rate_wpm)
        clips = [self.engine.speak(s, self.reference, frames=max_frames(s, rate)) for s in sentences]
        return assemble(clips, sentences, self.engine.sample_rate, output=output, pause_s=pause_s)


def _csm_synthesizer(voice_id: str, clip: str, device: str | None) -> Synthesizer:
    """A CSM voice; a cloned one reads its reference clip from the library (checked again here: the clip
    may have been trashed since the job was created)."""
    reference = None
    if clip:
        asset = get_reference_clip(int(clip))
        samples, rate = read_wav(io.BytesIO(read_asset(asset)))
        reference = reference_from_wav(samples, rate, transcript_of(asset))
    engine = load_csm(get_settings().tts_csm_model, device or default_device())
    return CsmSynthesizer(engine, reference, voice_id)


def get_synthesizer(voice_id: str, *, device: str | None = None) -> Synthesizer:
    """The synthesizer for a voice id (validated first; raises ``InvalidInput`` for an unknown voice)."""
    voice = validate_voice(voice_id)
    engine, name = parse_voice_id(voice.id)
    if engine == "espeak":
        return EspeakSynthesizer(name)
    if engine == "csm":
        return _csm_synthesizer(voice.id, name, device)
    return load_vits(name, device)


def synthesize_script(
    script: str,
    voice_id: str,
    *,
    rate_wpm: float = DEFAULT_RATE_WPM,
    output: Path | None = None,
    pause_s: float = DEFAULT_PAUSE_S,
    device: str | None = None,
) -> Speech:
    """Split ``script`` into sentences and speak them with ``voice_id``."""
    return get_synthesizer(voice_id, device=device).synthesize(
        split_sentences(script), rate_wpm=rate_wpm, output=output, pause_s=pause_s
    )


def preview(
    voice_id: str,
    rate_wpm: float = DEFAULT_RATE_WPM,
    text: str = PREVIEW_TEXT,
    *,
    max_seconds: float = PREVIEW_MAX_S,
    device: str | None = None,
) -> bytes:
    """A short sample of a voice as WAV bytes (at most ``max_seconds``, faded out when cut)."""
    sentences = split_sentences(text)[:3]
    with tempfile.TemporaryDirectory(prefix="preview-") as tmp:
        speech = get_synthesizer(voice_id, device=device).synthesize(
            sentences, rate_wpm=rate_wpm, output=Path(tmp) / "preview.wav", pause_s=0.2
        )
        samples, rate = read_wav(speech.path)
    limit = round(max_seconds * rate)
    if samples.size > limit:
        samples = samples[:limit].copy()
        fade = min(limit, round(0.05 * rate))
        samples[limit - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return wav_bytes(samples, rate)
