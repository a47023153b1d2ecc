"""Secrets never leak: with a known, unique value for every secret, a whole content pipeline runs through the
API and real workers (an LLM plan against a fake OpenAI server that wants its key → an image with the promoted
LoRA → a video → published at once to a fake YouTube whose expired token is refreshed with the client secret),
with objects on S3 and a login through the dashboard. Then every log line (worker processes and this process),
every table row, every stored object, every Redis key and value, every notification sent out and every API error
answer is searched for each secret, raw, URL-encoded and base64-encoded."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import inspect, select, text
from starlette.applications import Starlette
from starlette.testclient import TestClient

from api.routes import api_routes
from core.automation import pipelines
from core.config import reload_settings
from core.db import get_engine, session_scope
from core.infra.auth import hash_password
from core.infra.crypto import TokenCipher
from core.infra.logging_setup import make_handler
from core.infra.redis import get_redis
from core.infra.storage import get_object_store, reset_object_store
from core.models import Post, PostStatus, SocialAccount
from core.publishing import posts, social_accounts
from core.training import runs as training
from tests.conftest import ROOT, WorkerProcesses, wait_until
from tests.factories import days_from_today
from tests.fakes.google import FakeGoogle
from tests.fakes.openai import FakeOpenAI
from tests.s3_server import run_s3_server
from tests.test_generation_job import lora_files, register_lora, tiny_studio  # noqa: F401 (fixtures)
from tests.test_pipeline_jobs import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("offline_hub")]


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"


class LoggedWorkers(WorkerProcesses):
    """Worker processes whose stdout and stderr (every log line they write) go to one file."""

    def __init__(self, log: Path) -> None:
        super().__init__()
        self.log = log

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as output:
            process = subprocess.Popen([sys.executable, "-m", "workers", *args], cwd=ROOT, env=dict(os.environ),
                                       start_new_session=True, stdout=output, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process


# --- where secrets could hide ------------------------------------------------------------------------------------


def needles(secret: str) -> list[bytes]:
    """The secret as it could appear: raw, URL-encoded, and base64 (plain and URL-safe) at each of the three
    alignments it could have inside a longer encoded blob (the stable middle of each)."""
    raw = secret.encode()
    found = {raw, quote(secret, safe="").encode()}
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw)
            start = (offset * 4 + 2) // 3 + 1  # past the characters that mix in the padding bytes
            found.add(encoded[start:start + (len(raw) * 4) // 3 - 4])
    return sorted(found)


def leaks(haystacks: dict[str, bytes], secrets: dict[str, str]) -> list[str]:
    return [f"{name} found in {where}"
            for where, data in haystacks.items() for name, value in secrets.items()
            for needle in needles(value) if needle and needle in data]


def database_rows() -> dict[str, bytes]:
    """Every column of every row of every table, as text."""
    engine = get_engine()
    found = {}
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            rows = connection.execute(text(f'SELECT * FROM "{table}"')).all()  # noqa: S608 (our own table names)
            found[f"table {table}"] = "\n".join(repr(tuple(row)) for row in rows).encode()
    return found


def database_files(data_dir: Path) -> dict[str, bytes]:
    """The SQLite files byte for byte, free pages included (deleted rows linger there)."""
    return {f"file {p.name}": p.read_bytes() for p in data_dir.glob("studio.db*")}


def stored_objects() -> dict[str, bytes]:
    store = get_object_store()
    return {f"object {info.key}": store.get_bytes(info.key) for info in store.list("", limit=10_000)}


def redis_contents() -> dict[str, bytes]:
    """Every key of the test Redis with its value, whatever its type."""
    client = get_redis()
    found = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            value: Any = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = client.xrange(key)
        else:
            value = kind
        found[f"redis {key.decode(errors='replace')}"] = key + b" " + repr(value).encode()
    return found


def other_files(data_dir: Path) -> dict[str, bytes]:
    """Whatever else the studio wrote under its data folder (models excluded: symlinked test weights)."""
    return {f"file {p.relative_to(data_dir)}": p.read_bytes() for p in data_dir.rglob("*")
            if p.is_file() and "models" not in p.relative_to(data_dir).parts and not p.name.startswith("studio.db")
            and p.name != "token-encryption.key"}


# --- the run ------------------------------------------------------------------------------------------------------


def _plan_answer(request: dict[str, Any]) -> str:
    user = next(m["content"] for m in request["messages"] if "Slots: " in str(m["content"]))
    slots = json.loads(re.search(r"Slots: (\[.*?\])\n", user).group(1))
    return json.dumps({"posts": [
        {"slot": s["slot"], "caption": "Three stretches after every run. #stretch", "hashtags": ["stretch"],
         "image_prompt": "stretching on a trail", "title": "Three stretches"} for s in slots]})


@pytest.fixture
def secrets() -> dict[str, str]:
    return {
        "api token": _unique("apitok"), "webhook secret": _unique("whsec"), "llm api key": _unique("sk-llm"),
        "ui password": _unique("pw"), "wrong ui password": _unique("wrongpw"),
        "google client secret": _unique("gcs"), "meta app secret": _unique("metasec"),
        "tiktok client secret": _unique("ttsec"), "s3 secret key": _unique("s3sec"),
        "signing key": _unique("signkey"), "metrics token": _unique("metrics"),
        "token encryption key": Fernet.generate_key().decode(),
    }


@pytest.fixture
def secret_studio(tiny_studio, monkeypatch, secrets, lora_files, tmp_path) -> Iterator[dict[str, Any]]:  # noqa: F811
    llm, google, receiver = FakeOpenAI(api_key=secrets["llm api key"]), FakeGoogle(
        client_secret=secrets["google client secret"]), Receiver()
    with run_s3_server() as s3, llm.running(), google.running(), receiver.running():
        env = {
            "STUDIO_API_TOKEN": secrets["api token"], "STUDIO_WEBHOOK_SECRET": secrets["webhook secret"],
            "STUDIO_WEBHOOK_REQUIRE_SIGNATURE": "true", "STUDIO_LLM_API_KEY": secrets["llm api key"],
            "STUDIO_LLM_BASE_URL": f"{llm.url}/v1", "STUDIO_LLM_MODEL": "planner-8b",
            "STUDIO_UI_PASSWORD_HASH": hash_password(secrets["ui password"]), "STUDIO_AUTH_DISABLED": "false",
            "STUDIO_META_APP_ID": "1234", "STUDIO_META_APP_SECRET": secrets["meta app secret"],
            "STUDIO_TIKTOK_CLIENT_KEY": "ttkey", "STUDIO_TIKTOK_CLIENT_SECRET": secrets["tiktok client secret"],
            "STUDIO_SIGNING_KEY": secrets["signing key"], "STUDIO_METRICS_TOKEN": secrets["metrics token"],
            "STUDIO_TOKEN_ENCRYPTION_KEY": secrets["token encryption key"],
            "STUDIO_STORAGE_BACKEND": "s3", "STUDIO_S3_ENDPOINT": s3.endpoint, "STUDIO_S3_BUCKET": "studio",
            "STUDIO_S3_ACCESS_KEY": "studio-access", "STUDIO_S3_SECRET_KEY": secrets["s3 secret key"],
            "STUDIO_WHISPER_MODEL": "", "STUDIO_LOG_LEVEL": "DEBUG",
            "STUDIO_PUBLISH_STATUS_POLL_S": "0.05",
            **{f"STUDIO_{k.upper()}": str(v) for k, v in google.settings().items()},
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reload_settings()
        reset_object_store()
        get_object_store().ensure_bucket()
        training.promote_lora(register_lora(lora_files["a"], tmp_path, name="Mia", trigger="ohwx woman").id)
        yield {"llm": llm, "google": google, "receiver": receiver}
        reset_object_store()


@pytest.fixture
def studio_log() -> Iterator[io.StringIO]:
    """This process's log records through the studio's own handler (masking included), at DEBUG."""
    stream = io.StringIO()
    handler = make_handler("text", stream)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


def _signed(body: bytes, secret: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Studio-Timestamp": stamp, "X-Studio-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def _log_in_through_the_dashboard(secrets: dict[str, str]) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    at.text_input[0].input(secrets["wrong ui password"])
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong password."]
    at.text_input[0].input(secrets["ui password"])
    at.button[0].click().run()
    assert not at.exception and at.session_state["auth.ok"] and not at.text_input, "logged in"


def test_no_secret_appears_in_logs_rows_objects_redis_or_answers(secret_studio, secrets, studio_log, tmp_path):
    google, receiver, llm = secret_studio["google"], secret_studio["receiver"], secret_studio["llm"]
    llm.reply(_plan_answer)
    channel = google.oauth.grant()
    social_accounts.connect_manually(platform="youtube", external_id=channel.subject,
                                     access_token=channel.access_token, refresh_token=channel.refresh_token,
                                     expires_in_s=3600)
    google.oauth.expire_access_tokens()  # the publish must refresh it with the client secret
    workers = LoggedWorkers(tmp_path / "workers.log")
    try:
        workers.worker("gpu,cpu,default", threads=3)
        _log_in_through_the_dashboard(secrets)

        today = days_from_today(0)  # UTC, the studio's clock (date.today() is the machine's zone)
        monday = today + timedelta(days=7 - today.weekday())
        body = json.dumps({"theme": "stretching", "platforms": ["youtube"], "start": monday.isoformat(),
                           "end": (monday + timedelta(days=6)).isoformat(), "postsPerWeek": 1, "planner": "llm",
                           "publishNow": True, "notifyUrl": f"{receiver.url}/webhook/studio"}).encode()
        auth = {"Authorization": f"Bearer {secrets['api token']}"}
        with TestClient(Starlette(routes=api_routes())) as client:
            started = client.post("/api/pipelines/content", content=body,
                                  headers={**auth, **_signed(body, secrets["webhook secret"])})
            assert started.status_code == 201, started.text
            pipeline_id = started.json()["id"]
            finished = wait_until(lambda: (p := pipelines.get_pipeline(pipeline_id)).status in ("succeeded", "failed")
                                  and p, 300, interval=0.2, what="the content pipeline")
            assert finished.status == "succeeded", (finished.error, finished.error_stage, finished.warnings)
            [post_id] = finished.results["scheduling"]["scheduledPostIds"]
            published = wait_until(lambda: (p := posts.get_post(post_id)).status in (
                PostStatus.PUBLISHED, PostStatus.FAILED) and p, 120, what="the post to be published")
            assert published.status == PostStatus.PUBLISHED, published.error
            assert len(google.videos()) == 1 and len(google.calls_to("token")) == 1  # refreshed once
            assert llm.calls_to("chat"), "the LLM planned the post"
            view = client.get(f"/api/pipelines/{pipeline_id}", headers=auth)
            answers = {"pipeline view": view.content}
            answers.update(_refused_answers(client, secrets))
    finally:
        workers.stop_all()

    data_dir = Path(os.environ["STUDIO_DATA_DIR"])
    worker_log = (tmp_path / "workers.log").read_bytes()
    assert b"studio" in worker_log and len(worker_log) > 1000, "the workers' logs were captured"
    with session_scope() as session:
        assert session.execute(select(Post)).first() is not None
        [account] = session.execute(select(SocialAccount)).scalars().all()
    # The tokens are in the database, encrypted with the configured key (so the search below is meaningful).
    cipher = TokenCipher(secrets["token encryption key"])
    assert cipher.decrypt(account.access_token_enc) in google.oauth._access
    assert cipher.decrypt(account.refresh_token_enc) == channel.refresh_token
    assert pipeline_id.encode() in worker_log or pipeline_id[:8].encode() in worker_log, "job context in the logs"
    issued = {f"oauth token {i}": token for i, token in enumerate(
        [*google.oauth._access, *google.oauth._refresh])}
    haystacks = {"worker logs": worker_log, "this process's logs": studio_log.getvalue().encode(),
                 **database_rows(), **database_files(data_dir), **stored_objects(), **redis_contents(),
                 **other_files(data_dir), **answers,
                 **{f"notification {i}": b for i, (_headers, b) in enumerate(receiver.received)}}
    assert receiver.received and len(issued) >= 3
    assert any(k.startswith("object ") for k in haystacks) and any(k.startswith("redis ") for k in haystacks)
    assert leaks(haystacks, {**secrets, **issued}) == []


def _refused_answers(client: TestClient, secrets: dict[str, str]) -> dict[str, bytes]:
    """The API's answers to wrong credentials that resemble the real ones: none may echo what was sent."""
    wrong = {"wrong api token": _unique("apitok"), "wrong signature": _unique("sig")}
    secrets.update(wrong)
    answers = {}
    for name, headers in {
        "bearer": {"Authorization": f"Bearer {wrong['wrong api token']}"},
        "x-studio-token": {"X-Studio-Token": wrong["wrong api token"]},
        "basic": {"Authorization": f"Basic {wrong['wrong api token']}"},
    }.items():
        for method, path in (("GET", "/api/jobs/abc"), ("POST", "/api/jobs"), ("GET", "/api/metrics")):
            response = client.request(method, path, headers=headers, json={"kind": "sleep", "payload": {}})
            assert response.status_code == 401, (name, path, response.status_code)
            answers[f"answer {method} {path} ({name})"] = response.content + repr(response.headers).encode()
    body = b'{"theme": "x", "platforms": ["tiktok"], "start": "2027-01-04", "end": "2027-01-10"}'
    refused = client.post("/api/pipelines/content", content=body, headers={
        "Authorization": f"Bearer {secrets['api token']}", "X-Studio-Timestamp": str(int(time.time())),
        "X-Studio-Signature": f"sha256={wrong['wrong signature']}", "Content-Type": "application/json"})
    assert refused.status_code == 401
    answers["answer to a bad signature"] = refused.content + repr(refused.headers).encode()
    return answers


def test_the_needles_find_a_secret_however_it_is_encoded():
    secret = _unique("needle")
    blob = b"prefix " + base64.b64encode(b"xy" + secret.encode() + b"tail") + b" suffix"
    assert leaks({"blob": blob}, {"s": secret}) == ["s found in blob"]
    for offset in range(3):
        encoded = base64.urlsafe_b64encode(b"z" * offset + secret.encode())
        assert leaks({"b": encoded}, {"s": secret}), offset
    assert leaks({"url": quote(f"a={secret}/x", safe="").encode()}, {"s": secret + "/x"})
    assert leaks({"clean": b"nothing here"}, {"s": secret}) == []
