"""The Videos page under AppTest on real services: handed-over images, a complete render request, the
voice preview through a real worker, and a finished render with its player and platform report."""

from __future__ import annotations

import subprocess

import pytest

from core.db import session_scope
from core.infra.storage import get_object_store
from core.library import assets
from core.library.assets import AssetSource
from core.models import AssetKind, Job
from core.video import requests as videos
from tests.apptest import open_page, rerun
from tests.factories import image_bytes
from ui.widgets import VIDEO_HANDOFF_KEY


@pytest.fixture
def images(studio):
    return [assets.store_image(f"uploads/{i}.png", image_bytes(64, 64, seed=i), source=AssetSource.UPLOAD).id
            for i in range(3)]


def test_handed_over_images_are_picked_and_the_request_is_complete(images):
    at = open_page("pages/videos.py", **{VIDEO_HANDOFF_KEY: [images[2], images[0]]})
    assert at.multiselect(key="videos.images").value == [images[2], images[0]], "in the order handed over"
    at.text_area(key="videos.script").input("Hello there. This is a test!")
    at.selectbox(key="videos.aspect").set_value("1:1")
    at.selectbox(key="videos.timing").set_value("per_image")
    rerun(at)
    at.number_input(key="videos.per_image").set_value(2.5)
    at.slider(key="videos.sub_words").set_value(3)
    at.multiselect(key="videos.platforms").set_value(["tiktok"])
    at.button(key="videos.submit").click()
    rerun(at)
    [job] = videos.list_renders().items
    payload = job.payload
    assert payload["image_asset_ids"] == [images[2], images[0]] and payload["aspect"] == "1:1"
    assert payload["seconds_per_image"] == 2.5 and payload["subtitles"]["max_words_per_line"] == 3
    assert payload["platforms"] == ["tiktok"] and payload["voice"] == "espeak:en-us"


def test_an_empty_script_is_refused_on_the_page(images):
    at = open_page("pages/videos.py", **{VIDEO_HANDOFF_KEY: images})
    at.button(key="videos.submit").click()
    rerun(at)
    assert any("script" in e.value for e in at.error)
    assert videos.list_renders().total == 0


def test_the_voice_preview_plays_a_sample_spoken_by_a_worker(images, workers):
    workers.worker("cpu", threads=1)
    at = open_page("pages/videos.py")
    at.button(key="videos.preview").click()
    rerun(at)
    assert len(at.get("audio")) == 1


def test_a_finished_render_plays_in_the_page_with_its_platform_report(images, tmp_path):
    video = tmp_path / "v.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=1080x1920:rate=30:duration=1",
                    "-pix_fmt", "yuv420p", str(video)], check=True)
    get_object_store().put_file("renders/v.mp4", video, "video/mp4")
    asset = assets.record_asset(key="renders/v.mp4", kind=AssetKind.VIDEO, source=AssetSource.VIDEO,
                                content_type="video/mp4", size_bytes=video.stat().st_size, width=1080, height=1920)
    job = videos.submit_video(image_asset_ids=images, script="Hi there.")
    with session_scope() as session:
        row = session.get(Job, job.id)
        row.status = "succeeded"
        row.result = {"video_asset_id": asset.id, "duration": 1.0,
                      "loudness": {"integrated_lufs": -14.1, "true_peak_dbtp": -1.2},
                      "spec_report": {"tiktok": [], "youtube_shorts": ["YouTube Shorts: too short"]}}
        session.add(row)
    at = open_page("pages/videos.py")
    assert len(at.get("video")) == 1
    assert any("-14.1 LUFS" in c.value for c in at.caption)
    assert [s.value for s in at.success] == ["TikTok: meets the specs"]
    assert [w.value for w in at.warning] == ["YouTube Shorts: too short"]


def test_write_the_script_drafts_from_the_topic_and_word_by_word_captions_are_requested(images):
    at = open_page("pages/videos.py", **{VIDEO_HANDOFF_KEY: images})
    at.text_input(key="videos.topic").input("my sunrise trail run")
    at.number_input(key="videos.script_seconds").set_value(12.0)
    at.button(key="videos.write").click()
    rerun(at)
    draft = at.text_area(key="videos.script").value
    assert "my sunrise trail run" in draft, "no LLM configured: the offline template wrote it"
    assert any("offline template" in c.value and "Edit it" in c.value for c in at.caption)
    at.text_area(key="videos.script").input(draft + " Edited by me.")
    at.selectbox(key="videos.sub_mode").set_value("highlight")
    at.toggle(key="videos.sub_safe").set_value(False)
    at.button(key="videos.submit").click()
    rerun(at)
    [job] = videos.list_renders().items
    assert job.payload["script"].endswith("Edited by me.")
    assert job.payload["subtitles"]["mode"] == "highlight" and job.payload["subtitles"]["safe_area"] is False


def test_write_the_script_without_a_topic_shows_why_and_keeps_the_script(images):
    at = open_page("pages/videos.py")
    at.text_area(key="videos.script").input("My own words.")
    at.button(key="videos.write").click()
    rerun(at)
    assert any("topic" in e.value for e in at.error)
    assert at.text_area(key="videos.script").value == "My own words."


def test_a_voice_cloned_in_the_character_block_becomes_the_render_voice(images, tmp_path):
    from core.characters.characters import current_character

    clip = tmp_path / "me.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=200:d=4", str(clip)], check=True)
    character_id = current_character().id
    at = open_page("pages/videos.py")
    at.file_uploader(key=f"voice.{character_id}.clip").set_value([("me.wav", clip.read_bytes(), "audio/wav")]).run()
    at.button(key=f"voice.{character_id}.clone").click()
    rerun(at)
    assert not at.error, [e.value for e in at.error]
    voice = current_character().voice
    assert voice.startswith("csm:")
    at = open_page("pages/videos.py")  # a fresh session: the render's voice is the character's
    assert at.selectbox(key="videos.voice").value == voice


def test_a_silent_clip_is_refused_in_the_block_and_changes_nothing(images, tmp_path):
    from core.characters.characters import current_character

    clip = tmp_path / "quiet.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=24000:cl=mono:d=4", str(clip)],
                   check=True)
    character_id = current_character().id
    at = open_page("pages/videos.py")
    at.file_uploader(key=f"voice.{character_id}.clip").set_value([("q.wav", clip.read_bytes(), "audio/wav")]).run()
    at.button(key=f"voice.{character_id}.clone").click()
    rerun(at)
    assert any("silent" in e.value for e in at.error)
    assert current_character().voice == ""
