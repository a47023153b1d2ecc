"""Image-to-video: the ``motion`` job on a tiny random Wan 2.2 (built in code, loaded through the same
``from_pretrained`` path as real weights) makes a clip of the requested frames and size, stored with its
source image as lineage; a redelivered job returns the stored clip; a cancel stops it between steps; and
the short-video renderer puts a clip and a still in one exact-length timeline (clip looped to its slot).

The jobs run in this process through ``execute_job``, exactly what the gpu queue's actor runs."""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import update
from sqlmodel import col

from core.config import reload_settings
from core.db import session_scope
from core.errors import InvalidInput
from core.infra.storage import get_object_store
from core.jobs import lifecycle as jobs
from core.library import assets
from core.library.assets import AssetSource
from core.models import AssetKind, Job, JobStatus
from core.video import motion
from core.video import requests as videos
from tests.apptest import open_page, rerun
from tests.conftest import wait_until
from tests.factories import image_bytes
from ui.widgets import VIDEO_HANDOFF_KEY
from workers.media.clips import encode_frames
from workers.media.render import RenderRequest, render_video
from workers.motion import animate
from workers.video import render

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]

# 9:16 at "resolution 36" is 32×64; 0.5 s at 16 fps is the 4k + 1 count 9.
TINY = {"prompt": "she smiles and the wind moves her hair", "aspect": "9:16", "resolution": 36, "seconds": 0.5,
        "fps": 16, "steps": 2, "seed": 11}


def _count_frames(path: Path) -> dict:
    run = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames,width,height,r_frame_rate:format=duration", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True)
    data = json.loads(run.stdout)
    return {**data["streams"][0], "duration": float(data["format"]["duration"])}


