"""A client for any OpenAI-compatible chat endpoint (OpenAI, OpenRouter, Ollama, vLLM, LM Studio, llama.cpp)
that returns validated pydantic objects, with the token usage and cost of every call.

Design, and why:

- **Structured output that survives local servers.** The JSON schema is sent twice: as
  ``response_format={"type": "json_schema", …}`` (which hosted APIs enforce) and in the system
  message (which is all that many local servers honour). A server that answers 400 to
  ``json_schema`` is asked again with ``json_object``, then with no ``response_format`` at all;
  the downgrade is remembered on the client so later calls skip the refused formats.
- **Tolerant parsing, one repair.** Models wrap JSON in fences, chatter around it or think
  aloud first; we take the outermost JSON value and validate it with pydantic. An invalid
  answer gets exactly one repair request quoting the errors; a second invalid answer is a
  :class:`LlmOutputInvalid` (permanent: the same prompt would fail the same way).
- **One retry policy.** 429, 5xx and timeouts go through :func:`core.infra.http_retry.send_with_retries`
  (Retry-After honoured, a too-long wait fails at once); running out raises
  :class:`~core.infra.http_retry.RetriesExhausted`, a transient error, so the job is retried later.
  A refused key (401/403) and other 4xx answers are :class:`LlmError` (permanent).
- **The key stays secret.** It is held as a ``SecretStr``, sent only as a bearer header (and
  only when set: Ollama and LM Studio need none), redacted from server messages and never
  logged or shown in ``repr``.
- **Usage is data.** Each answered request becomes a :class:`CallUsage`; :func:`record_calls`
  stores them as ``LlmCall`` rows so a plan can show what it cost (:func:`usage_summary`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy import func
from sqlmodel import select

from core.config import Settings, get_settings
from core.db import session_scope
from core.errors import InvalidInput, PermanentJobError, describe_validation_error
from core.infra.http_retry import RetriesExhausted, RetryPolicy, Sent, send_with_retries
from core.models import LlmCall

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

# response_format values to try, most to least constrained.
FORMAT_LEVELS = ("json_schema", "json_object", "none")
_FORMAT_REFUSAL_WORDS = ("response_format", "response format", "json_schema", "json_object")
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_SCHEMA_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_JSON_STARTS = 50  # candidate '{' / '[' positions tried in a chatty answer


class LlmError(PermanentJobError):
    """The endpoint refused the request (bad key, unknown model, malformed request): retrying cannot help."""


class LlmOutputInvalid(LlmError):
    """The model's answer was not valid for the schema, even after one repair attempt.

    ``calls`` holds the usage of the requests made, so their cost can still be recorded.
    """

    def __init__(self, message: str, *, calls: Sequence[CallUsage] = ()) -> None:
        super().__init__(message)
        self.calls = list(calls)


@dataclass(frozen=True)
class CallUsage:
    """One chat-completion request that got an answer: what it used and cost."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    duration_ms: int
    attempts: int  # HTTP attempts, retries and format downgrades included
    repaired: bool = False  # this request asked the model to repair its previous answer
    purpose: str = ""


@dataclass
class LlmResult(Generic[T]):
    """A validated answer and the usage of every request it took."""

    value: T
    calls: list[CallUsage] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return sum(call.prompt_tokens for call in self.calls)

    @property
    def completion_tokens(self) -> int:
        return sum(call.completion_tokens for call in self.calls)

    @property
    def cost_usd(self) -> float:
        return sum(call.cost_usd for call in self.calls)

    @property
    def repaired(self) -> bool:
        return any(call.repaired for call in self.calls)


@dataclass
class _Answer:
    """The parts of a chat completion we use."""

    content: str
    finish_reason: str | None
    usage: CallUsage
    refusal: str | None = None  # OpenAI's structured-output refusal, instead of content


class _InvalidOutput(Exception):
    """An answer that could not be turned into the schema; the message says why (goes into the repair)."""


