"""The LLM client against a real HTTP fake of an OpenAI-compatible endpoint: structured output,
repair, retries, format downgrades, key handling and usage records."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, Field
from sqlmodel import select

from core.db import session_scope
from core.errors import InvalidInput, PermanentJobError
from core.infra.http_retry import RetriesExhausted, RetryPolicy
from core.jobs.retry import is_transient
from core.models import ContentPlan, LlmCall
from core.publishing.llm import LlmClient, LlmError, LlmOutputInvalid, extract_json, record_calls, usage_summary
from tests.fakes.openai import FakeOpenAI, Reply
from tests.fakes.server import Fault

VALID = '{"caption": "Sunrise run by the river", "hashtags": ["run", "morning"], "seconds": 15}'
EXPECTED = {"caption": "Sunrise run by the river", "hashtags": ["run", "morning"], "seconds": 15}


class PostIdea(BaseModel):
    caption: str = Field(min_length=1)
    hashtags: list[str]
    seconds: int = Field(ge=1, le=90)


MESSAGES = [
    {"role": "system", "content": "You plan short videos for a running coach."},
    {"role": "user", "content": "One post idea for Monday."},
]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    with server.running():
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    """Delays the client asked to sleep; recorded instead of slept so retry tests run fast."""
    return []


def make_client(server: FakeOpenAI, sleeps: list[float], **overrides: Any) -> LlmClient:
    options: dict[str, Any] = {
        "api_key": "", "timeout_s": 5.0, "policy": RetryPolicy(max_retries=3, backoff_s=0.5, max_retry_after_s=10),
        "input_usd_per_mtok": 2.0, "output_usd_per_mtok": 8.0, "temperature": 0.2, "sleep": sleeps.append,
    }
    options.update(overrides)
    return LlmClient(server.url + "/v1", "fake-model-7b", **options)


def words(messages: list[dict[str, Any]]) -> int:
    return sum(len(message["content"].split()) for message in messages)


# --- answers --------------------------------------------------------------------------------------------------


def test_a_valid_answer_is_validated_priced_and_recorded(studio, fake: FakeOpenAI, sleeps: list[float]) -> None:
    fake.reply(VALID)
    client = make_client(fake, sleeps)

    result = client.chat_json(MESSAGES, PostIdea, purpose="plan")

    assert result.value == PostIdea(**EXPECTED)
    [request] = fake.requests()
    [call] = result.calls
    assert call.model == "fake-model-7b"
    assert call.prompt_tokens == words(request["messages"]) > 0
    assert call.completion_tokens == len(VALID.split())
    assert call.cost_usd == pytest.approx((call.prompt_tokens * 2.0 + call.completion_tokens * 8.0) / 1e6)
    assert (call.attempts, call.repaired) == (1, False)
    assert result.cost_usd == call.cost_usd

    with session_scope() as session:
        plan = ContentPlan(name="Week 1")
        session.add(plan)
        session.flush()
        plan_id = plan.id
    record_calls(result.calls, plan_id=plan_id, job_id="job-1", purpose="plan")
    with session_scope() as session:
        [row] = session.exec(select(LlmCall)).all()
    assert (row.plan_id, row.job_id, row.purpose, row.model) == (plan_id, "job-1", "plan", "fake-model-7b")
    assert (row.prompt_tokens, row.completion_tokens, row.attempts, row.repaired) == (
        call.prompt_tokens, call.completion_tokens, 1, False)
    assert usage_summary(plan_id) == (call.prompt_tokens, call.completion_tokens, pytest.approx(call.cost_usd))


def test_the_request_asks_for_the_schema_twice_and_sends_no_key_when_none_is_set(
    fake: FakeOpenAI, sleeps: list[float]
) -> None:
    fake.reply(VALID)
    make_client(fake, sleeps).chat_json(MESSAGES, PostIdea, purpose="plan")

    [call] = fake.calls_to("chat")
    request = call.json()
    assert "authorization" not in call.headers
    assert (request["model"], request["temperature"]) == ("fake-model-7b", 0.2)
    assert request["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "PostIdea", "schema": PostIdea.model_json_schema()},
    }
    # The caller's system message is kept first and carries the schema (one system message only).
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    system = request["messages"][0]["content"]
    assert system.startswith("You plan short videos") and json.dumps(PostIdea.model_json_schema()) in system


@pytest.mark.parametrize("content", [
    f"```json\n{VALID}\n```",
    f"Here is your post idea:\n\n{VALID}\n\nLet me know if you want another one!",
    f"<think>The user wants {{one}} idea.</think>\n```\n{VALID}\n```",
], ids=["fenced", "chatter", "thinking"])
def test_json_wrapped_in_fences_or_chatter_is_parsed(fake: FakeOpenAI, sleeps: list[float], content: str) -> None:
    fake.reply(content)

    result = make_client(fake, sleeps).chat_json(MESSAGES, PostIdea, purpose="plan")

    assert result.value == PostIdea(**EXPECTED)
    assert len(fake.requests()) == 1


def test_extract_json_takes_the_outermost_value_and_refuses_prose() -> None:
    assert extract_json('Ideas: [{"a": 1}, {"a": 2}] done') == [{"a": 1}, {"a": 2}]
    assert extract_json('note {not json} then {"a": {"b": 1}}') == {"a": {"b": 1}}
    with pytest.raises(ValueError, match="not valid JSON"):
        extract_json("I cannot help with that.")


def test_an_answer_without_usage_counts_zero_tokens_and_keeps_the_served_model(
    fake: FakeOpenAI, sleeps: list[float]
) -> None:
    fake.reply(Reply(VALID, include_usage=False, model="fake-model-7b-q4"))

    [call] = make_client(fake, sleeps).chat_json(MESSAGES, PostIdea, purpose="plan").calls

    assert (call.model, call.prompt_tokens, call.completion_tokens, call.cost_usd) == ("fake-model-7b-q4", 0, 0, 0.0)


# --- repair ---------------------------------------------------------------------------------------------------


def test_malformed_json_gets_one_repair_and_both_calls_are_recorded(
    studio, fake: FakeOpenAI, sleeps: list[float]
) -> None:
    broken = '{"caption": "Sunrise run", "hashtags": ["run",'
    fake.reply(broken, VALID)

    result = make_client(fake, sleeps).chat_json(MESSAGES, PostIdea, purpose="plan")

    assert result.value == PostIdea(**EXPECTED)
    assert result.repaired
    assert [call.repaired for call in result.calls] == [False, True]
    first, second = fake.requests()
    assert second["messages"][:-2] == first["messages"]
    assert second["messages"][-2] == {"role": "assistant", "content": broken}
    assert second["messages"][-1]["role"] == "user" and "not valid JSON" in second["messages"][-1]["content"]

    record_calls(result.calls, job_id="job-2")
    with session_scope() as session:
        rows = session.exec(select(LlmCall).order_by(LlmCall.id)).all()
    assert [(row.job_id, row.purpose, row.repaired) for row in rows] == [("job-2", "plan", False),
                                                                         ("job-2", "plan", True)]


def test_an_answer_still_invalid_after_the_repair_fails_naming_the_field(
    fake: FakeOpenAI, sleeps: list[float]
) -> None:
    too_long = '{"caption": "Marathon vlog", "hashtags": [], "seconds": 600}'
    fake.reply(too_long, too_long, VALID)

    with pytest.raises(LlmOutputInvalid, match="seconds") as raised:
        make_client(fake, sleeps).chat_json(MESSAGES, PostIdea, purpose="plan")

    assert len(fake.requests()) == 2
    assert fake.replies_left == 1
    assert isinstance(raised.value, PermanentJobError) and not is_transient(raised.value)
    assert [call.repaired for call in raised.value.calls] == [False, True]
    assert "seconds" in fake.requests()[1]["messages"][-1]["content"]


def test_a_cut_off_answer_is_repaired_and_the_model_is_told_it_was_cut_off(
    fake: FakeOpenAI, sleeps: list[float]
) -> None:
    fake.reply(Reply('{"caption": "Sunrise run by', finish_reason="length"), VALID)

    result = make_client(fake, sleeps).chat_json(MESSAGES, PostIdea, purpose="plan")

    assert result.value == PostIdea(**EXPECTED)
    assert "cut off" in fake.requests()[1]["messages"][-1]["content"]


# --- retries --------------------------------------------------------------------------------------------------


def test_a_rate_limit_waits_as_long_as_retry_after_says_then_succeeds(fake: FakeOpenAI, sleeps: list[float]) -> None:
    fake.inject("chat", Fault.rate_limited(retry_after_s=1))
    fake.reply(VALID)

    result = make_client(fake, sleeps).chat_json(MESSAGES, PostIdea, purpose="plan")

    assert result.value == PostIdea(**EXPECTED)
    assert sleeps == [1.0]
    assert result.calls[0].attempts == 2
    assert [call.status for call in fake.calls_to("chat")] == [429, 200]


def test_server_errors_are_retried_with_backoff_until_the_server_recovers(
    fake: FakeOpenAI, sleeps: list[float]
) -> None:
    fake.inject("chat", Fault.server_error(503), Fault.server_error(503))
    fake.reply(VALID)

    result = make_client(fake, sleeps).chat_json(MESSAGES, PostIdea, purpose="plan")

    assert result.calls[0].attempts == 3
    assert len(sleeps) == 2 and all(0 < delay <= 2.0 for delay in sleeps)
    assert [call.status for call in fake.calls_to("chat")] == [503, 503, 200]


def test_a_retry_after_beyond_the_limit_gives_up_at_once_without_waiting(
    fake: FakeOpenAI, sleeps: list[float]
) -> None:
    fake.inject("chat", Fault.rate_limited(retry_after_s=120))
    fake.reply(VALID)
    client = make_client(fake, sleeps, policy=RetryPolicy(max_retries=3, max_retry_after_s=5))

    with pytest.raises(RetriesExhausted, match="120 s") as raised:
        client.chat_json(MESSAGES, PostIdea, purpose="plan")

    assert sleeps == []
    assert len(fake.requests()) == 1
    assert is_transient(raised.value) and raised.value.status == 429


def test_timeouts_are_retried_then_give_up_as_a_transient_error(fake: FakeOpenAI, sleeps: list[float]) -> None:
    fake.inject("chat", *[Fault.stall(1.0)] * 3)
    fake.reply(VALID)
    client = make_client(fake, sleeps, timeout_s=0.3, policy=RetryPolicy(max_retries=2, backoff_s=0.1))

    with pytest.raises(RetriesExhausted, match="Timeout") as raised:
        client.chat_json(MESSAGES, PostIdea, purpose="plan")

    assert len(fake.requests()) == 3
    assert len(sleeps) == 2
    assert is_transient(raised.value) and raised.value.attempts == 3


def test_a_timed_out_request_is_retried_and_succeeds(fake: FakeOpenAI, sleeps: list[float]) -> None:
    fake.inject("chat", Fault.stall(1.0))
    fake.reply(VALID)
    client = make_client(fake, sleeps, timeout_s=0.3)

    result = client.chat_json(MESSAGES, PostIdea, purpose="plan")

    assert result.value == PostIdea(**EXPECTED)
    assert result.calls[0].attempts == 2


# --- refusals -------------------------------------------------------------------------------------------------


def test_a_refused_api_key_is_a_permanent_error_that_does_not_reveal_the_key(sleeps: list[float]) -> None:
    wrong_key = "sk-wrong-0123456789abcdef"
    with FakeOpenAI(api_key="sk-right-key-42").running() as server:
        assert isinstance(server, FakeOpenAI)
        server.reply(VALID)

        with pytest.raises(LlmError, match=r"refused the API key \(HTTP 401\)") as raised:
            make_client(server, sleeps, api_key=wrong_key).chat_json(MESSAGES, PostIdea, purpose="plan")

        assert wrong_key not in str(raised.value)
        assert not is_transient(raised.value)
        assert len(server.requests()) == 1 and sleeps == []

        make_client(server, sleeps, api_key="sk-right-key-42").chat_json(MESSAGES, PostIdea, purpose="plan")
        assert server.calls_to("chat")[-1].headers["authorization"] == "Bearer sk-right-key-42"


def test_other_client_errors_carry_the_servers_message(fake: FakeOpenAI, sleeps: list[float]) -> None:
    fake.inject("chat", Fault.respond(404, {"error": {"message": "The model `fake-model-7b` does not exist",
                                                      "type": "invalid_request_error"}}))

    with pytest.raises(LlmError, match=r"HTTP 404.*does not exist"):
        make_client(fake, sleeps).chat_json(MESSAGES, PostIdea, purpose="plan")

    assert len(fake.requests()) == 1


def test_a_server_without_json_schema_gets_json_object_and_the_client_remembers(sleeps: list[float]) -> None:
    with FakeOpenAI(reject_json_schema=True).running() as server:
        assert isinstance(server, FakeOpenAI)
        server.reply(VALID, VALID)
        client = make_client(server, sleeps)

        first = client.chat_json(MESSAGES, PostIdea, purpose="plan")
        client.chat_json(MESSAGES, PostIdea, purpose="plan")

        formats = [request["response_format"]["type"] for request in server.requests()]
        assert formats == ["json_schema", "json_object", "json_object"]
        assert [call.status for call in server.calls_to("chat")] == [400, 200, 200]
        assert client.response_format_mode == "json_object"
        assert first.calls[0].attempts == 2


def test_a_server_refusing_both_formats_is_asked_without_one_and_still_told_the_schema(sleeps: list[float]) -> None:
    with FakeOpenAI(reject_json_schema=True, reject_json_object=True).running() as server:
        assert isinstance(server, FakeOpenAI)
        server.reply(VALID)

        result = make_client(server, sleeps).chat_json(MESSAGES, PostIdea, purpose="plan")

        requests = server.requests()
        assert [r.get("response_format", {}).get("type") for r in requests] == ["json_schema", "json_object", None]
        assert '"seconds"' in requests[-1]["messages"][0]["content"]
        assert result.value == PostIdea(**EXPECTED)


# --- configuration and secrets ------------------------------------------------------------------------------


def test_from_settings_returns_none_until_a_base_url_and_model_are_configured(
    studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import reload_settings

    assert LlmClient.from_settings(reload_settings()) is None
    monkeypatch.setenv("STUDIO_LLM_BASE_URL", "http://127.0.0.1:11434/v1")
    assert LlmClient.from_settings(reload_settings()) is None
    monkeypatch.setenv("STUDIO_LLM_MODEL", "llama3.1:8b")
    client = LlmClient.from_settings(reload_settings())
    assert client is not None and (client.base_url, client.model) == ("http://127.0.0.1:11434/v1", "llama3.1:8b")


def test_from_settings_uses_the_configured_key_prices_and_retry_limits(
    studio, fake: FakeOpenAI, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import reload_settings

    for name, value in {"BASE_URL": fake.url + "/v1", "MODEL": "openrouter/some-model", "API_KEY": "sk-or-secret-1",
                        "INPUT_USD_PER_MTOK": "3", "OUTPUT_USD_PER_MTOK": "15", "MAX_RETRIES": "1",
                        "RETRY_MAX_WAIT_S": "7"}.items():
        monkeypatch.setenv(f"STUDIO_LLM_{name}", value)
    client = LlmClient.from_settings(reload_settings(), sleep=sleeps.append)
    assert client is not None
    fake.reply(VALID)

    [call] = client.chat_json(MESSAGES, PostIdea, purpose="plan").calls

    assert fake.calls_to("chat")[0].headers["authorization"] == "Bearer sk-or-secret-1"
    assert call.cost_usd == pytest.approx((call.prompt_tokens * 3 + call.completion_tokens * 15) / 1e6)
    assert (client.policy.max_retries, client.policy.max_retry_after_s) == (1, 7.0)


def test_a_base_url_without_a_scheme_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="http"):
        LlmClient("localhost:11434/v1", "llama3.1:8b")


def test_the_api_key_never_appears_in_logs_or_repr(
    fake: FakeOpenAI, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk-very-secret-key-987654321"
    caplog.set_level(logging.DEBUG)
    fake.inject("chat", Fault.rate_limited(1), Fault.respond(401, {"error": {"message": f"bad key {key}"}}))
    fake.reply("not json", VALID)
    client = make_client(fake, sleeps, api_key=key)

    with pytest.raises(LlmError) as raised:
        client.chat_json(MESSAGES, PostIdea, purpose="plan")
    client.chat_json(MESSAGES, PostIdea, purpose="plan")  # retried, then repaired

    assert fake.calls_to("chat")[-1].headers["authorization"] == f"Bearer {key}"
    assert "retrying" in caplog.text and "repair" in caplog.text  # the logs did describe those calls
    assert key not in caplog.text
    assert key not in repr(client) and "api_key=set" in repr(client)
    assert key not in str(raised.value)
