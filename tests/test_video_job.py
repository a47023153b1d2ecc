"""The ``video`` job end to end with a real CPU worker, espeak-ng, tiny whisper and ffmpeg: exact size,
loudness on target, subtitles inside the audio, and bad input refused or failed with no partial asset."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import func, select

from core.db import session_scope
from core.errors import InvalidInput
from core.infra.storage import get_object_store
from core.jobs import lifecycle as jobs
from core.library import assets
from core.library.assets import AssetSource
from core.models import Asset, AssetKind, Job
from core.video import requests as videos
from core.video.subtitles import parse_srt
from tests.captions import assert_cues_follow_script, frame_at, read_caption, similarity
from tests.conftest import wait_until
from tests.factories import image_bytes

SCRIPT = "Three things I pack for the beach. Sunscreen comes first. Then a good book!"


@pytest.fixture
def images(studio):
    return [assets.store_image(f"uploads/beach-{i}.png", image_bytes(640, 800, seed=i), source=AssetSource.UPLOAD).id
            for i in range(3)]


@pytest.fixture
def speech_models(tiny_models, monkeypatch):
    from core.config import reload_settings

    monkeypatch.setenv("STUDIO_WHISPER_MODEL", str(tiny_models["whisper"]))
    monkeypatch.setenv("STUDIO_TTS_VITS_MODEL", str(tiny_models["vits"]))
    reload_settings()


def _finished(job_id: str, timeout: float = 240) -> Job:
    return wait_until(lambda: (j := jobs.get_job(job_id)).job_status.is_terminal and j, timeout=timeout,
                      what=f"video job {job_id} to finish")


def _loudness(path) -> dict:
    """Integrated loudness and true peak measured by ffmpeg's loudnorm analysis (independent of the renderer)."""
    run = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af",
                          "loudnorm=print_format=json", "-f", "null", "-"], capture_output=True, text=True, check=True)
    text = run.stderr[run.stderr.rindex("{"):]
    return json.loads(text[:text.index("}") + 1])


def _probe(path) -> dict:
    run = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout)


def _download(asset_id: int, tmp_path, name: str):
    path = tmp_path / name
    path.write_bytes(get_object_store().get_bytes(assets.get_asset(asset_id).key))
    return path


def test_a_vertical_video_is_rendered_on_target_with_subtitles_from_whisper(images, speech_models, workers,
                                                                            tmp_path):
    workers.worker("cpu", threads=1)
    job = videos.submit_video(image_asset_ids=images, script=SCRIPT, voice="espeak:en-us", aspect="9:16",
                              total_seconds=6, transition="crossfade", motion="ken_burns")
    done = _finished(job.id)
    assert done.status == "succeeded", done.error
    result = done.result
    video = _download(result["video_asset_id"], tmp_path, "video.mp4")
    streams = {s["codec_type"]: s for s in _probe(video)["streams"]}
    assert (streams["video"]["width"], streams["video"]["height"]) == (1080, 1920)
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    measured = _loudness(video)
    assert abs(float(measured["input_i"]) - -14.0) <= 1.0, measured
    assert float(measured["input_tp"]) <= -1.0 + 0.2, measured  # the limit, within the meter's resolution
    assert abs(result["loudness"]["integrated_lufs"] - float(measured["input_i"])) <= 0.5, "stored = measured"

    cues = parse_srt(get_object_store().get_bytes(assets.get_asset(result["subtitles_asset_id"]).key).decode())
    duration = float(_probe(video)["format"]["duration"])
    assert cues and all(0 <= c.start < c.end <= duration + 0.05 for c in cues)
    # The tiny whisper hears garbage: it may only time the script's words, never replace them.
    assert_cues_follow_script(cues, SCRIPT)
    cue = max(cues, key=lambda c: c.end - c.start)
    frame = frame_at(video, (cue.start + cue.end) / 2, tmp_path / "frame.png")
    read = read_caption(frame, "eng")
    assert similarity(cue.text, read) >= 0.7, ("the burned-in caption is the SRT's", cue.text, read)
    under_ui = read_caption(frame, "eng", band=0.25)  # the bottom 480 px YouTube Shorts' title and buttons cover
    assert similarity(cue.text, under_ui) < 0.3, ("the caption sits above the platforms' UI zone", under_ui)
    asset = assets.get_asset(result["video_asset_id"])
    assert (asset.kind, asset.width, asset.height) == (AssetKind.VIDEO, 1080, 1920)
    assert asset.meta["image_asset_ids"] == images and asset.meta["loudness"] == result["loudness"]
    assert set(result["spec_report"]) == {"instagram_reels", "youtube_shorts", "tiktok"}
    assert assets.get_asset(result["voice_asset_id"]).kind == AssetKind.AUDIO