class LlmClient:
    """Talks to ``{base_url}/chat/completions``; one instance per configuration (it remembers downgrades)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | SecretStr = "",
        timeout_s: float = 60.0,
        policy: RetryPolicy | None = None,
        input_usd_per_mtok: float = 0.0,
        output_usd_per_mtok: float = 0.0,
        temperature: float = 0.7,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = _normalise_base_url(base_url)
        self.model = model
        self._api_key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self.timeout_s = timeout_s
        self.policy = policy or RetryPolicy()
        self.input_usd_per_mtok = input_usd_per_mtok
        self.output_usd_per_mtok = output_usd_per_mtok
        self.temperature = temperature
        self._transport = transport
        self._sleep = sleep  # tests inject a recorder so Retry-After waits cost no time
        self._format_level = 0  # index into FORMAT_LEVELS; only ever increases

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> LlmClient | None:
        """The configured client, or None when no endpoint is configured (the caller plans offline)."""
        settings = get_settings() if settings is None else settings
        if not settings.llm_base_url.strip() or not settings.llm_model.strip():
            return None
        return cls(
            settings.llm_base_url.strip(),
            settings.llm_model.strip(),
            api_key=settings.llm_api_key,
            timeout_s=settings.llm_timeout_s,
            policy=RetryPolicy(max_retries=settings.llm_max_retries, max_retry_after_s=settings.llm_retry_max_wait_s),
            input_usd_per_mtok=settings.llm_input_usd_per_mtok,
            output_usd_per_mtok=settings.llm_output_usd_per_mtok,
            temperature=settings.llm_temperature,
            transport=transport,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        key = "set" if self._api_key.get_secret_value() else "none"
        return f"LlmClient(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"

    @property
    def response_format_mode(self) -> str:
        """The ``response_format`` type this endpoint accepts so far (``none``: it refused both)."""
        return FORMAT_LEVELS[self._format_level]

    # --- the one public call ------------------------------------------------------------------------------

    def chat_json(self, messages: list[dict[str, Any]], schema: type[T], *, purpose: str) -> LlmResult[T]:
        """Ask for an answer matching ``schema``; repair once if the first answer is invalid.

        Raises :class:`LlmOutputInvalid` after a failed repair, :class:`LlmError` when the endpoint
        refuses the request, and :class:`RetriesExhausted` (transient) when it stays unavailable.
        """
        conversation = _with_schema_instruction(messages, schema)
        calls: list[CallUsage] = []
        with self._http() as http:
            answer = self._complete(http, conversation, schema, purpose=purpose, repaired=False)
            calls.append(answer.usage)
            try:
                return LlmResult(_parse(answer, schema), calls)
            except _InvalidOutput as problem:
                log.info("LLM answer for %s was invalid, asking for a repair: %s", purpose, problem)
                conversation = [*conversation, *_repair_messages(answer.content, str(problem))]
            answer = self._complete(http, conversation, schema, purpose=purpose, repaired=True)
            calls.append(answer.usage)
            try:
                return LlmResult(_parse(answer, schema), calls)
            except _InvalidOutput as problem:
                raise LlmOutputInvalid(
                    f"the LLM's answer for {purpose or 'the request'} was still invalid after one repair: {problem}",
                    calls=calls,
                ) from None

    # --- HTTP ------------------------------------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        """A client per call: short-lived, so no pool outlives a worker thread or a Streamlit rerun."""
        return httpx.Client(timeout=httpx.Timeout(self.timeout_s), transport=self._transport)

    def _headers(self) -> dict[str, str]:
        key = self._api_key.get_secret_value()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _body(self, messages: list[dict[str, Any]], schema: type[BaseModel]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature}
        mode = self.response_format_mode
        if mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": _schema_name(schema), "schema": schema.model_json_schema()},
            }
        elif mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    def _complete(
        self, http: httpx.Client, messages: list[dict[str, Any]], schema: type[BaseModel], *, purpose: str,
        repaired: bool,
    ) -> _Answer:
        """One chat completion, downgrading ``response_format`` while the server refuses it."""
        url = f"{self.base_url}/chat/completions"
        started = time.monotonic()
        attempts = 0
        while True:
            try:
                sent = self._send(http, url, self._body(messages, schema))
            except RetriesExhausted as error:
                raise RetriesExhausted(
                    f"the LLM endpoint {self.base_url} is unavailable: {error}", status=error.status,
                    attempts=attempts + error.attempts,
                ) from error
            except httpx.HTTPError as error:  # a malformed URL, an unsupported scheme…
                raise LlmError(f"could not call the LLM endpoint {self.base_url}: {error}") from error
            attempts += sent.attempts
            response = sent.response
            if response.is_success:
                duration_ms = int((time.monotonic() - started) * 1000)
                return self._answer(response, duration_ms=duration_ms, attempts=attempts, purpose=purpose,
                                    repaired=repaired)
            if self._refuses_response_format(response):
                self._downgrade(response)
                continue
            raise self._error_for(response)

    def _send(self, http: httpx.Client, url: str, body: dict[str, Any]) -> Sent:
        """POST with the shared retry policy; a chat completion has no side effects, so it is idempotent."""
        return send_with_retries(
            lambda: http.post(url, json=body, headers=self._headers()),
            policy=self.policy, idempotent=True, sleep=self._sleep, on_retry=self._log_retry,
        )

    def _log_retry(self, attempt: int, reason: str, delay: float) -> None:
        log.warning("LLM request attempt %d failed (%s); retrying in %.1f s", attempt, reason, delay)

    def _refuses_response_format(self, response: httpx.Response) -> bool:
        """vLLM, llama.cpp and older LM Studio answer 400 (some 422) naming the field they cannot honour."""
        if response.status_code not in (400, 422) or self.response_format_mode == "none":
            return False
        text = response.text.lower()
        return any(word in text for word in _FORMAT_REFUSAL_WORDS)

    def _downgrade(self, response: httpx.Response) -> None:
        refused = self.response_format_mode
        self._format_level = min(self._format_level + 1, len(FORMAT_LEVELS) - 1)
        log.info("LLM endpoint %s refused response_format %s (%s); using %s from now on", self.base_url, refused,
                 self._redact(_error_message(response)), self.response_format_mode)

    def _error_for(self, response: httpx.Response) -> LlmError:
        message = self._redact(_error_message(response))
        status = response.status_code
        if status in (401, 403):
            hint = "check STUDIO_LLM_API_KEY" if self._api_key.get_secret_value() else "set STUDIO_LLM_API_KEY"
            return LlmError(f"the LLM endpoint refused the API key (HTTP {status}); {hint}"
                            + (f": {message}" if message else ""))
        return LlmError(f"the LLM endpoint rejected the request (HTTP {status})" + (f": {message}" if message else ""))

    def _redact(self, text: str) -> str:
        """Servers sometimes quote the key they were given; never pass it on."""
        key = self._api_key.get_secret_value()
        return text.replace(key, "***") if key else text

    def _answer(
        self, response: httpx.Response, *, duration_ms: int, attempts: int, purpose: str, repaired: bool,
    ) -> _Answer:
        """The content, finish reason and usage of a 2xx answer."""
        try:
            data = response.json()
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise LlmError(
                f"the LLM endpoint {self.base_url} answered HTTP {response.status_code} with something that is not "
                f"a chat completion: {response.text[:200]!r}"
            ) from None
        usage = data.get("usage") or {}
        prompt_tokens = _int(usage.get("prompt_tokens"))
        completion_tokens = _int(usage.get("completion_tokens"))
        call = CallUsage(
            model=str(data.get("model") or self.model),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=self.cost_usd(prompt_tokens, completion_tokens),
            duration_ms=duration_ms,
            attempts=attempts,
            repaired=repaired,
            purpose=purpose,
        )
        log.info("LLM call for %s: model=%s prompt_tokens=%d completion_tokens=%d attempts=%d %d ms",
                 purpose, call.model, prompt_tokens, completion_tokens, attempts, duration_ms)
        content = message.get("content")
        if not isinstance(content, str):
            content = "" if content is None else json.dumps(content)
        refusal = message.get("refusal")
        return _Answer(content=content, finish_reason=choice.get("finish_reason"), usage=call,
                       refusal=str(refusal) if refusal else None)

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Tokens × the configured price per million (0 when prices are unknown, e.g. a local model)."""
        return (prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok) / 1_000_000


