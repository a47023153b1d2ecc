"""Process logs: JSON lines carry the running job's context, and no secret reaches any output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
from cryptography.fernet import Fernet

from core.config import reload_settings
from core.infra.logging_setup import configure_logging, job_context, redact
from core.jobs import lifecycle as jobs

LOGGER = logging.getLogger("studio.test")
PIPELINE_ID = "p" * 32

Capture = Callable[[str], io.StringIO]


@pytest.fixture
def capture() -> Iterator[Capture]:
    """Installs the studio's handler (text or json) writing to a buffer; restores the root logger after."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)

    def install(fmt: str) -> io.StringIO:
        buffer = io.StringIO()
        configure_logging("INFO", fmt, stream=buffer)  # type: ignore[arg-type]
        return buffer

    yield install
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def _json_lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_the_job_context_inside_a_running_job_and_none_outside(studio, capture):
    buffer = capture("json")
    LOGGER.info("before the job")
    job = jobs.create_job("noop", {}, pipeline_id=PIPELINE_ID)

    def handler(ctx: jobs.JobContext) -> dict[str, object]:
        LOGGER.info("inside the job, step %d", 1)
        return {}

    jobs.execute_job(job.id, handler)
    LOGGER.warning("after the job")
    lines = {line["message"]: line for line in _json_lines(buffer)}
    inside = lines["inside the job, step 1"]
    assert inside["job_id"] == job.id
    assert inside["pipeline_id"] == PIPELINE_ID
    assert inside["actor"] == "noop"
    assert inside["level"] == "INFO" and inside["logger"] == "studio.test"
    assert str(inside["ts"]).endswith("+00:00")
    for outside in (lines["before the job"], lines["after the job"]):
        assert not {"job_id", "pipeline_id", "actor"} & set(outside)
    assert jobs.get_job(job.id).status == "succeeded"


def test_text_lines_append_the_job_context(capture):
    buffer = capture("text")

    class FakeJob:
        id, kind, pipeline_id = "j" * 32, "caption", None

    with job_context(FakeJob()):
        LOGGER.info("captioning")
    LOGGER.info("idle")
    inside, outside = buffer.getvalue().splitlines()
    assert inside.endswith(f"studio.test: captioning [job_id={'j' * 32} actor=caption]")
    assert outside.endswith("studio.test: idle")