def test_a_square_video_takes_its_subtitles_from_the_tts_timings_without_a_speech_model(images, workers, tmp_path,
                                                                                      monkeypatch):
    from core.config import reload_settings

    monkeypatch.setenv("STUDIO_WHISPER_MODEL", "")
    reload_settings()
    workers.worker("cpu", threads=1)
    job = videos.submit_video(image_asset_ids=images[:2], script=SCRIPT, aspect="1:1", fit="blur", motion="none",
                              transition="cut", subtitles={"max_words_per_line": 3})
    done = _finished(job.id)
    assert done.status == "succeeded", done.error
    video = _download(done.result["video_asset_id"], tmp_path, "square.mp4")
    stream = next(s for s in _probe(video)["streams"] if s["codec_type"] == "video")
    assert (stream["width"], stream["height"]) == (1080, 1080)
    cues = parse_srt(get_object_store().get_bytes(assets.get_asset(done.result["subtitles_asset_id"]).key).decode())
    assert cues[0].text.split()[:3] == ["Three", "things", "I"] and all(len(c.text.split()) <= 3 for c in cues)
    assert_cues_follow_script(cues, SCRIPT)


def _videos() -> int:
    with session_scope() as session:
        return session.execute(
            select(func.count()).select_from(Asset).where(Asset.kind == AssetKind.VIDEO)).scalar_one()


def test_bad_requests_are_refused_before_a_job_is_written(images):
    trashed = assets.store_image("uploads/old.png", image_bytes(64, 64), source=AssetSource.UPLOAD)
    assets.trash_assets([trashed.id])
    cases = [
        (dict(image_asset_ids=[images[0], 999]), "image 999 does not exist"),
        (dict(image_asset_ids=[trashed.id]), "in the trash"),
        (dict(image_asset_ids=[]), "pick at least one image"),
        (dict(image_asset_ids=images, script="   "), "script"),
        (dict(image_asset_ids=images, voice="espeak:xx-yy"), "unknown voice 'espeak:xx-yy'"),
        (dict(image_asset_ids=images, music_asset_id=images[0]), "is a image, not a audio"),
        (dict(image_asset_ids=images, platforms=["myspace"]), "unknown platform(s): myspace"),
        (dict(image_asset_ids=images, aspect="4:3"), "aspect"),
    ]
    with session_scope() as session:
        before = session.execute(select(func.count()).select_from(Job)).scalar_one()
    for fields, fragment in cases:
        with pytest.raises(InvalidInput) as refused:
            videos.submit_video(**{"script": SCRIPT, **fields})
        assert fragment in str(refused.value), fields
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(Job)).scalar_one() == before


def test_a_corrupt_image_fails_the_job_clearly_and_leaves_no_partial_asset(images, workers, monkeypatch):
    from core.config import reload_settings

    monkeypatch.setenv("STUDIO_WHISPER_MODEL", "")
    reload_settings()
    get_object_store().put_bytes("uploads/broken.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")
    broken = assets.record_asset(key="uploads/broken.png", kind=AssetKind.IMAGE, source=AssetSource.UPLOAD,
                                 content_type="image/png", size_bytes=18)
    workers.worker("cpu", threads=1)
    job = videos.submit_video(image_asset_ids=[images[0], broken.id], script=SCRIPT, total_seconds=3)
    done = _finished(job.id)
    assert done.status == "failed"
    assert f"image 2 (image-001-asset-{broken.id}.png) is not a readable image" in done.error, done.error
    assert _videos() == 0
    with session_scope() as session:
        outputs = session.execute(select(func.count()).select_from(Asset).where(Asset.job_id == job.id)).scalar_one()
    assert outputs == 0, "no voice, subtitle or video asset is recorded for a failed render"
