"""The one-command demo on the tiny models through a real worker: every stage succeeds, with its time."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from core import demo, pipelines, posts
from core.config import reload_settings
from core.models import AssetKind
from tests.test_generation_job import tiny_studio  # noqa: F401 (fixture)
from workers.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("offline_hub")]


@pytest.fixture
def demo_studio(tiny_studio, tiny_models, monkeypatch):  # noqa: F811
    monkeypatch.setenv("STUDIO_CAPTION_MODEL", str(tiny_models["blip"]))
    monkeypatch.setenv("STUDIO_WHISPER_MODEL", str(tiny_models["whisper"]))
    reload_settings()
    return tiny_studio


def test_the_demo_needs_a_running_worker(studio):
    with pytest.raises(demo.DemoFailed, match="no worker is running"):
        demo.run_demo()


def test_the_demo_runs_every_stage_and_drafts_a_post_with_the_video(demo_studio, workers):
    workers.worker("gpu,cpu,default", threads=3)
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    print(result.output)  # the stage times, for the README
    for stage in ("dataset", "captions", "LoRA → images → video", "draft post", "training", "generation", "total"):
        assert stage in result.output
    pipeline = pipelines.list_pipelines().items[0]
    assert pipeline.status == "succeeded" and len(pipeline.results["generation"]["imageAssetIds"]) == 4
    [post] = posts.posts_between(*_window())
    assert post.status == "draft" and post.platform == "tiktok"
    [video] = posts.post_assets(post)
    assert video.kind == AssetKind.VIDEO and (video.width, video.height) == (1080, 1920)


def _window():
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    return now, now + timedelta(days=3)
