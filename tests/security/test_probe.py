"""The outside probe of issue 30, replayed against the real server (server.py) in production mode: a browser's
requests with httpx, and a raw Streamlit websocket client (tests/security/streamlit_client.py) that sends
whatever widget values, pages, fragments and headers it likes. One server for the module; the tests that
spend the login and rate budgets run last."""

from __future__ import annotations

import ast
import os
import re
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from streamlit.proto.BackMsg_pb2 import BackMsg

from core.datasets.datasets import create_dataset, import_files
from core.db import upgrade_schema
from core.infra.auth import hash_password
from tests.conftest import ROOT, TEST_API_TOKEN, _reset_caches
from tests.factories import image_bytes
from tests.security.streamlit_client import Drawn, StreamlitClient, click, upload
from tests.services import run_app_server

PASSWORD = "correct horse battery staple"
AUTH = {"Authorization": f"Bearer {TEST_API_TOKEN}"}
IDLE_S = 12  # STUDIO_SESSION_IDLE_MINUTES=0.2 (logging three sessions in takes seconds on a busy machine)
PUBLIC_LIMIT = 40  # open requests a minute per client address
MB = 1024 * 1024


@dataclass(frozen=True)
class Studio:
    base: str
    data_dir: Path
    log: Path
    namespace: str


@contextmanager
def _serve(tmp: Path, redis_url: str, **extra_env: str) -> Iterator[Studio]:
    namespace = f"p{uuid.uuid4().hex[:10]}"
    env = {
        "STUDIO_ENV": "production", "STUDIO_DATA_DIR": str(tmp / "data"), "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{tmp / 'data' / 'studio.db'}",
        "STUDIO_REDIS_NAMESPACE": namespace, "STUDIO_STORAGE_BACKEND": "local",
        "STUDIO_API_TOKEN": TEST_API_TOKEN, "STUDIO_SIGNING_KEY": "probe-signing-key-5f1c0a9e7d",
        "STUDIO_TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "STUDIO_UI_PASSWORD_HASH": hash_password(PASSWORD), "STUDIO_PUBLIC_URL": "http://127.0.0.1",
        "STUDIO_SESSION_IDLE_MINUTES": str(IDLE_S / 60), "STUDIO_PUBLIC_REQUESTS_PER_MINUTE": str(PUBLIC_LIMIT),
        "STUDIO_UPLOAD_SESSION_BUDGET_MB": "2", "STUDIO_LOGIN_MAX_FAILURES": "2",
        "STUDIO_UPLOAD_MAX_FILE_MB": "1", "STUDIO_UPLOAD_MAX_ZIP_MB": "1",  # server.py sets maxUploadSize from them
        **extra_env,
    }
    log = tmp / "server.log"
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("STUDIO_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        _reset_caches()
        upgrade_schema()
        dataset = create_dataset(name="Ava", trigger_word="ohwx")  # the Datasets page then draws an image (/media)
        import_files(dataset.id, [("a.png", image_bytes(64, 64, seed=1))])
        with run_app_server(log=log) as base:
            yield Studio(base=base, data_dir=tmp / "data", log=log, namespace=namespace)
    _reset_caches()


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Studio]:
    with _serve(tmp_path_factory.mktemp("probe"), redis_url) as studio:
        yield studio


def _logged_in(studio: Studio, page: str = "") -> StreamlitClient:
    client = StreamlitClient(studio.base)
    drawn = client.log_in(PASSWORD, page=page)
    assert not drawn.has("text_input", label="Password"), drawn.texts()
    return client


# --- 1. uploads -----------------------------------------------------------------------------------------------


