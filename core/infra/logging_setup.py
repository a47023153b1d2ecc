"""Process-wide logging: text or JSON lines, the running job's context on every line, secrets masked.

``configure_logging()`` installs one handler on the root logger (the worker CLI and the
Streamlit server call it at start). Two filters sit on that handler, so every record that
reaches it, from any library, is treated alike:

* ``ContextFilter`` adds ``job_id``, ``pipeline_id`` and ``actor`` from context variables that
  ``core.jobs.lifecycle.execute_job`` sets with ``job_context(job)`` around a job's attempt. Threads a
  handler starts itself do not inherit them (``contextvars.copy_context().run`` does).
* ``RedactingFilter`` formats the message with its arguments, masks secrets in it (and in the
  formatted traceback), and stores the result back on the record, so no formatter downstream
  can print the raw values: the configured secret settings, ``Bearer``/``Authorization``
  credentials, OAuth parameters (``access_token=``, ``code=``…) and presigned-URL signatures.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any, Literal, Protocol

from core.config import get_settings

MASK = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Settings whose values never appear in a log line.
SECRET_SETTINGS = (
    "api_token", "signing_key", "s3_secret_key", "llm_api_key", "meta_app_secret", "google_client_secret",
    "tiktok_client_secret", "webhook_secret", "token_encryption_key", "metrics_token",
)
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words

# URL query / form parameters whose values are credentials (the name stays, the value goes).
_SECRET_PARAMS = (
    "access_token", "refresh_token", "id_token", "client_secret", "code", "fb_exchange_token", "password",
    "api_key", "apikey", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
)
_PARAM_RE = re.compile(
    r"(?<![\w-])(" + "|".join(re.escape(p) for p in _SECRET_PARAMS) + r")=([^&\s\"'#<>]+)", re.IGNORECASE
)
# The same names as JSON or Python-dict keys: "access_token": "…" (token responses, payload dumps).
_KEY_RE = re.compile(
    r"([\"']?(?<![\w-])(?:access_token|refresh_token|id_token|client_secret|password|api_key|secret|token)"
    r"[\"']?\s*[:=]\s*[\"'])([^\"']+)",
    re.IGNORECASE,
)
_AUTH_HEADER_RE = re.compile(r"(authorization[\"']?\s*[:=]\s*[\"']?)([^\"'\r\n,;}]+)", re.IGNORECASE)
_BEARER_RE = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)

# --- job context ------------------------------------------------------------------------------------------

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("studio_job_id", default=None)
_pipeline_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("studio_pipeline_id", default=None)
_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar("studio_actor", default=None)
CONTEXT_FIELDS = ("job_id", "pipeline_id", "actor")


class _JobLike(Protocol):
    id: str
    kind: str
    pipeline_id: str | None


@contextmanager
def job_context(job: _JobLike) -> Iterator[None]:
    """Every line logged inside carries the job's id, its pipeline's id and its kind (the actor name)."""
    tokens = (_job_id.set(job.id), _pipeline_id.set(job.pipeline_id), _actor.set(job.kind))
    try:
        yield
    finally:
        _actor.reset(tokens[2])
        _pipeline_id.reset(tokens[1])
        _job_id.reset(tokens[0])


def current_context() -> dict[str, str]:
    values = {"job_id": _job_id.get(), "pipeline_id": _pipeline_id.get(), "actor": _actor.get()}
    return {name: value for name, value in values.items() if value}


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = current_context()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):  # a value passed with extra= wins
                setattr(record, name, context.get(name))
        return True


# --- redaction --------------------------------------------------------------------------------------------


def _secret_values() -> list[str]:
    try:
        settings = get_settings()
    except Exception:  # noqa: BLE001 (invalid settings must not stop logging; the patterns still apply)
        return []
    values: set[str] = set()
    for name in SECRET_SETTINGS:
        secret: Any = getattr(settings, name, None)  # a SecretStr, or a plain value
        raw = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
        if not isinstance(raw, str):
            continue
        # token_encryption_key holds several comma-separated keys.
        for part in {raw, *raw.split(",")}:
            part = part.strip()
            if len(part) >= _MIN_SECRET_LEN:
                values.add(part)
    return sorted(values, key=len, reverse=True)  # longest first: a key containing another is masked whole


class Redactor:
    """Masks secrets in text. The settings' values are re-read whenever the settings are reloaded."""

    def __init__(self) -> None:
        self._settings_seen: object = None
        self._values_re: re.Pattern[str] | None = None

    def _values_pattern(self) -> re.Pattern[str] | None:
        try:
            current: object = get_settings()
        except Exception:  # noqa: BLE001
            current = None
        if current is not self._settings_seen or current is None:
            values = _secret_values()
            self._values_re = re.compile("|".join(re.escape(v) for v in values)) if values else None
            self._settings_seen = current
        return self._values_re

    def redact(self, text: str) -> str:
        values = self._values_pattern()
        if values is not None:
            text = values.sub(MASK, text)
        text = _AUTH_HEADER_RE.sub(lambda m: m.group(1) + MASK, text)
        text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {MASK}", text)
        text = _PARAM_RE.sub(lambda m: f"{m.group(1)}={MASK}", text)
        return _KEY_RE.sub(lambda m: m.group(1) + MASK, text)


_redactor = Redactor()


def redact(text: str) -> str:
    """``text`` with every secret the logs would mask replaced by ``***``."""
    return _redactor.redact(text)


class RedactingFilter(logging.Filter):
    """Formats the message (with its %-args) and the traceback once, masks them, and stores them back."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_studio_redacted", False):  # a record reaching two of our handlers
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 (a bad format string: keep logging's own error path)
            return True
        record.msg = _redactor.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = _redactor.redact(record.stack_info)
        record._studio_redacted = True
        return True


# --- formatters -------------------------------------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """The classic line, with the job's context appended when there is one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = " ".join(f"{name}={value}" for name in CONTEXT_FIELDS if (value := getattr(record, name, None)))
        return f"{line} [{context}]" if context else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the job context when set, exc when any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if value := getattr(record, name, None):
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


# --- installation -----------------------------------------------------------------------------------------

LogFormat = Literal["text", "json"]


def make_handler(fmt: LogFormat = "text", stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler with the context and redaction filters and the chosen format."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler._studio_handler = True  # type: ignore[attr-defined]
    return handler


def configure_logging(level: str | int | None = None, fmt: LogFormat | None = None,
                      *, stream: IO[str] | None = None) -> logging.Handler:
    """Install (or replace) the studio's handler on the root logger; defaults come from the settings
    (``STUDIO_LOG_LEVEL``, ``STUDIO_LOG_FORMAT``). Safe to call again: the previous handler goes."""
    if level is None or fmt is None:
        settings = get_settings()
        level = level if level is not None else settings.log_level
        fmt = fmt if fmt is not None else settings.log_format
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}; use 'text' or 'json'")
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_studio_handler", False):
            root.removeHandler(existing)
            existing.close()
    handler = make_handler(fmt, stream)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # httpx logs every request URL at INFO; platform and presigned URLs can carry credentials.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    return handler