def _frames(path: Path, size: int = 16) -> np.ndarray:
    """Every frame, shrunk to size × size RGB (decoded by ffmpeg, not by the renderer)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"scale={size}:{size}", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3).astype(np.int16)


@pytest.fixture
def still(studio):
    return assets.store_image("uploads/ava.png", image_bytes(96, 160, seed=3), source=AssetSource.UPLOAD)


def test_a_still_becomes_a_clip_of_the_requested_frames_and_size_stored_with_its_source(still, tiny_wan,
                                                                                         tmp_path):
    job = motion.submit_motion(source_asset_id=still.id, model=str(tiny_wan), **TINY)
    assert (job.payload["width"], job.payload["height"], job.payload["frames"]) == (32, 64, 9)
    jobs.execute_job(job.id, animate)
    done = jobs.get_job(job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    clip = assets.get_asset(done.result["clip_asset_id"])
    assert (clip.kind, clip.source, clip.content_type, clip.job_id) == (AssetKind.VIDEO, AssetSource.MOTION,
                                                                        "video/mp4", job.id)
    local = tmp_path / "clip.mp4"
    local.write_bytes(assets.read_asset(clip))
    probed = _count_frames(local)
    assert (int(probed["nb_read_frames"]), probed["width"], probed["height"]) == (9, 32, 64)
    assert probed["r_frame_rate"] == "16/1"
    origin = assets.lineage(clip)
    assert (origin.init_asset_id, origin.init_asset_state) == (still.id, "in the library")
    assert (origin.seed, clip.meta["frames"], clip.meta["fps"]) == (11, 9, 16)

    # A redelivery after the clip was stored (the worker died before finishing) returns that clip.
    with session_scope() as session:
        session.execute(update(Job).where(col(Job.id) == job.id).values(status=JobStatus.FAILED))
    jobs.retry_job(job.id)
    jobs.execute_job(job.id, animate)
    again = jobs.get_job(job.id)
    assert again.status == JobStatus.SUCCEEDED and again.result["resumed"] is True
    assert again.result["clip_asset_id"] == clip.id


def test_motion_requests_are_checked_before_any_job_is_queued(still, tiny_wan):
    with pytest.raises(InvalidInput, match="does not exist"):
        motion.submit_animations([still.id, 999_999], model=str(tiny_wan), **TINY)
    assert motion.list_motions().total == 0


def test_a_cancel_stops_the_motion_job_between_steps_and_stores_nothing(still, tiny_wan):
    job = motion.submit_motion(source_asset_id=still.id, model=str(tiny_wan), **{**TINY, "steps": 100})
    runner = threading.Thread(target=jobs.execute_job, args=(job.id, animate))
    runner.start()
    try:
        wait_until(lambda: (jobs.get_job(job.id).progress_message or "").startswith("step "), 60, interval=0.005,
                   what="the first denoising step")
        jobs.cancel_job(job.id)
    finally:
        runner.join(120)
    done = jobs.get_job(job.id)
    assert done.status == JobStatus.CANCELLED
    assert motion.job_clip(job.id) is None
    assert int(done.progress_message.split()[1].split("/")[0]) < 100


def test_the_renderer_loops_a_clip_to_its_slot_beside_a_still_in_an_exact_length_video(tmp_path, studio):
    # A 5-frame clip at 10 fps whose frames differ in red (so a loop shows), then a blue still.
    reds = [30, 80, 130, 180, 230]
    frames = np.stack([np.full((64, 64, 3), (red, 0, 0), np.uint8) for red in reds])
    clip = tmp_path / "clip.mp4"
    encode_frames(frames, 10, clip)
    still_path = tmp_path / "still.png"
    Image.new("RGB", (64, 64), (0, 0, 200)).save(still_path)
    result = render_video(RenderRequest(images=[clip, still_path], durations=[1.0, 1.5], output=tmp_path / "out.mp4",
                                        aspect="1:1", fps=10, motion="none", transition="crossfade",
                                        transition_seconds=0.2, preset="ultrafast"))
    probed = _count_frames(result.output)
    assert int(probed["nb_read_frames"]) == 25 and abs(probed["duration"] - 2.5) < 0.05
    seen = _frames(result.output)
    red, blue = seen[..., 0].mean(axis=(1, 2)), seen[..., 2].mean(axis=(1, 2))
    # The clip's slot (frames 0–9, the crossfade straddles 9–10) plays it twice: looped, not frozen.
    # (Levels are compared with each other: the renderer's bt709 output decodes a still's red 230 as ~208 too.)
    assert all(later - earlier > 30 for earlier, later in itertools.pairwise(red[:5])), red[:9]
    assert np.allclose(red[5:9], red[0:4], atol=4), red[:9]
    assert (blue[11:] > 180).all() and (red[11:] < 20).all()


def test_a_video_job_renders_a_clip_and_a_still_into_an_exact_length_video(still, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_WHISPER_MODEL", "")  # subtitles from the TTS sentence timings: no speech model
    reload_settings()
    clip_file = tmp_path / "c.mp4"
    encode_frames(np.zeros((5, 32, 32, 3), np.uint8), 10, clip_file)
    info = get_object_store().put_file("clips/c.mp4", clip_file, "video/mp4")
    clip = assets.record_asset(key="clips/c.mp4", kind=AssetKind.VIDEO, source=AssetSource.MOTION,
                               content_type="video/mp4", size_bytes=info.size)
    job = videos.submit_video(image_asset_ids=[clip.id, still.id], script="Hello there.", aspect="1:1", fps=15,
                              seconds_per_image=1.2, platforms=["tiktok"])
    assert job.payload["image_asset_ids"] == [clip.id, still.id]
    jobs.execute_job(job.id, render)
    done = jobs.get_job(job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    video = assets.get_asset(done.result["video_asset_id"])
    assert video.meta["image_asset_ids"] == [clip.id, still.id]
    local = tmp_path / "video.mp4"
    local.write_bytes(assets.read_asset(video))
    probed = _count_frames(local)
    assert (int(probed["nb_read_frames"]), probed["width"], probed["height"]) == (36, 1080, 1080)
    audio = assets.record_asset(key="a.wav", kind=AssetKind.AUDIO, source=AssetSource.UPLOAD,
                                content_type="audio/wav", size_bytes=1)
    with pytest.raises(InvalidInput, match="is a audio, not a image"):
        videos.submit_video(image_asset_ids=[audio.id], script="Hello there.")


def test_the_videos_page_animates_the_picked_images_and_a_finished_clip_joins_the_timeline(still, tiny_wan):
    other = assets.store_image("uploads/ben.png", image_bytes(64, 64, seed=4), source=AssetSource.UPLOAD)
    done = motion.submit_motion(source_asset_id=still.id, model=str(tiny_wan), **TINY)
    jobs.execute_job(done.id, animate)
    at = open_page("pages/videos.py", **{VIDEO_HANDOFF_KEY: [still.id, other.id]})
    at.selectbox(key="videos.aspect").set_value("1:1")
    at.text_input(key="videos.motion.prompt").input("she waves")
    at.selectbox(key="videos.motion.resolution").set_value(480)
    rerun(at)
    at.button(key="videos.motion.submit").click()
    rerun(at)
    queued = [job for job in motion.list_motions().items if job.id != done.id]
    assert sorted(job.payload["source_asset_id"] for job in queued) == sorted([still.id, other.id])
    assert {(job.payload["aspect"], job.payload["width"], job.payload["height"]) for job in queued} == {
        ("1:1", 640, 640)}
    assert len(at.get("video")) == 1, "the finished clip plays"
    at.button(key=f"videos.motion.use.{done.id}").click()
    rerun(at)
    clip_id = jobs.get_job(done.id).result["clip_asset_id"]
    assert at.multiselect(key="videos.images").value == [still.id, other.id, clip_id]