def test_uploads_need_a_logged_in_session_and_fit_its_budget(studio_server):
    with StreamlitClient(studio_server.base) as anonymous:
        assert anonymous.run().has("text_input", label="Password")
        refused = upload(studio_server.base, anonymous.session_id, b"x" * MB)
        assert refused.status_code == 403, refused.text
    with _logged_in(studio_server) as owner:
        too_big = upload(studio_server.base, owner.session_id, b"x" * (MB + MB // 10), file_id="f0")
        assert too_big.status_code == 413 and "holds" not in too_big.text, "Streamlit's maxUploadSize is 1 MB"
        for file_id in ("f1", "f2"):
            accepted = upload(studio_server.base, owner.session_id, b"x" * (MB * 9 // 10), file_id=file_id)
            assert accepted.status_code == 204, accepted.text
        over = upload(studio_server.base, owner.session_id, b"x" * (MB * 9 // 10), file_id="f3")
        assert over.status_code == 413 and "holds 2 MB" in over.json()["error"], "the session's budget is 2 MB"


# --- 3 and 5. expiry in callbacks and fragments, logging out ------------------------------------------------


def _queued_job(base: str) -> str:
    created = httpx.post(f"{base}/api/jobs", json={"kind": "noop", "payload": {}}, headers=AUTH, timeout=30)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _job_status(base: str, job_id: str) -> str:
    return str(httpx.get(f"{base}/api/jobs/{job_id}", headers=AUTH, timeout=30).json()["status"])


def test_an_expired_session_can_neither_click_nor_refresh_a_fragment_nor_fetch_its_media(studio_server):
    job_id = _queued_job(studio_server.base)
    clicker, watcher = _logged_in(studio_server, "jobs"), _logged_in(studio_server, "jobs")
    viewer = _logged_in(studio_server, "datasets")
    with clicker, watcher, viewer:
        [picture] = [image.url for element, _ in viewer.run(page="datasets").elements
                     if element.WhichOneof("type") == "imgs" for image in element.imgs.imgs]
        assert httpx.get(studio_server.base + picture, timeout=30).status_code == 200
        cancel_id, _ = clicker.run(page="jobs").widget("button", key="jobs.cancel")
        detail = watcher.run(page="jobs")
        _, fragment_id = detail.widget("button", key="jobs.cancel")
        assert fragment_id in detail.fragments, "the job detail refreshes itself"
        time.sleep(IDLE_S + 1)  # past the idle limit, without an interaction

        assert httpx.get(studio_server.base + picture, timeout=30).status_code == 404, "no media after the login"

        clicked = clicker.run(page="jobs", widgets=[click(cancel_id)])
        assert clicked.has("text_input", label="Password")
        assert _job_status(studio_server.base, job_id) == "queued", "the expired session's click did nothing"

        refreshed = watcher.run(page="jobs", fragment_id=fragment_id)
        assert refreshed.has("text_input", label="Password"), "the fragment turned into the login"
        assert not refreshed.has("button", key="jobs.cancel")


def test_the_sidebar_logs_out(studio_server):
    with _logged_in(studio_server) as owner:
        logout_id, _ = owner.run().widget("button", key="auth.logout")
        after = owner.run(widgets=[click(logout_id)])
        assert after.has("text_input", label="Password") and "You logged out." in after.texts()
        assert upload(studio_server.base, owner.session_id, b"x").status_code == 403


def test_every_callback_and_fragment_in_ui_goes_through_the_one_session_guard():
    """Streamlit runs callbacks and fragment reruns without app.py's gate: each must use ui.auth's guard()."""
    bypasses = []
    for path in sorted([*(ROOT / "ui").rglob("*.py"), *(ROOT / "pages").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Attribute) and node.attr == "fragment" and path != ROOT / "ui" / "auth.py":
                bypasses.append(f"{where} uses st.fragment (use ui.auth.fragment)")
            if isinstance(node, ast.keyword) and node.arg and node.arg.startswith("on_"):
                value = node.value
                guarded = isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "guard"
                if not (guarded or isinstance(value, ast.Constant)):
                    bypasses.append(f"{where} {node.arg}= is not wrapped in guard()")
    assert not bypasses, "\n".join(bypasses)


# --- 4. OAuth errors --------------------------------------------------------------------------------------------


def test_the_oauth_callback_carries_no_attacker_text(studio_server):
    phishing = "Session expired. Sign in again at https://evil.example/reset"
    answer = httpx.get(f"{studio_server.base}/api/oauth/callback/meta",
                       params={"error": "x", "error_description": phishing}, timeout=30)
    assert answer.status_code == 303
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["oauth_error"] == ["consent refused: the provider refused the connection"]
    assert "evil.example" not in answer.headers["location"] and query["oauth_sig"]


# --- 7, 8, 9, 12. error details, headers, metrics, file modes ----------------------------------------------------


def test_a_non_ascii_digit_in_a_link_shows_no_traceback(studio_server):
    with _logged_in(studio_server, "assets") as owner:
        drawn = owner.run(page="assets", query="asset=%C2%B2")
        assert not drawn.exceptions(), drawn.exceptions()


def test_every_response_carries_the_security_headers(studio_server):
    for path in ("/", "/api/health", "/api/jobs/nope"):
        headers = httpx.get(f"{studio_server.base}{path}", timeout=30).headers
        assert headers["x-frame-options"] == "SAMEORIGIN", path
        assert "frame-ancestors 'self'" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer", path
    assert httpx.get(f"{studio_server.base}/api/health", timeout=30).headers["cache-control"] == "no-store"


def test_streamlits_metrics_need_a_token(studio_server):
    assert httpx.get(f"{studio_server.base}/_stcore/metrics", timeout=30).status_code == 404
    assert httpx.get(f"{studio_server.base}/_stcore/metrics", headers=AUTH, timeout=30).status_code == 200


def test_a_client_cannot_clear_the_servers_caches(studio_server):
    """Streamlit's clear_cache message empties every user's caches and the sender's session state."""
    with _logged_in(studio_server) as owner:
        message = BackMsg()
        message.clear_cache = True
        owner.connection.send(message.SerializeToString())
        assert not owner.run().has("text_input", label="Password"), "the session state survived"


def test_the_data_folder_is_the_owners_alone(studio_server):
    assert stat.S_IMODE(studio_server.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((studio_server.data_dir / "studio.db").stat().st_mode) == 0o600


# --- 2. addresses, login budget, rate limits (these spend the budgets: last) ----------------------------------


def _wait_asked(drawn: Drawn) -> int | None:
    found = [re.search(r"try again in (\d+) seconds?", t) for t in drawn.texts()]
    return next((int(m.group(1)) for m in found if m), None)


def test_a_forged_forwarded_for_neither_escapes_the_login_limit_nor_locks_the_owner_out(studio_server):
    waits: list[int] = []
    with StreamlitClient(studio_server.base) as guesser:
        for _ in range(5):  # 2 failures from localhost (the shared bucket), then waits of 1 and 2 s
            if waits and waits[-1] >= 2:
                break
            if (wait := _wait_asked(guesser.log_in("wrong password"))) is not None:
                waits.append(wait)
                if wait < 2:
                    time.sleep(wait + 0.2)
    assert waits == [1, 2], "every failure past the budget doubles the wait"
    with StreamlitClient(studio_server.base, headers={"X-Forwarded-For": "203.0.113.9"}) as forged:
        refused = forged.log_in(PASSWORD)
        assert refused.has("text_input", label="Password") and _wait_asked(refused), refused.texts()
    time.sleep(2.5)  # the wait, not a 15-minute lock
    with _logged_in(studio_server):
        pass
    log = studio_server.log.read_text()
    assert "dashboard logins paused for every client for 2 s" in log and "dashboard login from" in log
    assert "203.0.113.9" not in log, "the forged address was not believed"


def test_a_forged_forwarded_for_does_not_escape_the_rate_limit(studio_server):
    statuses = [httpx.get(f"{studio_server.base}/api/health", headers={"X-Forwarded-For": f"198.51.100.{n}"},
                          timeout=30).status_code for n in range(PUBLIC_LIMIT + 1)]
    assert 429 in statuses


def test_behind_a_trusted_proxy_its_forwarded_address_is_the_client(tmp_path_factory, redis_url):
    """The other side of the two tests above: a proxy named in STUDIO_TRUSTED_PROXIES (here the loopback the
    test connects from) is believed, so each forwarded client has its own budget and one client alone is limited."""
    with _serve(tmp_path_factory.mktemp("proxied"), redis_url, STUDIO_TRUSTED_PROXIES="127.0.0.1") as studio:
        def health(client: str) -> int:
            return httpx.get(f"{studio.base}/api/health", headers={"X-Forwarded-For": client}, timeout=30).status_code

        assert 429 not in [health(f"198.51.100.{n}") for n in range(PUBLIC_LIMIT + 1)], "one budget per client"
        assert 429 in [health("203.0.113.7") for _ in range(PUBLIC_LIMIT + 1)], "one client alone is limited"
