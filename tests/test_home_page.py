"""The Home page: the demo button (it starts a ``demo`` pipeline when a worker is alive and says so when
none is), and the character at a glance (datasets, LoRA versions with the promoted one marked, recent images
and videos, next posts, what is running), read with bounded, indexed queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import event, insert, update

from core.automation import pipelines
from core.datasets.datasets import create_demo_dataset
from core.db import get_engine, session_scope
from core.jobs.queue import WorkerPresence
from core.library.assets import AssetSource, record_asset, store_image
from core.models import Asset, AssetKind, Job, JobStatus, LoraModel, Post, new_id, utcnow
from core.publishing import posts
from core.reports.overview import character_overview
from core.training import runs as training
from tests.apptest import click, open_page
from tests.factories import image_bytes


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
    assert any("No dataset yet" in i for i in infos) and any("No LoRA yet" in i for i in infos)


# --- the glance ------------------------------------------------------------------------------------------------


def _lora(name: str) -> LoraModel:
    """A LoRA version as a finished training run records it (the row; no weights are read here)."""
    job = Job(kind="train", queue="gpu", status=JobStatus.SUCCEEDED, payload={})
    lora = LoraModel(name=name, job_id=job.id, step=30, final=True, family="sd15", base_model="tiny-sd15",
                     trigger_word="ohwx person", key=f"loras/{job.id}/w.safetensors")
    with session_scope() as session:
        session.add(job)
        session.flush()
        session.add(lora)
    return lora


def test_the_glance_marks_the_promoted_lora_and_shows_recent_images_and_videos(studio):
    create_demo_dataset(name="Mika on the beach")
    older, _newer = _lora("Mika v1"), _lora("Mika v2")
    training.promote_lora(older.id or 0)
    images = [store_image(f"generated/home-{i}.png", image_bytes(96, 96, seed=i), source=AssetSource.GENERATED,
                          prompt=f"ohwx person at spot {i}") for i in range(3)]
    record_asset(key="videos/home.mp4", kind=AssetKind.VIDEO, source=AssetSource.VIDEO, content_type="video/mp4",
                 size_bytes=1000, width=1080, height=1920, meta={"image_asset_ids": [images[0].id], "duration": 8.0})

    at = open_page("pages/home.py")
    lines = [m.value for m in at.markdown]
    [promoted_line] = [line for line in lines if line.startswith("Mika v1")]
    [other_line] = [line for line in lines if line.startswith("Mika v2")]
    assert "promoted" in promoted_line and "promoted" not in other_line
    assert "Mika on the beach · 15 images, 0 captioned" in lines
    assert "**Recent images** (3)" in lines and "**Recent videos** (1)" in lines
    assert len(at.get("image")) == 4  # three images and the video's poster (its first image)
    captions = " ".join(c.value for c in at.caption)
    assert "ohwx person at spot 2" in captions and "8.0 s · 1080×1920" in captions and "`ohwx person`" in captions


# --- the demo button -------------------------------------------------------------------------------------------


def test_the_demo_button_starts_a_demo_pipeline_when_a_worker_is_alive(studio):
    worker = WorkerPresence(["gpu", "cpu", "default"], threads=1)  # the record a live worker keeps in Redis
    worker._beat()
    try:
        at = click(open_page("pages/home.py"), "home.demo.run")
    finally:
        worker.stop()
    [pipeline] = pipelines.list_pipelines(kinds=["demo"]).items
    assert pipeline.stage == "captions" and pipeline.status == "running" and pipeline.dry_run
    [caption_job] = pipelines.pipeline_view(pipeline)["stages"][0]["jobIds"]
    assert caption_job
    lines = [m.value for m in at.markdown]
    assert any("**captions** · running" in line for line in lines), lines
    assert any("**post** · waiting" in line for line in lines), lines
    assert at.button(key="home.demo.run").disabled  # no second demo while this one runs
    assert not at.error


def test_without_a_worker_the_demo_button_says_so_and_queues_nothing(studio):
    at = click(open_page("pages/home.py"), "home.demo.run")
    assert any("no worker is running" in e.value for e in at.error), [e.value for e in at.error]
    assert pipelines.list_pipelines().total == 0
    assert not at.button(key="home.demo.run").disabled


# --- bounded, indexed reads ------------------------------------------------------------------------------------


def _fill(count: int) -> None:
    """``count`` assets and jobs (rows only), as a busy studio has them."""
    start = utcnow() - timedelta(days=30)
    assets = [dict(kind=("image", "video", "lora")[i % 3], source=("generated", "video", "lora")[i % 3],
                   key=f"bulk/{i:05d}", content_type="image/png", size_bytes=i, prompt=f"p {i}", meta={},
                   created_at=start + timedelta(minutes=i)) for i in range(count)]
    job_rows = [dict(id=new_id(), kind="noop", queue="default", status=("succeeded", "failed", "running")[i % 3],
                     payload={}, progress=0.0, attempts=1, max_attempts=3, cancel_requested=False,
                     created_at=start + timedelta(minutes=i), updated_at=start) for i in range(count)]
    with session_scope() as session:
        session.execute(insert(Asset), assets)
        session.execute(insert(Job.__table__), job_rows)


def test_the_glance_reads_few_rows_through_indexes_with_ten_thousand_assets_and_jobs(studio):
    _fill(10_000)
    statements: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", capture)
    try:
        view = character_overview()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(view.images) == 6 and view.image_total == 3334 and len(view.running_jobs) == 5

    with engine.connect() as connection:
        for statement, parameters in statements:
            plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                                  parameters).all()]  # type: ignore[arg-type]
            # A table walked without an index is fine only in rowid order up to a LIMIT (it stops early).
            full_scans = [step for step in plan if step.startswith("SCAN") and "INDEX" not in step]
            walked_in_order = "LIMIT" in statement.upper() and not any("TEMP B-TREE" in step for step in plan)
            assert not full_scans or walked_in_order, (statement, plan)
            reads_rows = " count(" not in statement.lower() and "group by" not in statement.lower()
            by_key = " IN (" in statement or ".id = ?" in statement
            if reads_rows and not by_key:
                assert "LIMIT" in statement.upper(), statement
