"""The hostile-input corpus: webhook bodies, headers, ids and OAuth callbacks sent to the real app server,
captions and prompts through the core functions the pages call, and the worker CLI. Each input gets a clear
error (a status and a phrase naming the problem, never a 500 or a traceback) and leaves every table's row
count and the stored objects as they were. Uploads are in test_hostile_uploads.py.

"Clear error" for text that can be stored safely (a caption with ``<script>``, a 100 KB caption): such text is
not refused, because refusing it helps nobody; it is stored as plain text, cleaned the same way every caption
is (control characters and line breaks become spaces, 2000 characters at most), and the pages show it as
text (test_no_html.py renders the pages with such captions). Those cases expect the status "stored" and
check the stored value.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from typer.testing import CliRunner

from api.routes import api_routes
from core.infra.signing import sign
from tests.conftest import ROOT, TEST_API_TOKEN
from tests.security.conftest import AUTH, CONTENT_BODY, WEBHOOK_SECRET
from tests.security.harness import Arena, Case, Outcome, call, http_outcome, oauth_outcome, run_case

JSON = {**AUTH, "Content-Type": "application/json"}
MISSING_ID = "0123456789abcdef" * 2  # well formed, never issued


# --- entry points -----------------------------------------------------------------------------------------


def post(path: str, body: bytes | Any, headers: dict[str, Any] | None = None):
    """``body``: bytes as they are, a dict or list as JSON, or a function making a fresh chunk iterator."""

    def act(arena: Arena) -> Outcome:
        content = json.dumps(body).encode() if isinstance(body, dict | list) else body() if callable(body) else body
        return http_outcome(arena.http.post(path, content=content, headers=JSON if headers is None else headers))

    return act


def get(path: str, headers: dict[str, Any] | None = None, **params: str):
    def act(arena: Arena) -> Outcome:
        return http_outcome(arena.http.get(path.format(a=arena), params=params,
                                           headers=AUTH if headers is None else headers))

    return act


def post_id(path: str):
    """A POST to a path built from the arena's ids, e.g. ``/api/pipelines/{a.job_id}/cancel``."""

    def act(arena: Arena) -> Outcome:
        return http_outcome(arena.http.post(path.format(a=arena), headers=AUTH))

    return act


def signed(body: bytes, *, timestamp: int | None = None, signed_body: bytes | None = None,
           secret: str = WEBHOOK_SECRET, path: str = "/api/pipelines/content", **extra: Any):
    """A pipeline start whose signature headers are made when the case runs (the window is 300 s)."""

    def act(arena: Arena) -> Outcome:
        stamp, signature = sign(secret, body if signed_body is None else signed_body, timestamp)
        headers = {**JSON, "X-Studio-Timestamp": stamp, "X-Studio-Signature": signature, **extra}
        return http_outcome(arena.http.post(path, content=body, headers=headers))

    return act


def raw_headers(path: str, body: bytes, headers: dict[str, Any]):
    """Headers as given (bytes values pass through; httpx would refuse non-ASCII text)."""

    def act(arena: Arena) -> Outcome:
        return http_outcome(arena.http.post(path, content=body, headers=headers))

    return act


def replay(arena: Arena) -> Outcome:
    body, headers = arena.signed_start
    return http_outcome(arena.http.post("/api/pipelines/content", content=body, headers=headers))


def download(key: str, *, expires_in: int = 300, forged: bool = False, in_process: bool = False):
    """A local-store download link for ``key``, signed with the studio's key (or forged), sent as is (no client
    normalises its dots). ``in_process``: straight to the /api routes, without Streamlit's middleware in front."""

    def act(arena: Arena) -> Outcome:
        from core.config import get_settings
        from core.infra.storage import _sign  # presigned_get_url would refuse these keys before signing them

        name = key.format(a=arena)
        expires = int(time.time()) + expires_in
        signature = "0" * 64 if forged else _sign(name, expires, get_settings().signing_key.get_secret_value())
        query = urlencode({"expires": expires, "signature": signature})
        if in_process:  # '/' as %2F: one path segment to the client, so it has no '..' to resolve
            with TestClient(Starlette(routes=api_routes())) as client:
                return http_outcome(client.get(f"/api/files/{quote(name, safe='')}?{query}"))
        return raw_request(arena, "GET", f"/api/files/{name}?{query}")

    return act