def test_an_exception_goes_to_exc_in_json(capture):
    buffer = capture("json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        LOGGER.exception("it failed")
    (line,) = _json_lines(buffer)
    assert line["message"] == "it failed"
    assert "RuntimeError: boom" in str(line["exc"]) and "Traceback" in str(line["exc"])


# --- redaction --------------------------------------------------------------------------------------------

FERNET_KEYS = (Fernet.generate_key().decode(), Fernet.generate_key().decode())
SECRET_SETTINGS = {
    "STUDIO_API_TOKEN": "api-token-AAAA1111bbbb2222",
    "STUDIO_SIGNING_KEY": "signing-key-CCCC3333dddd",
    "STUDIO_S3_SECRET_KEY": "s3SecretEEEE4444ffff",
    "STUDIO_LLM_API_KEY": "sk-or-v1-GGGG5555hhhh",
    "STUDIO_META_APP_SECRET": "metaSecretIIII6666",
    "STUDIO_GOOGLE_CLIENT_SECRET": "GOCSPX-JJJJ7777kkkk",
    "STUDIO_TIKTOK_CLIENT_SECRET": "tiktokSecretLLLL8888",
    "STUDIO_WEBHOOK_SECRET": "whsec-MMMM9999nnnn",
    "STUDIO_TOKEN_ENCRYPTION_KEY": ",".join(FERNET_KEYS),
    "STUDIO_METRICS_TOKEN": "metrics-token-OOOO0000pppp",
}
SECRET_VALUES = [v for k, v in SECRET_SETTINGS.items() if k != "STUDIO_TOKEN_ENCRYPTION_KEY"] + list(FERNET_KEYS)

# (what is logged, the secret parts that must vanish, the parts that must stay)
PATTERNS = [
    ("GET /me Authorization: Bearer ya29.a0AfB_byHeaderToken", ["ya29.a0AfB_byHeaderToken"], ["GET /me"]),
    ("headers={'Authorization': 'Basic dXNlcjpwYXNzd29yZA==', 'Accept': 'json'}",
     ["dXNlcjpwYXNzd29yZA=="], ["'Accept': 'json'"]),
    ("calling with Bearer EAAGm0PX4ZCpsBAbare", ["EAAGm0PX4ZCpsBAbare"], ["calling with Bearer"]),
    ("POST https://graph.facebook.com/v21.0/oauth/access_token?client_id=123&client_secret=fbShh42"
     "&code=AQDcodeValue&redirect_uri=https%3A%2F%2Fstudio%2Fcb",
     ["fbShh42", "AQDcodeValue"], ["client_id=123", "redirect_uri=https%3A%2F%2Fstudio%2Fcb"]),
    ("form grant_type=refresh_token&refresh_token=1//0gRefreshTok&access_token=EAAaccessTok",
     ["1//0gRefreshTok", "EAAaccessTok"], ["grant_type=refresh_token"]),
    ("presigned https://s3.local/bucket/a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F2024"
     "&X-Amz-Signature=0123456789abcdef0123&X-Amz-Expires=3600",
     ["0123456789abcdef0123", "AKIAEXAMPLE"], ["X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Expires=3600"]),
    ("link /api/files/k/a.png?expires=1700000000&signature=deadbeefcafe0042", ["deadbeefcafe0042"],
     ["expires=1700000000"]),
    ('token response {"access_token": "ya29.jsonToken", "refresh_token": "1//jsonRefresh", "expires_in": 3599}',
     ["ya29.jsonToken", "1//jsonRefresh"], ['"expires_in": 3599']),
    ("http status error_code=500 zipcode=75001", [], ["error_code=500 zipcode=75001"]),
]


@pytest.fixture
def secrets(studio, monkeypatch):
    for name, value in SECRET_SETTINGS.items():
        monkeypatch.setenv(name, value)
    reload_settings()
    yield SECRET_VALUES
    for name in SECRET_SETTINGS:
        monkeypatch.delenv(name)
    reload_settings()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_configured_secret_is_masked_in_messages_args_and_tracebacks(secrets, capture, fmt):
    buffer = capture(fmt)
    for value in secrets:
        LOGGER.info("configured value " + value)
        LOGGER.info("as an argument: %s and %r", value, {"key": value})
        try:
            raise ValueError(f"refused credential {value}")
        except ValueError:
            LOGGER.exception("failure %d", 1)
        LOGGER.error("stack", stack_info=True, extra={"unused": value})
    output = buffer.getvalue()
    for value in secrets:
        assert value not in output
    assert output.count("***") >= 4 * len(secrets)
    assert "ValueError: refused credential ***" in (output if fmt == "text" else output.replace("\\n", "\n"))


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize(("message", "hidden", "kept"), PATTERNS, ids=[p[0][:24] for p in PATTERNS])
def test_credentials_in_headers_urls_and_forms_are_masked(studio, capture, fmt, message, hidden, kept):
    buffer = capture(fmt)
    LOGGER.info("%s", message)
    try:
        raise ConnectionError(message)
    except ConnectionError:
        LOGGER.warning("request failed", exc_info=True)
    output = buffer.getvalue()
    if fmt == "json":
        output = "\n".join(f"{line['message']}\n{line.get('exc', '')}" for line in _json_lines(buffer))
    for part in hidden:
        assert part not in output
    for part in kept:
        assert output.count(part) == 2, (part, output)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_message_without_secrets_is_unchanged(secrets, capture, fmt):
    buffer = capture(fmt)
    message = "job 42 finished in 3.2 s: 100% of 7 images, {'rank': 16, 'code_path': 'a/b'} see https://x.io/?page=2"
    LOGGER.info("job %d finished in %.1f s: 100%% of %s images, %s see %s", 42, 3.2, 7,
                {"rank": 16, "code_path": "a/b"}, "https://x.io/?page=2")
    if fmt == "json":
        assert _json_lines(buffer)[0]["message"] == message
    else:
        assert buffer.getvalue().rstrip("\n").endswith(f"INFO studio.test: {message}")
    assert redact(message) == message


def test_reloaded_settings_are_picked_up(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_LLM_API_KEY", "first-key-1234")
    reload_settings()
    assert redact("k=first-key-1234") == "k=***"
    monkeypatch.setenv("STUDIO_LLM_API_KEY", "second-key-5678")
    reload_settings()
    assert redact("k=first-key-1234 k=second-key-5678") == "k=first-key-1234 k=***"
