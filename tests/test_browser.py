"""Journeys through the real app (server.py) in headless Chromium: what AppTest cannot see (custom
components, live refreshes, uploads from a browser) and the docs' screenshots.

Each journey clicks and types as a user would, then checks the database or the object store, not only
the page. With STUDIO_SCREENSHOTS_DIR set (scripts/screenshots), each saves a PNG of its key moment.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from core.infra.auth import hash_password
from core.jobs import lifecycle as jobs
from tests.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    WAIT_MS,
    by_key,
    calendar_frame,
    choose,
    drag,
    enter,
    screenshot,
    settle,
)
from tests.conftest import wait_until
from tests.factories import image_bytes
from tests.services import run_app_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PASSWORD = "correct horse battery"


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tmp_path) -> Iterator[Page]:
    """A tab at the screenshots' size that waits generously for each visible change. Its last view is
    kept (last-view.png and .html in the test's tmp_path): the first thing to look at when a journey fails."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(WAIT_MS)
    yield page
    page.screenshot(path=str(tmp_path / "last-view.png"))
    (tmp_path / "last-view.html").write_text(page.content())


def _serve(tmp_path: Path) -> Iterator[str]:
    """A fresh server process with the test's environment; yields its base URL. Its output goes to
    server.log in the test's tmp_path."""
    with run_app_server(log=tmp_path / "server.log") as base:
        yield base


@pytest.fixture
def server_with_login(studio, monkeypatch, tmp_path) -> Iterator[str]:
    """A fresh server process, so the first request it ever serves is the one under test."""
    monkeypatch.setenv("STUDIO_AUTH_DISABLED", "false")
    monkeypatch.setenv("STUDIO_UI_PASSWORD_HASH", hash_password(PASSWORD))
    yield from _serve(tmp_path)


@pytest.fixture
def server(studio, tmp_path) -> Iterator[str]:
    yield from _serve(tmp_path)


@pytest.fixture
def tiny_sd15(studio, tiny_models, monkeypatch):
    """The tiny SD 1.5 where the "Tiny (offline demo)" preset and the "tiny-lora" template look for it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    studio.models_dir.mkdir(parents=True, exist_ok=True)
    (studio.models_dir / "tiny-sd15").symlink_to(tiny_models["sd15"], target_is_directory=True)
    return studio.models_dir / "tiny-sd15"


def test_opening_a_page_url_first_shows_the_login_and_keeps_the_deep_link(server_with_login, page):
    job = jobs.create_job("sleep", {"seconds": 1})
    page.goto(f"{server_with_login}/jobs")  # the very first request of a fresh server process
    page.get_by_label("Password", exact=True).wait_for(timeout=30_000)
    page.wait_for_timeout(1_000)  # let any stray page content arrive, if it were going to
    body = page.inner_text("body")
    assert job.id[:8] not in body and "Open job" not in body, "the Jobs page leaked before login"
    screenshot(page, "login.png")

    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Wrong password.").wait_for(timeout=15_000)

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Jobs").wait_for(timeout=15_000)
    page.get_by_text(job.id[:8]).first.wait_for(timeout=15_000)


def test_images_uploaded_in_the_browser_land_in_a_new_dataset(server, page):
    from core.datasets import datasets

    page.goto(f"{server}/datasets")
    page.locator("summary", has_text="New dataset").click()
    page.get_by_label("Name", exact=True).fill("Mia")
    page.get_by_label("Trigger word", exact=True).fill("ohwx girl")
    page.get_by_role("button", name="Create dataset").click()
    page.get_by_role("heading", name="Mia").first.wait_for()
    page.locator("summary", has_text="New dataset").click()  # fold the form away again

    page.get_by_role("tab", name="Upload").click()
    files = [{"name": f"mia-{i}.png", "mimeType": "image/png", "buffer": image_bytes(320, 320, seed=90 + i)}
             for i in range(3)]
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(files)
    expect(page.locator("[data-testid='stFileChip']")).to_have_count(3, timeout=WAIT_MS)
    by_key(page, "datasets.import").get_by_role("button").click()  # enabled once the uploads reached the server
    page.get_by_text("Imported 3 image(s).").first.wait_for()

    page.get_by_role("tab", name="Images").click()
    gallery = page.locator("[data-testid='stImage'] img").filter(visible=True)
    expect(gallery).to_have_count(3, timeout=WAIT_MS)
    [dataset] = datasets.list_datasets().items
    stored = datasets.all_images(dataset.id)
    assert (dataset.name, dataset.trigger_word) == ("Mia", "ohwx girl")
    assert sorted(image.filename for image in stored) == ["mia-0.png", "mia-1.png", "mia-2.png"]
    assert {Image.open(io.BytesIO(datasets.read_image(image))).size for image in stored} == {(320, 320)}
    gallery.last.scroll_into_view_if_needed()
    screenshot(page, "datasets.png")


def test_images_uploaded_right_after_creating_a_second_dataset_land_in_the_new_one(server, page):
    """With a dataset open, creating another opens the new one, and the uploader says where files go."""
    from core.datasets import datasets

    ava = datasets.create_dataset(name="Ava", trigger_word="ohwx woman")
    page.goto(f"{server}/datasets")
    page.get_by_role("heading", name="Ava").first.wait_for()  # the only dataset is open

    new_dataset = page.locator("[data-testid='stExpander']").filter(has_text="New dataset")
    new_dataset.locator("summary").click()
    new_dataset.get_by_label("Name", exact=True).fill("Mia")
    new_dataset.get_by_role("button", name="Create dataset").click()
    page.get_by_role("heading", name="Mia").first.wait_for()
    new_dataset.locator("summary").click()  # fold the form away again

    page.get_by_role("tab", name="Upload").click()
    page.get_by_text("Uploads go into the dataset Mia.").wait_for()
    files = [{"name": f"mia-{i}.png", "mimeType": "image/png", "buffer": image_bytes(320, 320, seed=190 + i)}
             for i in range(2)]
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(files)
    expect(page.locator("[data-testid='stFileChip']")).to_have_count(2, timeout=WAIT_MS)
    by_key(page, "datasets.import").get_by_role("button").click()
    page.get_by_text("Imported 2 image(s).").first.wait_for()

    mia = next(d for d in datasets.list_datasets().items if d.name == "Mia")
    assert sorted(image.filename for image in datasets.all_images(mia.id)) == ["mia-0.png", "mia-1.png"]
    assert datasets.all_images(ava.id) == [], "nothing went into the dataset that was open before"


def test_a_caption_edited_in_the_browser_is_saved(server, page):
    from core.datasets import datasets

    dataset = datasets.create_dataset(name="Ava", trigger_word="ohwx woman")
    datasets.import_files(dataset.id, [(f"ava-{i}.png", image_bytes(256, 256, seed=30 + i)) for i in range(3)])
    first = datasets.all_images(dataset.id)[0]

    page.goto(f"{server}/captions")
    editor = by_key(page, f"captions.text.{first.id}").get_by_role("textbox")
    editor.fill("ohwx woman jogging on a beach at sunrise")
    editor.press("Control+Enter")  # Streamlit's "apply" for a text area
    page.get_by_text("1 unsaved edit(s)").first.wait_for()
    assert datasets.all_images(dataset.id)[0].caption == "", "a draft is not saved until Save"

    by_key(page, f"captions.save.{first.id}").get_by_role("button").click()
    wait_until(lambda: datasets.all_images(dataset.id)[0].caption == "ohwx woman jogging on a beach at sunrise",
               30, 0.2, what="the edited caption in the database")
    assert datasets.all_images(dataset.id)[0].caption_source == "manual"
    expect(page.get_by_text("unsaved edit")).to_have_count(0, timeout=WAIT_MS)
    screenshot(page, "captions.png")


def test_a_tiny_training_started_from_the_wizard_updates_live_and_its_lora_downloads(
    server, page, workers, tiny_sd15, tmp_path
):
    from core.datasets import datasets
    from core.training import runs as training
    from core.training.configs import get_config_by_name, params_of

    dataset = datasets.create_dataset(name="Ava", trigger_word="ohwx woman")
    datasets.import_files(dataset.id, [(f"{i}.png", image_bytes(160, 160, seed=60 + i)) for i in range(4)])
    tiny = get_config_by_name("Tiny (offline demo)")

    page.goto(f"{server}/training")
    by_key(page, "training.wizard.next.1").get_by_role("button").click()  # 1. Dataset: the only one
    choose(page, by_key(page, "training.wizard.config"), "Tiny (offline demo) · runs offline")  # 2. Config
    by_key(page, "training.wizard.next.2").get_by_role("button").click()
    enter(by_key(page, f"training.wizard.p{tiny.id}.steps").locator("input"), "6")  # 3. Parameters
    # Opened only after a rerun (the steps edit): its widgets mount late and must still show the config's values.
    page.locator("summary", has_text="Samples & checkpoints").click()
    preset = params_of(tiny)
    for field, value in (("checkpoint_every", preset.checkpoint_every), ("keep_checkpoints", preset.keep_checkpoints)):
        expect(by_key(page, f"training.wizard.p{tiny.id}.{field}").locator("input")).to_have_value(str(value))
    enter(by_key(page, f"training.wizard.p{tiny.id}.sample_every").locator("input"), "0")
    settle(page)
    by_key(page, "training.wizard.next.3").get_by_role("button").click()
    enter(by_key(page, "training.wizard.name").locator("input"), "Ava browser run")  # 4. Review
    settle(page)
    by_key(page, "training.wizard.next.4").get_by_role("button").click()

    page.get_by_text("Run Ava browser run queued.").first.wait_for()
    page.get_by_text("No steps recorded yet.").first.wait_for()
    workers.worker(queues="gpu", threads=1)  # start training only once the run view is watching
    page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)  # the chart appears without a reload
    page.get_by_text("succeeded").first.wait_for(timeout=180_000)
    # The live chart is redrawn on each refresh; wait for a drawing with its three traces (loss, EMA, LR).
    page.locator(".js-plotly-plot .scatterlayer .trace").nth(2).wait_for(state="attached")
    [run] = training.list_runs().items
    assert run.status == "succeeded" and run.payload["name"] == "Ava browser run"
    assert run.payload["config_id"] == tiny.id and run.payload["dataset_id"] == dataset.id
    assert (run.payload["params"]["steps"], run.payload["params"]["sample_every"]) == (6, 0), "the edited values"
    unedited = ("checkpoint_every", "keep_checkpoints", "learning_rate", "rank")
    kept = {name: run.payload["params"][name] for name in unedited}
    assert kept == {name: getattr(preset, name) for name in kept}, "the values not edited are the config's"
    assert training.metric_series(run.id).last_step == 6
    page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    screenshot(page, "training.png")

    page.get_by_role("tab", name="Checkpoints").click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download").first.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    [final] = training.list_loras(job_id=run.id).items
    assert final.final and final.step == 6
    assert saved.name == "Ava-browser-run-step-6.safetensors"
    assert saved.read_bytes() == training.read_lora_weights(final)


def test_images_generated_from_the_browser_appear_and_are_stored(server, page, workers, tiny_sd15):
    from core.generation import requests as generation
    from core.library import assets

    workers.worker(queues="gpu", threads=1)
    page.goto(f"{server}/generate")
    choose(page, by_key(page, "generate.template"), "Tiny (offline demo) (tiny-lora)")
    page.locator("summary", has_text="12 steps, 128×128").wait_for()  # the template's settings were loaded
    prompt = page.get_by_label("Prompt", exact=True)
    prompt.fill("ohwx woman, candid photo at a café")
    prompt.press("Control+Enter")
    settle(page)
    by_key(page, "generate.submit").get_by_role("button").click()

    results = page.locator("[data-testid='stImage'] img")
    expect(results).to_have_count(4, timeout=120_000)  # the results fill in without a reload
    [job] = generation.list_generations().items
    # The images are stored as they are made; the job is marked succeeded just after the last one.
    wait_until(lambda: jobs.get_job(job.id).status == "succeeded", 30, 0.1, what="the generation to succeed")
    assert (job.payload["template"], job.payload["prompt"]) == ("tiny-lora", "ohwx woman, candid photo at a café")
    stored = generation.job_images(job.id)
    assert len(stored) == 4
    assert {Image.open(io.BytesIO(assets.read_asset(asset))).size for asset in stored} == {(128, 128)}
    screenshot(page, "generate.png")


def test_a_template_picked_and_generate_pressed_at_once_queues_that_templates_settings(server, page):
    """Generate is clicked right after each pick, before the page has redrawn the settings: the request
    still carries the picked template's size (it carried the previous template's, before ui.generate
    moved loaded fields to fresh keys)."""
    from core.generation import requests as generation

    page.goto(f"{server}/generate")
    prompt = page.get_by_label("Prompt", exact=True)
    prompt.fill("ohwx woman at a café")
    prompt.press("Control+Enter")
    queued = []
    picks = [("Tiny (offline demo) (tiny-lora)", "tiny-lora"), ("SD 1.5 + LoRA (sd15-lora)", "sd15-lora")] * 3
    for count, (label, _name) in enumerate(picks, start=1):
        choose(page, by_key(page, "generate.template"), label)
        by_key(page, "generate.submit").get_by_role("button").click()
        wait_until(lambda n=count: generation.list_generations().total == n, 30, 0.1, what="the request")
        newest = generation.list_generations().items[0].payload
        queued.append((newest["template"], newest["width"], newest["height"], newest["prompt"]))
    assert queued == [(name, size, size, "ohwx woman at a café") for (_label, name), size in
                      zip(picks, [128, 512] * 3, strict=True)]


def test_the_calendar_component_shows_a_post_and_opens_it_for_editing(server, page):
    from core.publishing import posts

    when = datetime.now(UTC).replace(day=12, hour=9, minute=30, second=0, microsecond=0)
    post = posts.create_post(platform="instagram", scheduled_at=when, caption="Sunrise run by the river")
    posts.create_post(platform="tiktok", scheduled_at=when + timedelta(days=2), caption="Stretching routine")

    page.goto(f"{server}/calendar")
    event = calendar_frame(page).locator(".fc-event", has_text="Sunrise run by the river")
    event.wait_for()  # drawn by FullCalendar inside the component's iframe
    calendar_frame(page).locator(".fc-event", has_text="Stretching routine").wait_for()
    screenshot(page, "calendar.png")

    event.click()  # the component's eventClick opens the post in the side panel
    page.get_by_role("heading", name=f"Instagram post #{post.id}").first.wait_for()
    caption = page.get_by_label("Caption", exact=True)
    expect(caption).to_have_value("Sunrise run by the river", timeout=WAIT_MS)
    caption.fill("Sunrise run by the river, 5 km")
    caption.press("Control+Enter")
    settle(page)
    by_key(page, f"calendar.edit.{post.id}.save").get_by_role("button").click()
    wait_until(lambda: posts.get_post(post.id).caption == "Sunrise run by the river, 5 km", 30, 0.2,
               what="the edited caption in the database")
    calendar_frame(page).locator(".fc-event", has_text="Sunrise run by the river, 5 km").wait_for()


def test_dragging_a_post_on_the_calendar_moves_it_in_the_database(server, browser):
    from core.publishing import posts

    this_month = datetime.now(UTC).replace(day=10, hour=11, minute=0, second=0, microsecond=0)
    post = posts.create_post(platform="instagram", scheduled_at=this_month, caption="Drag me to another day")
    target = (this_month + timedelta(days=1 if this_month.weekday() < 6 else -1)).date()  # same week row
    page = browser.new_page(viewport={"width": 1600, "height": 1300})
    page.goto(f"{server}/calendar")
    frame = calendar_frame(page)
    event = frame.locator(".fc-event", has_text="Drag me to another day")
    event.wait_for(timeout=30_000)
    drag(page, event, frame.locator(f"td.fc-daygrid-day[data-date='{target.isoformat()}']"))

    def moved() -> bool:
        return jobs.aware(posts.get_post(post.id).scheduled_at).date() == target

    wait_until(moved, 30, 0.2, what="the dropped post's new date in the database")
    assert jobs.aware(posts.get_post(post.id).scheduled_at).hour == 11, "a drop in the month view keeps the time"
    page.get_by_text("moved to").first.wait_for(timeout=15_000)


def test_save_pressed_right_after_a_drag_keeps_the_dragged_date(server, browser):
    """Save is clicked at once after a drop, before the editor has redrawn its date: the post keeps the
    date it was dragged to (the editor's fields move to fresh keys when a drag loads them)."""
    from core.publishing import posts

    this_month = datetime.now(UTC).replace(day=10, hour=11, minute=0, second=0, microsecond=0)
    post = posts.create_post(platform="instagram", scheduled_at=this_month, caption="Drag me, then save")
    target = (this_month + timedelta(days=1 if this_month.weekday() < 6 else -1)).date()  # same week row
    page = browser.new_page(viewport={"width": 1600, "height": 1300})
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{server}/calendar")
    event = calendar_frame(page).locator(".fc-event", has_text="Drag me, then save")
    event.wait_for()
    event.click()  # open it in the editor
    page.get_by_role("heading", name=f"Instagram post #{post.id}").first.wait_for()
    settle(page)
    drag(page, event, calendar_frame(page).locator(f"td.fc-daygrid-day[data-date='{target.isoformat()}']"))
    by_key(page, f"calendar.edit.{post.id}.save").get_by_role("button").click()

    wait_until(lambda: jobs.aware(posts.get_post(post.id).scheduled_at).date() == target, 30, 0.2,
               what="the dropped post's new date in the database")
    page.get_by_text("Saved.").first.wait_for()
    settle(page)
    saved = jobs.aware(posts.get_post(post.id).scheduled_at)
    assert (saved.date(), saved.hour) == (target, 11), "Save wrote the dragged date, not the one the form had"


def test_a_jobs_log_grows_live_on_the_jobs_page(server, page, workers):
    from core.jobs import logs as joblogs

    workers.worker(queues="cpu,default", threads=1)
    page.goto(f"{server}/jobs")
    page.locator("summary", has_text="Start a test job").click()
    choose(page, by_key(page, "jobs.new.kind"), "sleep")
    payload = by_key(page, "jobs.new.payload.sleep").get_by_role("textbox")  # the sleep kind's own payload box
    expect(payload).to_have_value('{"seconds": 5, "steps": 10}', timeout=WAIT_MS)
    payload.fill('{"seconds": 12, "steps": 12, "log_each_step": true}')
    payload.press("Control+Enter")
    settle(page)
    by_key(page, "jobs.new.submit").get_by_role("button").click()

    [job] = wait_until(lambda: jobs.list_jobs().items, 30, 0.2, what="the job the page enqueued")
    assert job.kind == "sleep" and job.payload["steps"] == 12 and job.payload["log_each_step"] is True
    page.get_by_role("heading", name=f"sleep job {job.id[:8]}").first.wait_for()
    page.locator("summary", has_text="Start a test job").click()  # fold the form away again
    log = page.locator("[data-testid='stCode']").first  # a rerun may briefly show a stale copy beside it
    expect(log).to_contain_text("step 2/12", timeout=WAIT_MS)
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded
    expect(log).to_contain_text("step 6/12", timeout=WAIT_MS)
    log.scroll_into_view_if_needed()
    screenshot(page, "job-log.png")
    expect(log).to_contain_text("slept 12 s in 12 steps", timeout=WAIT_MS)
    assert page.evaluate("window.sameDocument") is True, "the lines arrived without a reload"
    # The last line is logged just before the job is marked succeeded.
    wait_until(lambda: jobs.get_job(job.id).status == "succeeded", 30, 0.1, what="the job to succeed")
    # The job table above moves on by itself too (its cells are the grid's accessible copy of the canvas).
    row = page.locator("[data-testid='stDataFrame'] [role=gridcell]")
    expect(row.filter(has_text="succeeded").first).to_be_attached(timeout=WAIT_MS)
    assert page.evaluate("window.sameDocument") is True, "the table moved on without a reload"
    stored = [entry.message for entry in joblogs.read_logs(job.id).entries]
    assert [f"step {i}/12" for i in range(1, 13)] == [m for m in stored if m.startswith("step ")]


def test_home_and_monitoring_show_the_studio_at_work(server, page, workers):
    from sqlalchemy import update

    from core.db import session_scope
    from core.models import Post
    from core.publishing import posts

    workers.worker(queues="cpu,default", threads=2)
    done = [jobs.create_job("noop", {}) for _ in range(2)]
    failed = jobs.create_job("sleep", {"seconds": 0.1, "steps": 1, "fail_at_step": 0})
    running = jobs.create_job("sleep", {"seconds": 120, "steps": 120})
    post = posts.create_post(platform="tiktok", scheduled_at=datetime.now(UTC) + timedelta(days=1), caption="Gym vlog")
    with session_scope() as session:  # scheduled, as the Home page lists only those (the checks are tested elsewhere)
        session.execute(update(Post).where(Post.id == post.id).values(status="scheduled"))

    def settled() -> bool:
        statuses = [jobs.get_job(job.id).status for job in (*done, failed, running)]
        return statuses == ["succeeded", "succeeded", "failed", "running"]

    wait_until(settled, 60, 0.2, what="two finished jobs, a failed one and a running one")
    try:
        page.goto(server)
        page.get_by_text(running.id[:8]).first.wait_for()
        page.get_by_text("Gym vlog").first.wait_for()

        page.goto(f"{server}/monitoring")
        page.get_by_text(f"{running.id[:8]} sleep on").first.wait_for()  # the worker's running job
        page.get_by_text("simulated failure at step 0").first.wait_for()  # among the latest failures
        page.locator(".js-plotly-plot").first.wait_for()  # jobs finished per hour
        screenshot(page, "monitoring.png")
    finally:
        jobs.cancel_job(running.id)
        wait_until(lambda: jobs.get_job(running.id).status == "cancelled", 30, 0.2, what="the sleep job to stop")


@pytest.fixture
def demo_server(studio, tiny_sd15, tiny_models, monkeypatch, tmp_path) -> Iterator[str]:
    """The app with the demo's models set before its process starts (the workers get them too)."""
    from core.config import reload_settings

    monkeypatch.setenv("STUDIO_CAPTION_MODEL", str(tiny_models["blip"]))
    monkeypatch.setenv("STUDIO_WHISPER_MODEL", str(tiny_models["whisper"]))
    reload_settings()
    yield from _serve(tmp_path)


def test_the_home_demo_button_runs_the_whole_chain_and_home_shows_what_it_made(demo_server, page, workers):
    from core.automation import pipelines
    from core.jobs import queue
    from core.models import AssetKind
    from core.publishing import posts

    workers.worker("gpu,cpu,default", threads=3)
    wait_until(queue.list_workers, 60, 0.2, what="the worker to announce itself")  # else the button refuses
    page.goto(demo_server)
    page.get_by_role("button", name="Run the demo").click()
    # The stage list refreshes on its own; the links appear only once every stage is done.
    page.get_by_text("The draft post on the Calendar").wait_for(timeout=240_000)

    [pipeline] = pipelines.list_pipelines(kinds=["demo"]).items
    assert pipeline.status == "succeeded", pipeline.error
    post = posts.get_post(pipeline.results["post"]["postId"])
    assert post.status == "draft" and [a.kind for a in posts.post_assets(post)] == [AssetKind.VIDEO]

    page.goto(demo_server)  # a fresh visit: the glance lists what the demo made
    page.get_by_text("LoRA versions (1)").wait_for()
    page.get_by_text("Recent images (4)").wait_for()
    page.get_by_text("Recent videos (1)").wait_for()
    screenshot(page, "home.png")

