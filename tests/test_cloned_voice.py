"""Cloned voices: reference clips checked and stored, a character's voice, and Sesame CSM on a tiny model
built in code (loaded through the same from_pretrained path as ``sesame/csm-1b``)."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidInput
from core.infra.storage import get_object_store
from core.video.voices import validate_voice
from workers.ml.tts import CsmSynthesizer, clear_tts_cache, read_wav, synthesize_script
from workers.ml.tts_csm import SAMPLE_RATE, CsmEngine, Reference, max_frames


@pytest.fixture(scope="module", autouse=True)
def offline(offline_hub) -> Iterator[None]:
    yield
    clear_tts_cache()


@pytest.fixture(scope="module")
def tiny_csm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from workers.ml.tiny_models import build_tiny_csm

    return build_tiny_csm(tmp_path_factory.mktemp("csm") / "tiny-csm")


def _clip(tmp_path: Path, source: str, *, seconds: float, name: str = "clip.wav", extra: tuple[str, ...] = ()) -> bytes:
    """An audio file made by ffmpeg from a lavfi source (sine, noise, silence)."""
    path = tmp_path / name
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"{source}:d={seconds}",
                    *extra, str(path)], check=True, timeout=60)
    return path.read_bytes()


def _tone(seconds: float, frequency: float) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def test_reference_clip_is_checked_mixed_down_and_stored(studio, tmp_path: Path) -> None:
    from core.characters.characters import current_character, set_voice, voice_of
    from core.library.assets import read_asset
    from core.video.voice_clips import list_reference_clips, save_reference_clip

    character = current_character()
    assert character.id is not None
    stereo = _clip(tmp_path, "sine=f=220", seconds=4, name="me.mp3", extra=("-ac", "2", "-ar", "44100"))
    clip = save_reference_clip(data=stereo, filename="me.mp3", character_id=character.id, transcript=" Hi,  it's me. ")
    samples, rate = read_wav(io.BytesIO(read_asset(clip)))
    assert rate == SAMPLE_RATE and abs(samples.size / rate - 4.0) < 0.1  # mono at 24 kHz, same length
    assert clip.meta["transcript"] == "Hi, it's me." and clip.meta["original"]["channels"] == 2
    assert validate_voice(f"csm:{clip.id}").id == f"csm:{clip.id}"

    store_before = [o.key for o in get_object_store().list("voices/")]
    bad = {
        "too short": _clip(tmp_path, "sine=f=220", seconds=1, name="short.wav"),
        "too long": _clip(tmp_path, "sine=f=220", seconds=31, name="long.wav"),
        "silent": _clip(tmp_path, "anullsrc=r=24000:cl=mono", seconds=4, name="silent.wav"),
        "not audio": b"this is not audio at all",
        "video only": _clip(tmp_path, "color=c=red:s=64x64", seconds=4, name="red.mp4"),
    }
    messages = {}
    for what, data in bad.items():
        with pytest.raises(InvalidInput) as refused:
            save_reference_clip(data=data, filename=what, character_id=character.id)
        messages[what] = str(refused.value)
    assert "1.0 s long" in messages["too short"] and "3–30 s" in messages["too short"]
    assert "31.0 s long" in messages["too long"]
    assert "silent" in messages["silent"]
    assert "not an audio file" in messages["not audio"] and "no audio track" in messages["video only"]
    # A refused clip stores nothing.
    assert list_reference_clips(character_id=character.id).total == 1
    assert [o.key for o in get_object_store().list("voices/")] == store_before

    # The character's voice: a bad one changes nothing, a cloned one becomes the default.
    with pytest.raises(InvalidInput, match=r"not a voice reference clip|does not exist"):
        set_voice(character_id=character.id, voice="csm:999999")
    assert voice_of(character.id) == studio.tts_default_voice
    set_voice(character_id=character.id, voice=f"csm:{clip.id}")
    assert voice_of(character.id) == f"csm:{clip.id}"
    with pytest.raises(InvalidInput, match="csm:<reference clip id>"):
        validate_voice("csm:me")


def test_csm_speaks_each_sentence_within_its_frame_budget_and_clones_the_clip(tiny_csm: Path) -> None:
    engine = CsmEngine(str(tiny_csm), "cpu")
    sentences = ["Hi there.", "Nice day."]
    first = CsmSynthesizer(engine, Reference(_tone(4, 220), "a low hum"), "csm:1")
    speech = first.synthesize(sentences, rate_wpm=400)
    samples, rate = read_wav(speech.path)
    assert rate == 48_000 and speech.sample_rate == 48_000
    assert abs(samples.size / rate - speech.duration) < 1e-6
    # Each sentence is at most its frame budget (1,920 samples = 80 ms a frame) and not empty.
    for (start, end), sentence in zip(speech.timings, sentences, strict=True):
        assert 0.08 <= end - start <= max_frames(sentence, 400) * 0.08 + 1e-6
    assert speech.timings[1][0] - speech.timings[0][1] == pytest.approx(0.3, abs=1e-3)

    noise = np.random.default_rng(1).normal(0, 0.3, 4 * SAMPLE_RATE).astype(np.float32)
    other = read_wav(CsmSynthesizer(engine, Reference(noise, "a low hum"), "csm:2")
                     .synthesize(sentences, rate_wpm=400).path)[0]
    assert other.shape != samples.shape or not np.allclose(other, samples, atol=1e-3)  # the clip is what it copies


def test_cloned_voice_reads_its_clip_from_the_library(studio, tiny_csm: Path, tmp_path: Path, monkeypatch) -> None:
    from core.config import reload_settings
    from core.library.assets import trash_assets
    from core.video.voice_clips import save_reference_clip

    monkeypatch.setenv("STUDIO_TTS_CSM_MODEL", str(tiny_csm))
    reload_settings()
    clip = save_reference_clip(data=_clip(tmp_path, "anoisesrc=a=0.3:c=pink", seconds=3.5), filename="me.wav",
                               character_id=None)
    speech = synthesize_script("Hello there.", f"csm:{clip.id}", rate_wpm=400, output=tmp_path / "v.wav", device="cpu")
    assert speech.sentences == ("Hello there.",) and 0.08 <= speech.duration <= max_frames("Hello there.", 400) * 0.08
    assert clip.id is not None
    trash_assets([clip.id])
    with pytest.raises(InvalidInput, match="in the trash"):
        synthesize_script("Hello there.", f"csm:{clip.id}", output=tmp_path / "w.wav", device="cpu")


def _routed_preview(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_csm: Path) -> str:
    """A cloned-voice preview job routed to the gpu queue; checks the routing on the way."""
    from core.config import reload_settings
    from core.video import requests as videos
    from core.video.voice_clips import save_reference_clip

    clip = save_reference_clip(data=_clip(tmp_path, "anoisesrc=a=0.3:c=pink", seconds=3.5), filename="me.wav",
                               character_id=None)
    # auto: no worker with a GPU is online (none on this machine), so model voices stay on the cpu queue.
    assert videos.submit_voice_preview(voice=f"csm:{clip.id}").queue == "cpu"
    assert videos.submit_voice_preview(voice="espeak:en-us").queue == "cpu"
    monkeypatch.setenv("STUDIO_TTS_MODEL_QUEUE", "gpu")
    monkeypatch.setenv("STUDIO_TTS_CSM_MODEL", str(tiny_csm))
    reload_settings()
    assert videos.submit_voice_preview(voice="espeak:en-us").queue == "cpu"  # espeak never needs a GPU
    job = videos.submit_voice_preview(voice=f"csm:{clip.id}", rate_wpm=400, text="Hi there.")
    assert job.queue == "gpu"
    return job.id


def test_a_cloned_voice_preview_routed_to_the_gpu_queue_speaks_with_its_clip(studio, tiny_csm: Path,
                                                                            tmp_path: Path, monkeypatch) -> None:
    from core.jobs.lifecycle import execute_job, get_job
    from core.video import requests as videos
    from workers.video import voice_preview

    job_id = _routed_preview(tmp_path, monkeypatch, tiny_csm)
    # What the gpu queue's actor runs (in this process: a worker process would spend its time importing torch).
    execute_job(job_id, voice_preview)
    done = get_job(job_id)
    assert done.status == "succeeded", done.error
    samples, rate = read_wav(io.BytesIO(videos.read_preview(job_id)))
    assert rate == 48_000 and 0.08 <= samples.size / rate <= max_frames("Hi there.", 400) * 0.08 + 0.01