# --- prompts ----------------------------------------------------------------------------------------------------


def _schema_name(schema: type[BaseModel]) -> str:
    """OpenAI requires ``^[a-zA-Z0-9_-]{1,64}$``; generic models are named like ``Page[Post]``."""
    return _SCHEMA_NAME_UNSAFE.sub("_", schema.__name__)[:64] or "answer"


def _schema_instruction(schema: type[BaseModel]) -> str:
    return (
        "Answer with a single JSON value and nothing else: no prose, no Markdown code fences. "
        "It must validate against this JSON schema:\n" + json.dumps(schema.model_json_schema(), ensure_ascii=False)
    )


def _with_schema_instruction(messages: list[dict[str, Any]], schema: type[BaseModel]) -> list[dict[str, Any]]:
    """The schema in the system message, merged into the caller's: several chat templates refuse two."""
    instruction = _schema_instruction(schema)
    messages = [dict(message) for message in messages]
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        messages[0]["content"] = f"{messages[0]['content']}\n\n{instruction}"
        return messages
    return [{"role": "system", "content": instruction}, *messages]


def _repair_messages(bad_content: str, problem: str) -> list[dict[str, Any]]:
    return [
        {"role": "assistant", "content": bad_content},
        {"role": "user", "content": (
            f"That answer is not valid: {problem}\n"
            "Reply with only the corrected JSON, matching the schema, with no other text."
        )},
    ]


