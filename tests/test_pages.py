"""Every page renders under AppTest against real services; the login gate blocks when enabled."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import reload_settings
from core.infra.auth import hash_password
from core.jobs import lifecycle as jobs
from ui import page_paths

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)


def test_every_page_file_is_registered_in_the_navigation():
    app_source = (ROOT / "app.py").read_text()
    assert PAGES, "no pages found"
    for page in PAGES:
        assert f'"{page}"' in app_source, f"{page} is not registered in app.py"


def test_every_page_path_the_ui_links_to_is_a_registered_page():
    assert sorted(page_paths.ALL) == PAGES, "ui/page_paths.py names every page file, and only those"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_exceptions(studio, page):
    jobs.create_job("sleep", {"seconds": 1})
    at = _app().run()
    at.switch_page(page).run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.title, f"{page} shows no title"


def test_sidebar_shows_service_health(studio):
    at = _app().run()
    sidebar_text = " ".join(m.value for m in at.sidebar.markdown)
    for service in ("database", "redis", "storage", "workers"):
        assert service in sidebar_text


def test_jobs_page_lists_jobs_and_cancels_the_selected_one(studio):
    job = jobs.create_job("sleep", {"seconds": 30})
    at = _app().run()
    at.switch_page("pages/jobs.py").run()
    assert not at.exception
    assert at.selectbox(key="jobs.open").value == job.id
    at.button(key="jobs.cancel").click().run()
    assert jobs.get_job(job.id).status == "cancelled"
    assert not at.exception


def test_jobs_page_filters_by_status(studio):
    queued = jobs.create_job("noop")
    cancelled = jobs.cancel_job(jobs.create_job("noop").id)
    at = _app().run()
    at.switch_page("pages/jobs.py").run()
    at.multiselect(key="jobs.status").set_value(["cancelled"]).run()
    assert at.selectbox(key="jobs.open").options == [cancelled.id[:8]]
    assert queued.id[:8] not in at.selectbox(key="jobs.open").options


def test_enqueueing_a_test_job_from_the_jobs_page(studio):
    at = _app().run()
    at.switch_page("pages/jobs.py").run()
    at.button(key="jobs.new.submit").click().run()
    assert not at.exception
    assert jobs.list_jobs().total == 1


def test_a_test_job_enqueued_while_another_is_open_becomes_the_open_one(studio):
    older = jobs.create_job("sleep", {"seconds": 30})
    at = _app().run()
    at.switch_page("pages/jobs.py").run()
    assert at.selectbox(key="jobs.open").value == older.id
    at.button(key="jobs.new.submit").click().run()
    assert not at.exception
    [queued] = [job for job in jobs.list_jobs().items if job.id != older.id]
    assert at.selectbox(key="jobs.open").value == queued.id
    assert any(queued.id[:8] in h.value for h in at.subheader)


def test_a_job_link_from_a_pipeline_stage_opens_that_job(studio):
    """A stage row on Automation links to /jobs?job=<id>: the list is filtered to it and it is the open job."""
    linked = jobs.create_job("noop")
    newer = jobs.create_job("noop")
    at = _app().run()
    at.query_params.update(job=linked.id)
    at.switch_page("pages/jobs.py").run()
    assert not at.exception
    assert at.selectbox(key="jobs.open").options == [linked.id[:8]]
    assert newer.id[:8] not in at.selectbox(key="jobs.open").options
    assert any(linked.id[:8] in h.value for h in at.subheader)


@pytest.fixture
def login_enabled(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_AUTH_DISABLED", "false")
    monkeypatch.setenv("STUDIO_UI_PASSWORD_HASH", hash_password("correct horse"))
    reload_settings()


def _home_rendered(at) -> bool:
    return any(h.value == "Run the demo" for h in at.subheader)


def test_login_gate_blocks_every_page_until_the_password_is_given(login_enabled):
    at = _app().run()
    assert [t.value for t in at.title] == ["InfluencerAI Studio"]
    assert not _home_rendered(at), "the home page content must not render before login"
    at.text_input[0].input("wrong password")
    at.button[0].click().run()
    assert any("Wrong password" in e.value for e in at.error)
    assert not _home_rendered(at)
    at.text_input[0].input("correct horse")
    at.button[0].click().run()
    assert _home_rendered(at), "the home page renders after login"


def test_login_gate_explains_a_missing_password(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_AUTH_DISABLED", "false")
    reload_settings()
    at = _app().run()
    assert any("STUDIO_UI_PASSWORD_HASH" in e.value for e in at.error)
    assert not _home_rendered(at)


def test_the_ui_process_never_imports_torch(studio):
    """Every page rendered in a fresh interpreter: the dashboard must not load torch or a model."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        "from core.datasets import datasets\n"
        "datasets.create_demo_dataset()\n"
        "at = AppTest.from_file('app.py', default_timeout=60).run()\n"
        f"for page in {PAGES!r}:\n"
        "    at.switch_page(page).run()\n"
        "    assert not at.exception, (page, at.exception)\n"
        "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'diffusers', 'whisper')))\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HEAVY []" in result.stdout