def raw_request(arena: Arena, method: str, target: str) -> Outcome:
    """http.client sends the target byte for byte (httpx would resolve '..' segments first)."""
    host, port = arena.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, target, headers=AUTH)
        answer = connection.getresponse()
        text = answer.read().decode("utf-8", "replace")
    finally:
        connection.close()
    try:
        message = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        message = text
    return Outcome(answer.status, message, {"headers": dict(answer.getheaders())})


def callback(provider: str, **params: str):
    def act(arena: Arena) -> Outcome:
        values = {name: value.format(a=arena) for name, value in params.items()}
        return oauth_outcome(arena.http.get(f"/api/oauth/callback/{provider}", params=values,
                                            follow_redirects=False))

    return act


def cli(*args: str):
    def act(arena: Arena) -> Outcome:
        from workers.cli import app

        result = CliRunner().invoke(app, [arg.format(a=arena) if "{a." in arg else arg for arg in args])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return Outcome(result.exit_code, result.output)

    return act


def cli_process(*args: str):
    """The real ``python -m workers`` (one case: the CLI as a shell sees it, stderr and exit code)."""

    def act(arena: Arena) -> Outcome:
        done = subprocess.run([sys.executable, "-m", "workers", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        return Outcome(done.returncode, done.stdout + done.stderr)

    return act


def save_caption(text: str, image_id: int | None = None):
    def act(arena: Arena) -> Outcome:
        from core.datasets.captions import save_caption as save

        return call(lambda: save(arena.image_id if image_id is None else image_id, text))

    return act


def stored_caption(text: str):
    def act(arena: Arena) -> Outcome:
        from core.datasets.captions import save_caption as save

        outcome = call(lambda: save(arena.image_id, text))
        return Outcome("stored", outcome.extra["result"].caption) if outcome.status == "ok" else outcome

    return act


def bulk_edit(**fields: Any):
    def act(arena: Arena) -> Outcome:
        from core.datasets.captions import apply_bulk_edit, make_bulk_edit

        return call(lambda: apply_bulk_edit(arena.dataset_id, make_bulk_edit(**fields)))

    return act


def generate(**request: Any):
    def act(arena: Arena) -> Outcome:
        from core.generation.requests import submit_generation

        return call(lambda: submit_generation(**{"loras": [], **request}))

    return act


# --- checks on what was stored or answered -------------------------------------------------------------------


def _stored_verbatim(expected: str):
    def check(arena: Arena, outcome: Outcome) -> None:
        from core.datasets.datasets import all_images

        [image] = [i for i in all_images(arena.dataset_id) if i.id == arena.image_id]
        assert image.caption == expected

    return check


def _state_still_usable(arena: Arena, outcome: Outcome) -> None:
    """The refusal on the wrong provider's callback did not spend Facebook's state."""
    import hashlib

    from core.db import session_scope
    from core.models import OAuthState

    with session_scope() as session:
        row = session.get(OAuthState, hashlib.sha256(arena.meta_state.encode()).hexdigest())
        assert row is not None and row.used_at is None


def _stays_home(arena: Arena, outcome: Outcome) -> None:
    location = outcome.extra["location"]
    assert location.startswith(f"{arena.public_url}/accounts?"), location
    assert "evil.example" not in location.split("?")[0]
    assert "set-cookie" not in outcome.extra["headers"] and "\r" not in location and "\n" not in location


def _no_file_content(arena: Arena, outcome: Outcome) -> None:
    assert "root:" not in outcome.message


# --- the corpus ------------------------------------------------------------------------------------------------

LONG = "x" * 100_000
CONTROL = "ava\x00 at\x07 the\x1b[31m beach\x08\x7f\u009b"
LORA = {"datasetId": 1, "trainingName": "Ava v1", "testPrompts": ["ava on a beach"]}


def content(**changes: Any) -> bytes:
    return json.dumps({**CONTENT_BODY, **changes}).encode()


CASES = [
    # --- webhook bodies (real server) ---
    Case("malformed JSON", "body", post("/api/jobs", b"{not json"), 400, "malformed JSON"),
    Case("empty body", "body", post("/api/jobs", b""), 400, "malformed JSON"),
    Case("invalid UTF-8 bytes as the body", "body", post("/api/jobs", b'{"kind": "\xff\xfe\xc0\xaf"}'), 400,
         "malformed JSON"),
    Case("a JSON array instead of an object", "body", post("/api/jobs", b"[1, 2]"), 400, "must be an object"),
    Case("10 MB body", "body", post("/api/jobs", b'{"kind": "noop", "payload": {"note": "' + b"x" * (10 * 2**20)
                                    + b'"}}'), 413, "over the limit"),
    Case("10 MB body without Content-Length (chunked)", "body",
         post("/api/jobs", lambda: iter([b" " * 2**20] * 10)), 413, "over the limit"),
    Case("100,000-element array", "body", signed(json.dumps({**CONTENT_BODY, "platforms": [0] * 100_000})
                                                 .encode()), 422, "platforms"),
    Case("100,000-deep nesting", "body", post("/api/jobs", b"[" * 100_000 + b"]" * 100_000), 400,
         "nested too deeply"),
    Case("NaN in JSON", "body", post("/api/jobs", b'{"kind": "sleep", "payload": {"seconds": NaN}}'), 400,
         "NaN is not a JSON number"),
    Case("Infinity in JSON", "body", post("/api/jobs", b'{"kind": "sleep", "payload": {"seconds": -Infinity}}'),
         400, "-Infinity is not a JSON number"),
    Case("duplicate keys", "body", post("/api/jobs", b'{"kind": "noop", "kind": "sleep"}'), 400,
         "duplicate key 'kind'"),
    Case("wrong type: kind is a number", "body", post("/api/jobs", {"kind": 123}), 422, "'kind' is required"),
    Case("wrong type: payload is a list", "body", post("/api/jobs", {"kind": "noop", "payload": [1]}), 422,
         "'payload' must be an object"),
    Case("wrong type: seconds is a string", "body", post("/api/jobs", {"kind": "sleep", "payload": {"seconds": "x"}}),
         422, "seconds"),
    Case("wrong type: start date is a number", "body", signed(content(start=20300601)), 422, "start"),
    Case("integer beyond any database id", "body", signed(json.dumps({**LORA, "datasetId": 10**25}).encode(),
                                                          path="/api/pipelines/lora"), 422, "datasetId: dataset 1000"),
    Case("unknown field", "body", post("/api/jobs", {"kind": "noop", "admin": True}), 422, "unknown field"),
    Case("zero-width space in the kind", "body", post("/api/jobs", {"kind": "no\u200bop"}), 422,
         "unknown job kind"),
    Case("right-to-left override in the kind", "body", post("/api/jobs", {"kind": "\u202epoon"}), 422,
         "unknown job kind"),
    Case("NUL byte in a string", "body", post("/api/jobs", b'{"kind": "noop", "payload": {"note": "a\\u0000b"}}'),
         400, "NUL characters"),
    Case("lone surrogate \\ud800 in a value", "body", post("/api/jobs", b'{"kind": "noop", "payload": '
                                                                        b'{"note": "\\ud800"}}'), 400,
         "lone surrogate"),
    Case("lone surrogate \\udfff as a key", "body", post("/api/jobs", b'{"kind": "noop", "\\udfff": 1}'), 400,
         "lone surrogate"),
    Case("script tag in a content theme over 500 chars", "body",
         signed(content(theme="<script>alert(1)</script>" * 40)), 422, "theme"),
    # --- headers ---
    Case("missing API token", "header", post("/api/jobs", {"kind": "noop"}, {"Content-Type": "application/json"}),
         401, "missing or wrong API token"),
    Case("wrong API token", "header", post("/api/jobs", {"kind": "noop"}, {"Authorization": "Bearer nope"}), 401,
         "missing or wrong API token"),
    Case("token without the Bearer scheme", "header", post("/api/jobs", {"kind": "noop"},
                                                           {"Authorization": TEST_API_TOKEN}), 401, "API token"),
    Case("non-ASCII token bytes", "header", raw_headers("/api/jobs", b'{"kind": "noop"}', {
        "Authorization": b"Bearer " + TEST_API_TOKEN.encode() + "\u00e9".encode()}), 401, "API token"),
    Case("metrics with a wrong token", "header", get("/api/metrics", {"Authorization": "Bearer x"}), 401,
         "missing or wrong token"),
    Case("missing signature where one is required", "header", post("/api/pipelines/content", content()), 401,
         "missing X-Studio-Timestamp or X-Studio-Signature"),
    Case("bad HMAC signature", "header", signed(content(), secret="not-the-secret"), 401,
         "signature does not match the body"),
    Case("signature of another body", "header", signed(content(), signed_body=content(theme="other")), 401,
         "signature does not match the body"),
    Case("stale timestamp (an hour old)", "header", signed(content(), timestamp=int(time.time()) - 3600), 401,
         "outside the 300 s window"),
    Case("timestamp in the far future", "header", signed(content(), timestamp=int(time.time()) + 86_400), 401,
         "outside the 300 s window"),
    Case("timestamp in superscript digits", "header", raw_headers("/api/pipelines/content", content(), {
        **JSON, "X-Studio-Timestamp": "\u00b2\u00b3".encode(), "X-Studio-Signature": "sha256=00"}), 401,
         "unix seconds"),
    Case("replayed signed request", "header", replay, 401, "already received (replay)"),
    Case("Idempotency-Key of 5000 characters", "header", signed(content(theme="idem"),
                                                                **{"Idempotency-Key": "k" * 5000}), 422,
         "Idempotency-Key: at most 200 characters"),
    # --- ids ---
    Case("non-existent job", "id", get(f"/api/jobs/{MISSING_ID}"), 404, "does not exist"),
    Case("non-existent pipeline", "id", post_id(f"/api/pipelines/{MISSING_ID}/retry"), 404, "does not exist"),
    Case("a pipeline id where a job id goes", "id", get("/api/jobs/{a.pipeline_id}"), 404, "does not exist"),
    Case("a job id where a pipeline id goes", "id", post_id("/api/pipelines/{a.job_id}/cancel"), 404,
         "does not exist"),
    # Streamlit's path-security middleware answers '..' in any path with a bare 400 before a route runs.
    Case("path traversal as a job id", "id", lambda arena: raw_request(arena, "POST", "/api/jobs/../../x/cancel"),
         400, "Bad Request"),
    Case("job logs after a non-number", "id", get("/api/jobs/{a.job_id}/logs", after="abc"), 422,
         "after: must be an integer"),
    Case("job logs after a cursor beyond any database integer", "id",
         get("/api/jobs/{a.job_id}/logs", after=str(-(10**30))), 200, '"lines"'),
    Case("pipeline list page beyond any database integer", "id", get("/api/pipelines", page=str(10**18)), 200,
         '"items"'),
    Case("unknown pipeline status filter", "id", get("/api/pipelines", status="<script>"), 422,
         "unknown value(s) <script>"),
    Case("caption job for a non-existent dataset", "id", post("/api/jobs", {"kind": "caption",
                                                                           "payload": {"dataset_id": 999_999}}),
         422, "dataset_id: dataset 999999 does not exist"),
    Case("dataset id beyond any database integer", "id", post("/api/jobs", {"kind": "train", "payload": {
        "dataset_id": 10**25}}), 422, "dataset_id: dataset 10000000000000000000000000 does not exist"),
    Case("download with ../ in the key and a forged signature", "id",
         download("datasets/../../../../etc/passwd", forged=True), 400, "Bad Request", check=_no_file_content),
    # Behind the middleware, the route itself: a validly signed '..' key is refused by the store's key rules.
    Case("download with ../ in a validly signed key (no middleware)", "id",
         download("datasets/../../../../etc/passwd", in_process=True), 422, "'..' segments", check=_no_file_content),
    Case("download of an absolute key, validly signed", "id", download("/etc/passwd"), 422, "must be relative",
         check=_no_file_content),
    Case("download of a backslash key, validly signed", "id", download("datasets\\..\\etc\\passwd", in_process=True),
         422, "must use '/' as separator", check=_no_file_content),
    Case("download with an expired link", "id", download("{a.image_key}", expires_in=-60), 403,
         "invalid or expired link"),
    Case("download of a non-existent key", "id", download("datasets/1/images/none.png"), 404, "file not found"),
    Case("caption of a non-existent image", "id", save_caption("hi", image_id=999_999), "NotFound",
         "image 999999 does not exist"),
    Case("caption of an image id beyond any integer", "id", save_caption("hi", image_id=10**25), "NotFound",
         "does not exist"),
    # --- OAuth callbacks (real server) ---
    Case("callback without state", "oauth", callback("google", code="abc"), 303, "no state"),
    Case("callback with a forged state", "oauth", callback("google", code="abc", state="forged-0123456789"), 303,
         "unknown, expired or already used state"),
    Case("Facebook's state on Google's callback", "oauth", callback("google", code="abc", state="{a.meta_state}"),
         303, "unknown, expired or already used state", check=_state_still_usable),
    Case("unknown provider in the callback", "oauth", callback("myspace", code="abc", state="x"), 303,
         "unknown OAuth provider 'myspace'"),
    Case("callback asking to redirect elsewhere", "oauth", callback(
        "google", error="access_denied", state="x", redirect_uri="https://evil.example/steal",
        next="https://evil.example/", error_description="<script>alert(1)</script>\r\nSet-Cookie: session=evil"),
         303, "consent refused", check=_stays_home),
    Case("10 KB code with a forged state", "oauth", callback("tiktok", code="c" * 10_000, state="s" * 500), 303,
         "unknown, expired or already used state"),
    # --- captions (core.datasets.captions, what the Captions page calls) ---
    Case("caption with a <script> tag is stored as plain text", "caption",
         stored_caption("<script>alert(1)</script> ohwx"), "stored", "<script>alert(1)</script> ohwx",
         check=_stored_verbatim("<script>alert(1)</script> ohwx")),
    Case("100 KB caption is stored cut to 2000 characters", "caption", stored_caption(LONG), "stored", "x" * 2000,
         check=_stored_verbatim("x" * 2000)),
    Case("control characters in a caption become spaces", "caption", stored_caption(CONTROL), "stored",
         "ava at the [31m beach", check=_stored_verbatim("ava at the [31m beach")),
    Case("lone surrogate in a caption", "caption", stored_caption("ava\ud800 smiling"), "stored", "ava smiling",
         check=_stored_verbatim("ava smiling")),
    Case("invalid regular expression in a bulk edit", "caption", bulk_edit(operation="regex", find="(unclosed"),
         "InvalidInput", "not a valid regular expression"),
    Case("unknown bulk operation", "caption", bulk_edit(operation="eval", find="x"), "InvalidInput", "operation"),
    Case("10 KB find text", "caption", bulk_edit(operation="replace", find="x" * 10_000), "InvalidInput", "find"),
    # --- prompts (core.generation.requests, what the Generate page calls) ---
    Case("100 KB prompt", "prompt", generate(prompt=LONG), "InvalidInput", "prompt"),
    Case("blank prompt", "prompt", generate(prompt=" \t\n "), "InvalidInput", "the prompt is empty"),
    Case("control characters in a prompt", "prompt", generate(prompt=CONTROL), "InvalidInput",
         "must not contain control characters"),
    Case("lone surrogate in a negative prompt", "prompt", generate(prompt="ava", negative_prompt="\udc80"),
         "InvalidInput", "negative_prompt"),
    Case("negative count", "prompt", generate(prompt="ava", count=-3), "InvalidInput", "count"),
    Case("a billion images", "prompt", generate(prompt="ava", count=10**9), "InvalidInput", "count"),
    Case("steps as text", "prompt", generate(prompt="ava", steps="many"), "InvalidInput", "steps"),
    Case("NaN guidance", "prompt", generate(prompt="ava", cfg=float("nan")), "InvalidInput", "cfg"),
    Case("100,000 LoRAs", "prompt", generate(prompt="ava", loras=[{"lora_id": 1}] * 100_000), "InvalidInput",
         "loras"),
    Case("non-existent LoRA", "prompt", generate(prompt="ava", loras=[{"lora_id": 999_999}]), "InvalidInput",
         "LoRA 999999 does not exist"),
    Case("img2img from a non-existent asset", "prompt", generate(prompt="ava", init_asset_id=10**25),
         "InvalidInput", "does not exist"),
    Case("unknown template with a traversal name", "prompt", generate(prompt="ava", template="../../etc/passwd"),
         "InvalidInput", "template"),
    # --- the worker CLI ---
    Case("CLI: show a non-existent job", "cli", cli("show", "abcdef12"), 2, "no job id starts with"),
    Case("CLI: show a path instead of an id", "cli", cli("show", "../../etc/passwd"), 2, "is not a job id"),
    Case("CLI: a pipeline id where a job id goes", "cli", cli("cancel", "{a.pipeline_id}"), 2,
         "no job id starts with"),
    Case("CLI: invalid JSON payload", "cli", cli("enqueue", "noop", "--payload", "{oops"), 2, "not valid JSON"),
    Case("CLI: a JSON list as the payload", "cli", cli("enqueue", "noop", "--payload", "[1]"), 2,
         "must be a JSON object"),
    Case("CLI: duplicate keys in the payload", "cli",
         cli("enqueue", "sleep", "--payload", '{"seconds": 1, "seconds": 9}'), 2, "duplicate key 'seconds'"),
    Case("CLI: NaN in the payload", "cli", cli("enqueue", "sleep", "--payload", '{"seconds": NaN}'), 2,
         "NaN is not a JSON number"),
    Case("CLI: caption a non-existent dataset", "cli", cli("enqueue", "caption", "--payload",
                                                           '{"dataset_id": 424242}'), 2, "does not exist"),
    Case("CLI: negative count", "cli", cli("generate", "--prompt", "ava", "--count", "-1"), 2, "Invalid value"),
    Case("CLI: malformed --lora", "cli", cli("generate", "--prompt", "ava", "--lora", "../1"), 2,
         "is not ID or ID:STRENGTH"),
    Case("CLI: 100 KB prompt", "cli", cli("generate", "--prompt", LONG, "--no-lora"), 2, "prompt"),
    Case("CLI: train a non-existent dataset", "cli", cli("train", "999999"), 2, "dataset 999999 does not exist"),
    Case("CLI: a date that does not exist", "cli", cli("plan", "--theme", "x", "--platform", "instagram",
                                                       "--start", "2030-02-30", "--end", "2030-03-01"), 2, "start"),
    Case("CLI process: retry a non-existent job", "cli", cli_process("retry", "feedface"), 2,
         "no job id starts with"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_input_gets_a_clear_error_and_writes_nothing(arena: Arena, case: Case) -> None:
    run_case(arena, case)


def test_the_corpus_covers_every_category_with_at_least_40_cases() -> None:
    from tests.security.test_hostile_uploads import UPLOAD_CASES

    everything = CASES + UPLOAD_CASES
    assert len(everything) >= 40
    assert len({case.name for case in everything}) == len(everything), "case names must be unique"
    assert {case.category for case in everything} == {"upload", "caption", "prompt", "body", "header", "id",
                                                      "oauth", "cli"}