# --- parsing ------------------------------------------------------------------------------------------------------


def _parse(answer: _Answer, schema: type[T]) -> T:
    """The answer as a schema instance, or :class:`_InvalidOutput` saying what is wrong with it."""
    if answer.finish_reason == "length":
        raise _InvalidOutput("the answer was cut off at the token limit (finish_reason=length); answer more briefly")
    if not answer.content.strip():
        raise _InvalidOutput(f"the model refused: {answer.refusal}" if answer.refusal else "the answer was empty")
    try:
        data = extract_json(answer.content)
    except ValueError as error:
        raise _InvalidOutput(str(error)) from None
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise _InvalidOutput(describe_validation_error(error)) from None


def extract_json(text: str) -> Any:
    """The JSON value in a model's answer: fences, ``<think>`` blocks and chatter around it are ignored.

    Raises ValueError when there is no parseable JSON object or array.
    """
    text = _THINKING.sub("", text).strip()
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1).strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    starts = [i for i, char in enumerate(text) if char in "{["][:_MAX_JSON_STARTS]
    for start in starts:  # the first opening bracket that parses is the outermost value
        try:
            value, _end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict | list):
            return value
    raise ValueError(f"the answer is not valid JSON: {text[:120]!r}" + ("…" if len(text) > 120 else ""))


def _error_message(response: httpx.Response) -> str:
    """The server's own words: OpenAI ``{"error": {"message"}}``, vLLM ``{"message"}``, Ollama ``{"error": "…"}``."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str) and error:
            return error[:300]
        if data.get("message"):
            return str(data["message"])[:300]
        if data.get("detail"):
            return str(data["detail"])[:300]
    return response.text.strip()[:300]


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _normalise_base_url(base_url: str) -> str:
    """``…/v1`` without a trailing slash; a pasted ``…/chat/completions`` is accepted too."""
    url = base_url.strip().rstrip("/").removesuffix("/chat/completions")
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(f"the LLM base URL must start with http:// or https:// (got {base_url!r})")
    return url


# --- usage records ----------------------------------------------------------------------------------------------


def record_calls(
    calls: Sequence[CallUsage], *, plan_id: int | None = None, job_id: str | None = None, purpose: str = "",
) -> None:
    """Store each call as an ``LlmCall`` row (the plan page sums them; the costs page lists them)."""
    if not calls:
        return
    with session_scope() as session:
        for call in calls:
            session.add(LlmCall(
                plan_id=plan_id, job_id=job_id, purpose=(purpose or call.purpose)[:64], model=call.model[:200],
                prompt_tokens=call.prompt_tokens, completion_tokens=call.completion_tokens, cost_usd=call.cost_usd,
                duration_ms=call.duration_ms, attempts=call.attempts, repaired=call.repaired,
            ))


def usage_summary(plan_id: int) -> tuple[int, int, float]:
    """(prompt tokens, completion tokens, cost in USD) of every call recorded for a plan."""
    query = select(
        func.coalesce(func.sum(LlmCall.prompt_tokens), 0),
        func.coalesce(func.sum(LlmCall.completion_tokens), 0),
        func.coalesce(func.sum(LlmCall.cost_usd), 0.0),
    ).where(LlmCall.plan_id == plan_id)
    with session_scope() as session:
        prompt_tokens, completion_tokens, cost = session.exec(query).one()
    return int(prompt_tokens), int(completion_tokens), float(cost)
