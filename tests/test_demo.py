"""The one-command demo on the tiny models through a real worker: every stage succeeds, with its time;
it refuses to queue work no worker would take; its post stage drafts one post however often it runs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from core.automation import demo, demo_content, pipelines
from core.config import reload_settings
from core.db import session_scope
from core.infra.storage import get_object_store
from core.jobs.lifecycle import aware
from core.jobs.queue import WorkerPresence
from core.library.assets import AssetSource, get_asset, store_image
from core.models import Asset, AssetKind, DatasetImage, JobStatus, Pipeline, Post
from core.publishing import posts
from core.training import runs as training
from core.video.subtitles import parse_srt
from tests.apptest import open_page
from tests.captions import assert_cues_follow_script, frame_at, read_caption, similarity
from tests.factories import image_bytes
from tests.test_generation_job import tiny_studio  # noqa: F401 (fixture)
from workers.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("offline_hub")]

STAGES = ("dataset", "captions", "training", "generation", "video", "post")


@pytest.fixture
def demo_studio(tiny_studio, tiny_models, monkeypatch):  # noqa: F811
    monkeypatch.setenv("STUDIO_CAPTION_MODEL", str(tiny_models["blip"]))
    monkeypatch.setenv("STUDIO_WHISPER_MODEL", str(tiny_models["whisper"]))
    reload_settings()
    return tiny_studio


@pytest.fixture
def presence():
    """Announce a worker in Redis exactly as a worker process does (its presence record), serving ``queues``."""
    announced: list[WorkerPresence] = []

    def announce(queues: list[str]) -> WorkerPresence:
        worker = WorkerPresence(queues, threads=1)
        worker._beat()
        announced.append(worker)
        return worker

    yield announce
    for worker in announced:
        worker.stop()


def test_the_demo_needs_a_running_worker(studio, monkeypatch):
    monkeypatch.setattr(demo, "WORKER_WAIT_S", 0.5)
    with pytest.raises(demo.DemoFailed, match="no worker is running"):
        demo.run_demo()
    assert pipelines.list_pipelines().total == 0  # nothing queued silently


def test_the_demo_names_the_queue_no_worker_serves(studio, presence):
    presence(["cpu", "default"])
    with pytest.raises(demo.DemoFailed, match="no worker serves the gpu queue"):
        demo.start_demo()
    assert pipelines.list_pipelines().total == 0


def test_the_demo_runs_every_stage_and_drafts_a_post_with_the_video(demo_studio, workers, tmp_path):
    workers.worker("gpu,cpu,default", threads=3)
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    print(result.output)  # the stage times, for the README
    lines = result.output.splitlines()
    for stage in (*STAGES, "total"):
        assert any(line.startswith(stage) for line in lines), (stage, result.output)

    [pipeline] = pipelines.list_pipelines().items
    assert (pipeline.kind, pipeline.status, pipeline.dry_run) == ("demo", "succeeded", True)
    dataset_id = pipeline.payload["dataset_id"]
    with session_scope() as session:
        images, captioned = session.execute(
            select(func.count(), func.count().filter(func.length(func.trim(DatasetImage.caption)) > 0))
            .where(DatasetImage.dataset_id == dataset_id)).one()
    assert (images, captioned) == (15, 15)
    lora = training.get_lora(pipeline.results["training"]["loraId"])
    assert lora.dataset_id == dataset_id
    made = [get_asset(i) for i in pipeline.results["generation"]["imageAssetIds"]]
    assert len(made) == 4 and all(a.kind == AssetKind.IMAGE for a in made)

    [post] = posts.posts_between(datetime.now(UTC), datetime.now(UTC) + timedelta(days=3))
    assert (post.status, post.platform, post.caption) == ("draft", "tiktok", demo_content.DEMO_CAPTION)
    assert aware(post.scheduled_at).hour == 19  # type: ignore[union-attr]
    [video] = posts.post_assets(post)
    assert video.kind == AssetKind.VIDEO and (video.width, video.height) == (1080, 1920)
    assert video.id == pipeline.results["video"]["videoAssetId"]
    assert pipelines.summary(pipeline)["postId"] == post.id
    _check_captions(video, demo.demo_request(dataset_id)["videoConfig"]["script"], tmp_path)

    shown = demo.demo_stages(pipeline)
    assert [s.name for s in shown] == list(STAGES[1:])
    assert all(s.status == "done" and s.seconds is not None and s.what for s in shown), shown

    # Home shows the finished demo with a link to each result.
    at = open_page("pages/home.py")
    links = {link.proto.page: link.proto.query_string for link in at.get("page_link")
             if link.proto.label.startswith("The ")}
    assert links["training"] == f"run={lora.job_id}"
    assert links["assets"] == f"asset={made[0].id}"
    assert {"videos", "calendar"} <= set(links)
    assert any(f"post {post.id} on TikTok" in m.value for m in at.markdown)
    assert any("Trigger word: `ohwx person` (the latest LoRA's" in c.value for c in at.caption)


def _check_captions(video: Asset, script: str, tmp_path: Path) -> None:
    """The demo video's captions are the script's words (its tiny whisper hears garbage and may only time
    them), and the burned-in caption reads back (OCR) as the SRT's."""
    store = get_object_store()
    cues = parse_srt(store.get_bytes(get_asset(video.meta["subtitles_asset_id"]).key).decode())
    assert_cues_follow_script(cues, script)
    path = tmp_path / "demo.mp4"
    path.write_bytes(store.get_bytes(video.key))
    cue = max(cues, key=lambda c: c.end - c.start)
    read = read_caption(frame_at(path, (cue.start + cue.end) / 2, tmp_path / "frame.png"), "eng")
    assert similarity(cue.text, read) >= 0.7, (cue.text, read)


def _pipeline_at_post_stage() -> Pipeline:
    """A demo pipeline whose video stage just finished (the row as the stages before would leave it)."""
    video = store_image("demo-test/video-stand-in.png", image_bytes(64, 64), source=AssetSource.UPLOAD)
    pipeline = Pipeline(kind="demo", status=JobStatus.RUNNING, stage="post", dry_run=True,
                        payload={"dataset_id": 1}, results={"video": {"jobIds": [], "videoAssetId": video.id},
                                                            "post": {"jobIds": []}})
    with session_scope() as session:
        session.add(pipeline)
    return pipelines.get_pipeline(pipeline.id)


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_the_post_stage_run_twice_at_once_drafts_one_post(studio):
    pipeline = _pipeline_at_post_stage()
    stage = next(s for s in pipelines.STAGES["demo"] if s.name == "post")
    start = threading.Barrier(2)
    outcomes: list[int] = []

    def finish() -> None:
        start.wait()
        outcomes.append(stage.finish(pipeline, []).results["postId"])

    threads = [threading.Thread(target=finish) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    again = stage.finish(pipelines.get_pipeline(pipeline.id), []).results["postId"]

    post_ids = _post_ids()
    assert len(post_ids) == 1 and outcomes == [post_ids[0]] * 2 and again == post_ids[0]
    pipelines.advance_pipeline(pipeline.id)
    finished = pipelines.get_pipeline(pipeline.id)
    assert finished.status == "succeeded" and finished.results["post"]["postId"] == post_ids[0]
    assert _post_ids() == post_ids


def _post_ids() -> list[int]:
    with session_scope() as session:
        return list(session.execute(select(Post.id)).scalars())
