"""What AppTest cannot see, checked in a real browser against the real server (server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from core import jobs
from core.auth import hash_password
from tests.conftest import wait_until
from tests.services import run_app_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "correct horse battery"


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _serve() -> Iterator[str]:
    """A fresh server process with the test's environment; yields its base URL."""
    with run_app_server() as base:
        yield base


@pytest.fixture
def server_with_login(studio, monkeypatch) -> Iterator[str]:
    """A fresh server process, so the first request it ever serves is the one under test."""
    monkeypatch.setenv("STUDIO_AUTH_DISABLED", "false")
    monkeypatch.setenv("STUDIO_UI_PASSWORD_HASH", hash_password(PASSWORD))
    yield from _serve()


@pytest.fixture
def server(studio) -> Iterator[str]:
    yield from _serve()


def test_opening_a_page_url_first_shows_the_login_and_keeps_the_deep_link(server_with_login, browser):
    job = jobs.create_job("sleep", {"seconds": 1})
    page = browser.new_page()
    page.goto(f"{server_with_login}/jobs")  # the very first request of a fresh server process
    page.get_by_label("Password", exact=True).wait_for(timeout=30_000)
    page.wait_for_timeout(1_000)  # let any stray page content arrive, if it were going to
    body = page.inner_text("body")
    assert job.id[:8] not in body and "Open job" not in body, "the Jobs page leaked before login"

    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Wrong password.").wait_for(timeout=15_000)

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Jobs").wait_for(timeout=15_000)
    page.get_by_text(job.id[:8]).first.wait_for(timeout=15_000)


def test_a_training_run_updates_live_in_the_browser_and_its_lora_downloads(
    server, browser, workers, tiny_models, monkeypatch, tmp_path
):
    from core import training
    from core.datasets import create_dataset, import_files
    from tests.factories import image_bytes

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dataset = create_dataset(name="Ava", trigger_word="ohwx")
    import_files(dataset.id, [(f"{i}.png", image_bytes(160, 160, seed=60 + i)) for i in range(4)])
    params = {"base_model": str(tiny_models["sd15"]), "resolution": 128, "rank": 4, "alpha": 4, "steps": 80,
              "batch_size": 2, "mixed_precision": "no", "learning_rate": 1e-2, "sample_every": 0,
              "checkpoint_every": 40}
    job = training.submit_training(dataset_id=dataset.id, params=params, name="browser run")
    page = browser.new_page()
    page.goto(f"{server}/training?run={job.id}")
    page.get_by_text("browser run").first.wait_for(timeout=30_000)
    workers.worker(queues="gpu", threads=1)  # start training only once the page is watching

    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)  # the chart appears without a reload
    page.get_by_text("succeeded").first.wait_for(timeout=120_000)
    # The live chart is redrawn on each refresh; wait for a drawing with its three traces (loss, EMA, LR).
    page.locator(".js-plotly-plot .scatterlayer .trace").nth(2).wait_for(state="attached", timeout=30_000)
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 3, "loss, its EMA and the LR"

    page.get_by_role("tab", name="Checkpoints").click()
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="Download").first.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    final = training.list_loras(job_id=job.id).items[0]
    assert saved.name.endswith(".safetensors") and saved.read_bytes() == training.read_lora_weights(final)


def test_dragging_a_post_on_the_calendar_moves_it_in_the_database(server, browser):
    from datetime import UTC, datetime, timedelta

    from core import posts

    this_month = datetime.now(UTC).replace(day=10, hour=11, minute=0, second=0, microsecond=0)
    post = posts.create_post(platform="instagram", scheduled_at=this_month, caption="Drag me to another day")
    target = (this_month + timedelta(days=1 if this_month.weekday() < 6 else -1)).date()  # same week row
    page = browser.new_page(viewport={"width": 1600, "height": 1300})
    page.goto(f"{server}/calendar")
    frame = page.frame_locator("iframe[title*='calendar']")
    event = frame.locator(".fc-event", has_text="Drag me to another day")
    event.wait_for(timeout=30_000)
    cell = frame.locator(f"td.fc-daygrid-day[data-date='{target.isoformat()}']")
    start, end = event.bounding_box(), cell.bounding_box()
    assert start and end
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=15)
    page.mouse.up()

    def moved() -> bool:
        return jobs.aware(posts.get_post(post.id).scheduled_at).date() == target

    wait_until(moved, 30, 0.2, what="the dropped post's new date in the database")
    assert jobs.aware(posts.get_post(post.id).scheduled_at).hour == 11, "a drop in the month view keeps the time"
    page.get_by_text("moved to").first.wait_for(timeout=15_000)
