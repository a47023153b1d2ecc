"""Content plans: slots, the offline template planner, and the LLM planner against a local
OpenAI-compatible server, run as real plan jobs by a real worker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from core.characters import characters
from core.characters.persona import Persona
from core.config import reload_settings
from core.db import session_scope
from core.errors import InvalidInput
from core.jobs.lifecycle import create_job, get_job
from core.models import ContentPlan, LlmCall, Post
from core.publishing import planning
from core.publishing.planning import PlanPayload
from tests.conftest import wait_until
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Fault

pytestmark = pytest.mark.clock  # also run at awkward moments (tests/clock.py): plan windows and local posting hours

REQUEST = {"theme": "morning runs", "platforms": ["instagram", "tiktok"], "start": "2026-12-07",
           "end": "2026-12-20", "posts_per_week": 3}


def _payload(**overrides: Any) -> PlanPayload:
    payload, _ = planning.prepare_plan_payload(PlanPayload.model_validate({**REQUEST, **overrides}))
    return payload


def _finished(job_id: str, timeout: float = 60):
    return wait_until(lambda: (job := get_job(job_id)).status in ("succeeded", "failed") and job, timeout,
                      what=f"job {job_id}")


@pytest.fixture
def trigger(studio) -> str:
    character = characters.current_character()
    characters.save_persona(character.id, characters.persona_of(character), trigger_word="mia_tok")
    return "mia_tok"


# --- slots and the request ------------------------------------------------------------------------------------


def test_each_platform_gets_its_posts_per_week_at_its_best_local_hour(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_TIMEZONE", "Europe/Paris")
    reload_settings()
    slots = planning.plan_slots(_payload())
    by_platform = {p: [s for s in slots if s.platform == p] for p in ("instagram", "tiktok")}
    assert len(by_platform["instagram"]) == len(by_platform["tiktok"]) == 6  # 3 a week for two weeks
    # 11:00 and 19:00 in Paris are 10:00 and 18:00 UTC in December.
    assert {s.at.hour for s in by_platform["instagram"]} == {10}
    assert {s.at.hour for s in by_platform["tiktok"]} == {18}
    assert all(date(2026, 12, 7) <= s.at.date() <= date(2026, 12, 20) for s in slots)
    assert len({s.at for s in slots}) == len(slots)


def test_the_persona_comes_from_the_character_when_the_request_has_none(studio):
    payload = _payload()
    assert payload.persona is not None and payload.persona.name == characters.current_character().name
    assert payload.character_id == characters.current_character().id


@pytest.mark.parametrize(("overrides", "message"), [
    ({"end": "2026-12-01"}, "ends before it starts"),
    ({"end": "2027-04-01"}, "at most 92 days"),
    ({"platforms": ["tiktok", "tiktok"]}, "listed twice"),
    ({"planner": "llm"}, "no LLM is configured"),
])
def test_bad_plan_requests_are_refused_with_the_field_named(studio, overrides, message):
    with pytest.raises(InvalidInput, match=message):
        create_job("plan", {**REQUEST, **overrides})
    with session_scope() as session:
        assert session.execute(select(ContentPlan)).first() is None


def test_the_template_planner_is_deterministic_and_carries_the_trigger_word(trigger):
    payload = _payload()
    slots = planning.plan_slots(payload)
    first = [planning.template_post(payload, slot, trigger) for slot in slots]
    again = [planning.template_post(payload, slot, trigger) for slot in slots]
    assert first == again
    assert all(post.image_prompt.startswith("mia_tok, ") for post in first)
    assert all(post.caption and post.hashtags and len(post.hashtags) <= 10 for post in first)
    assert "fyp" in first[1].hashtags if first[1].platform == "tiktok" else True
    assert len({post.caption for post in first}) > 1  # not one caption repeated


# --- plan jobs through a real worker ------------------------------------------------------------------------


def test_a_plan_job_writes_the_plan_and_its_draft_posts(trigger, workers):
    workers.worker("default")
    job = create_job("plan", REQUEST)
    finished = _finished(job.id)
    assert finished.status == "succeeded", finished.error
    plan_id = finished.result["plan_id"]
    posts = planning.plan_posts(plan_id)
    assert len(posts) == 12 and {p.status for p in posts} == {"draft"}
    assert all("mia_tok" in p.image_prompt for p in posts)
    plan = planning.list_plans().items[0]
    assert plan.planner == "template" and plan.cost_usd == 0 and plan.job_id == job.id


@pytest.fixture
def llm(studio, monkeypatch) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    with server.running():
        monkeypatch.setenv("STUDIO_LLM_BASE_URL", server.url + "/v1")
        monkeypatch.setenv("STUDIO_LLM_MODEL", "planner-8b")
        monkeypatch.setenv("STUDIO_LLM_INPUT_USD_PER_MTOK", "1.5")
        monkeypatch.setenv("STUDIO_LLM_OUTPUT_USD_PER_MTOK", "6")
        reload_settings()
        yield server


def _answer(request: dict[str, Any]) -> str:
    """What a good model would say: one post per slot named in the user message."""
    user = next(m["content"] for m in request["messages"] if "Slots: " in str(m["content"]))
    slots = json.loads(re.search(r"Slots: (\[.*?\])\n", user).group(1))
    return json.dumps({"posts": [
        {"slot": s["slot"], "caption": f"Run day {s['slot']} — sunrise miles with me!",
         "hashtags": ["#MorningRun", "run club"], "image_prompt": f"photo of Mia jogging at dawn, scene {s['slot']}",
         "title": "Sunrise miles" if s["platform"] == "YouTube Shorts" else ""} for s in slots]})


def test_an_llm_plan_is_validated_priced_and_prompts_carry_the_trigger_word(trigger, llm, workers):
    llm.reply(_answer)
    workers.worker("default")
    finished = _finished(create_job("plan", REQUEST).id)
    assert finished.status == "succeeded", finished.error
    plan = planning.list_plans().items[0]
    assert plan.planner == "llm:planner-8b" and plan.prompt_tokens > 0 and plan.completion_tokens > 0
    expected_cost = (plan.prompt_tokens * 1.5 + plan.completion_tokens * 6) / 1_000_000
    assert plan.cost_usd == pytest.approx(expected_cost)
    posts = planning.plan_posts(plan.id)
    assert len(posts) == 12
    assert all(p.image_prompt.startswith("mia_tok, photo of Mia") for p in posts)
    assert posts[0].hashtags == ["MorningRun", "run", "club"]
    request = llm.requests()[0]
    assert request["model"] == "planner-8b" and "Never: medical claims" in request["messages"][0]["content"]


def test_a_malformed_llm_answer_is_repaired_once_and_both_calls_are_recorded(trigger, llm, workers):
    llm.reply('{"posts": [{"slot": 0, "caption": ', _answer)
    workers.worker("default")
    finished = _finished(create_job("plan", REQUEST).id)
    assert finished.status == "succeeded", finished.error
    with session_scope() as session:
        calls = list(session.execute(select(LlmCall).where(LlmCall.plan_id == finished.result["plan_id"])).scalars())
    assert len(calls) == 2 and calls[1].repaired


def test_an_llm_that_miscounts_the_slots_fails_the_plan_after_one_repair_and_writes_no_posts(trigger, llm, workers):
    wrong = json.dumps({"posts": [{"slot": 0, "caption": "only one", "hashtags": [], "image_prompt": "x"}]})
    llm.reply(wrong, wrong)
    workers.worker("default")
    finished = _finished(create_job("plan", {**REQUEST, "planner": "llm"}).id)
    assert finished.status == "failed" and "still invalid after one repair" in finished.error
    assert "posts: List should have at least 12 items" in finished.error
    with session_scope() as session:
        assert session.execute(select(Post)).first() is None
        assert len(session.execute(select(LlmCall)).all()) == 2  # the failed plan's tokens are still counted


def test_a_rate_limited_llm_is_retried_after_its_retry_after(trigger, llm, workers):
    llm.inject("chat", Fault.rate_limited(retry_after_s=1))
    llm.reply(_answer)
    workers.worker("default")
    finished = _finished(create_job("plan", REQUEST).id)
    assert finished.status == "succeeded", finished.error
    chats = llm.calls_to("chat")
    assert [c.status for c in chats] == [429, 200]


def test_persona_rules_reach_the_prompt(studio):
    persona = Persona(name="Mia", niche="trail running", tone="calm", audience="beginners",
                      do=["one tip per post"], dont=["diet talk"])
    messages = planning.llm_messages(_payload(persona=persona.model_dump()), planning.plan_slots(_payload()), "tok")
    system, user = messages[0]["content"], messages[1]["content"]
    assert "Niche: trail running" in system and "Never: diet talk" in system and "Always: one tip per post" in system
    assert "trigger word 'tok'" in user and "morning runs" in user
