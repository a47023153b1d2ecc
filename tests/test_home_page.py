"""The Home page shows what is coming: the next scheduled posts and the pipelines still running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from core import pipelines, posts
from core.datasets import create_demo_dataset
from core.db import session_scope
from core.models import Post
from tests.apptest import open_page


def test_home_lists_the_next_posts_and_running_pipelines(studio):
    post = posts.create_post(platform="tiktok", scheduled_at=datetime.now(UTC) + timedelta(days=1),
                             caption="Sunrise miles with me")
    with session_scope() as session:  # scheduled (the checks are tested elsewhere)
        session.execute(update(Post).where(Post.id == post.id).values(status="scheduled"))
    dataset, _ = create_demo_dataset()
    pipeline, _ = pipelines.create_pipeline("lora", {"datasetId": dataset.id, "trainingName": "home",
                                                     "testPrompts": ["x"], "dryRun": True})
    at = open_page("pages/home.py")
    texts = " ".join(m.value for m in at.markdown)
    assert "TikTok · Sunrise miles with me" in texts
    assert any(pipeline.id[:8] in bar.text for bar in at.get("progress") if hasattr(bar, "text"))


def test_an_empty_studio_says_where_to_start(studio):
    at = open_page("pages/home.py")
    infos = [info.value for info in at.info]
    assert any("Nothing scheduled" in i for i in infos) and any("No pipeline running" in i for i in infos)
