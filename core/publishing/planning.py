"""Content plans: from a persona, a theme, platforms and dates to draft posts on the calendar.

The *slots* (which platform posts when) are decided here, deterministically, in the studio's
time zone: ``posts_per_week`` posts per platform, spread evenly over the range, each platform
at its usual best hour. The *words* come from an LLM when one is configured (any
OpenAI-compatible endpoint, ``core.publishing.llm``) or from the offline template planner, which gives
the same shape so plans work without network. Either way every image prompt carries the
character's trigger word, and the plan and its posts are written in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, create_model, model_validator
from sqlalchemy import func, select
from sqlmodel import col

from core.characters import characters
from core.characters.persona import Persona
from core.characters.scope import in_scope
from core.config import get_settings
from core.db import session_scope
from core.errors import InvalidInput, referenced_by
from core.generation.requests import insert_trigger_words
from core.jobs.kinds import JobSpec, Payload, Queue, register
from core.jobs.lifecycle import JobContext, create_job
from core.models import ContentPlan, Job, Platform, Post, PostStatus
from core.pagination import Page, clamp
from core.publishing.checks import RULES, normalize_hashtags
from core.publishing.llm import LlmClient, LlmOutputInvalid, record_calls

MAX_PLAN_DAYS = 92
BEST_HOURS = {Platform.INSTAGRAM: 11, Platform.FACEBOOK: 13, Platform.YOUTUBE: 17, Platform.TIKTOK: 19}


class PlanPayload(Payload):
    """Plan posts for a date range. With no persona, the character's stored persona is used."""

    character_id: int | None = Field(default=None, ge=1)
    persona: Persona | None = None
    theme: str = Field(min_length=1, max_length=500)
    platforms: list[Literal["instagram", "facebook", "youtube", "tiktok"]] = Field(min_length=1, max_length=4)
    start: date
    end: date
    posts_per_week: int = Field(default=3, ge=1, le=28)
    name: str = Field(default="", max_length=200)
    planner: Literal["auto", "llm", "template"] = "auto"  # auto: the LLM when one is configured


@dataclass(frozen=True)
class Slot:
    index: int
    platform: str
    at: datetime  # aware, UTC


class PlannedPost(BaseModel):
    platform: str
    scheduled_at: datetime
    caption: str
    hashtags: list[str]
    image_prompt: str
    title: str = ""


# --- the request ----------------------------------------------------------------------------------------


def prepare_plan_payload(payload: PlanPayload) -> tuple[PlanPayload, int | None]:
    """Checks the dates and the planner, and fills the persona from the character when not given."""
    if payload.end < payload.start:
        raise InvalidInput("end: the plan ends before it starts")
    if (payload.end - payload.start).days + 1 > MAX_PLAN_DAYS:
        raise InvalidInput(f"end: a plan covers at most {MAX_PLAN_DAYS} days; split longer ranges")
    if len(set(payload.platforms)) != len(payload.platforms):
        raise InvalidInput("platforms: a platform is listed twice")
    if payload.planner == "llm" and not _llm_configured():
        raise InvalidInput("planner: no LLM is configured (set STUDIO_LLM_BASE_URL and STUDIO_LLM_MODEL) — "
                           "use the template planner")
    character_id = payload.character_id
    if payload.persona is None:
        with referenced_by("character_id"):
            character = (characters.get_character(character_id) if character_id is not None
                         else characters.current_character())
        character_id = character.id
        payload = payload.model_copy(update={"persona": characters.persona_of(character),
                                             "character_id": character_id})
    return payload, character_id


def _llm_configured() -> bool:
    settings = get_settings()
    return bool(settings.llm_base_url and settings.llm_model)


def submit_plan(**request: Any) -> Job:
    return create_job("plan", request)


# --- slots ---------------------------------------------------------------------------------------------


def plan_slots(payload: PlanPayload, *, zone: str | None = None) -> list[Slot]:
    """``posts_per_week`` per platform, evenly spread over [start, end], staggered between platforms."""
    tz = ZoneInfo(zone or get_settings().timezone)
    days = (payload.end - payload.start).days + 1
    per_platform = max(1, round(payload.posts_per_week * days / 7))
    slots: list[tuple[datetime, str]] = []
    for position, platform in enumerate(payload.platforms):
        offset = position / len(payload.platforms)
        for i in range(per_platform):
            day = payload.start + timedelta(days=int((i + offset) * days / per_platform))
            hour = BEST_HOURS[Platform(platform)]
            local = datetime.combine(day, time(hour), tz)
            slots.append((local, platform))
    slots.sort()
    # Two posts at the same minute would collide on the calendar; push the later one by an hour.
    taken: set[datetime] = set()
    result = []
    for index, (local, slot_platform) in enumerate(slots):
        while local in taken:
            local += timedelta(hours=1)
        taken.add(local)
        result.append(Slot(index, slot_platform, local.astimezone(ZoneInfo("UTC"))))
    return result


# --- the offline planner ----------------------------------------------------------------------------------

_SCENES = ("on a sunrise trail run", "at a farmers' market", "stretching on a rooftop", "cooking a colourful bowl",
           "on a city bike ride", "at a lakeside picnic", "in a bright home gym", "hiking a forest path",
           "at a beach yoga session", "in a cosy café after a workout")
_HOOKS = ("Here's what {theme} looks like for me today.", "Small habit, big change: {theme}.",
          "Quick one about {theme} before you scroll on.", "{theme}, the honest version.",
          "If you only try one thing this week, make it this: {theme}.")
_CALLS = ("What would you add?", "Save this for later.", "Tell me how it goes!", "Tag someone who needs this.",
          "Which one are you trying first?")


def _rng(payload: PlanPayload, slot: Slot) -> random.Random:
    seed = f"{payload.theme}|{payload.persona.name if payload.persona else ''}|{slot.index}|{slot.platform}"
    return random.Random(int(hashlib.sha256(seed.encode()).hexdigest()[:16], 16))


_STOPWORDS = frozenset({"and", "the", "for", "with", "from", "your", "our", "you", "into", "about", "this", "that"})


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[A-Za-z0-9]+", text) if len(w) > 2 and w.lower() not in _STOPWORDS]


def template_post(payload: PlanPayload, slot: Slot, trigger: str) -> PlannedPost:
    """A deterministic post from the persona and theme (same request, same plan)."""
    persona = payload.persona or Persona(name="the character")
    rng = _rng(payload, slot)
    scene = rng.choice(_SCENES)
    hook = rng.choice(_HOOKS).format(theme=payload.theme.strip().rstrip("."))
    tip = persona.do[slot.index % len(persona.do)] if persona.do else f"keep it simple and {persona.tone or 'fun'}"
    caption = f"{hook} Me {scene} — {tip}. {rng.choice(_CALLS)}"
    tags = [*_words(payload.theme)[:3], *_words(persona.niche)[:3]]
    tags += {Platform.YOUTUBE: ["shorts"], Platform.TIKTOK: ["fyp"]}.get(Platform(slot.platform), [])
    prompt = f"photo of {persona.name}, {persona.niche or 'lifestyle'} influencer {scene}, {payload.theme}, " \
             "natural light, candid, high detail"
    title = f"{payload.theme.strip().capitalize()} — {scene}"[:100] if slot.platform == Platform.YOUTUBE else ""
    return PlannedPost(platform=slot.platform, scheduled_at=slot.at, caption=caption,
                       hashtags=normalize_hashtags([t.lower() for t in tags])[:10],
                       image_prompt=insert_trigger_words(prompt, [trigger] if trigger else []), title=title)


# --- the LLM planner ---------------------------------------------------------------------------------------


class LlmPost(BaseModel):
    slot: int = Field(ge=0)
    caption: str = Field(min_length=1, max_length=2000)
    hashtags: list[str] = Field(default_factory=list, max_length=30)
    image_prompt: str = Field(min_length=1, max_length=600)
    title: str = Field(default="", max_length=100)


def plan_schema(slot_count: int) -> type[BaseModel]:
    """The answer's schema: exactly one post per slot (a wrong count goes back for repair)."""

    def every_slot_once(model: Any) -> Any:
        seen = sorted(post.slot for post in model.posts)
        if seen != list(range(slot_count)):
            raise ValueError(f"posts must cover slots 0..{slot_count - 1} exactly once; got {seen}")
        return model

    return create_model(
        "ContentPlanAnswer",
        posts=(list[LlmPost], Field(min_length=slot_count, max_length=slot_count)),
        # pydantic's documented way to pass a validator, though its annotation asks for a plain callable
        __validators__={"every_slot_once": model_validator(mode="after")(every_slot_once)},  # type: ignore[dict-item]
    )


def llm_messages(payload: PlanPayload, slots: list[Slot], trigger: str) -> list[dict[str, str]]:
    persona = payload.persona or Persona(name="the character")
    zone = ZoneInfo(get_settings().timezone)
    slot_lines = [{"slot": s.index, "platform": Platform(s.platform).label,
                   "when": s.at.astimezone(zone).strftime("%A %Y-%m-%d %H:%M")} for s in slots]
    limits = {Platform(p).label: {"caption_max_chars": RULES[p].caption_max, "hashtags_max": RULES[p].hashtags_max}
              for p in payload.platforms}
    system = (
        "You are the social media strategist of an AI influencer. Write posts in the persona's voice and "
        "follow its rules strictly.\n\nPersona:\n" + persona.describe() +
        "\n\nAnswer with JSON only: {\"posts\": [{\"slot\", \"caption\", \"hashtags\", \"image_prompt\", \"title\"}]}."
        " One post per slot. `hashtags` without '#'. `image_prompt` describes one photo of the persona for an "
        "image model (subject, setting, light, framing), no text in the image. `title` only for YouTube Shorts "
        "(≤ 100 characters), else empty."
    )
    user = (f"Theme: {payload.theme}\nSlots: {json.dumps(slot_lines)}\nPlatform limits: {json.dumps(limits)}"
            + (f"\nThe image prompts must include the trigger word '{trigger}'." if trigger else ""))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def llm_posts(answer: Any, slots: list[Slot], trigger: str) -> list[PlannedPost]:
    by_slot = {post.slot: post for post in answer.posts}
    planned = []
    for slot in slots:
        post = by_slot[slot.index]
        planned.append(PlannedPost(
            platform=slot.platform, scheduled_at=slot.at, caption=post.caption.strip(),
            hashtags=normalize_hashtags(post.hashtags)[: RULES[slot.platform].hashtags_max or 30],
            image_prompt=insert_trigger_words(post.image_prompt, [trigger] if trigger else []),
            title=post.title.strip()[:100] if slot.platform == Platform.YOUTUBE else "",
        ))
    return planned


# --- running a plan job ------------------------------------------------------------------------------------


def _existing_plan(job_id: str) -> ContentPlan | None:
    with session_scope() as session:
        return session.execute(select(ContentPlan).where(col(ContentPlan.job_id) == job_id)).scalar_one_or_none()


def run_plan(ctx: JobContext[PlanPayload]) -> dict[str, Any]:
    """The plan job: slots → words (LLM or template) → plan and draft posts, in one transaction."""
    payload = ctx.payload
    existing = _existing_plan(ctx.job_id)
    if existing is not None:  # a redelivered job: the plan was already written
        return {"plan_id": existing.id, "reused": True}
    trigger = characters.trigger_word_of(payload.character_id)
    ctx.stage("slots")
    slots = plan_slots(payload)
    ctx.log(f"{len(slots)} slots between {payload.start} and {payload.end}")
    use_llm = payload.planner == "llm" or (payload.planner == "auto" and _llm_configured())
    calls: list[Any] = []
    if use_llm:
        ctx.stage("writing (LLM)")
        client = LlmClient.from_settings(get_settings())
        if client is None:
            raise InvalidInput("no LLM is configured")
        try:
            result = client.chat_json(llm_messages(payload, slots, trigger), plan_schema(len(slots)), purpose="plan")
        except LlmOutputInvalid as error:
            record_calls(error.calls, job_id=ctx.job_id, purpose="plan")  # a failed plan still cost tokens
            raise
        calls = result.calls
        posts = llm_posts(result.value, slots, trigger)
        planner = f"llm:{client.model}"
    else:
        ctx.stage("writing (template)")
        posts = [template_post(payload, slot, trigger) for slot in slots]
        planner = "template"
    ctx.stage("saving")
    plan_id = _save_plan(ctx.job_id, payload, posts, planner, calls)
    return {"plan_id": plan_id, "posts": len(posts), "planner": planner}


def _save_plan(job_id: str, payload: PlanPayload, posts: list[PlannedPost], planner: str, calls: list[Any]) -> int:
    name = payload.name or f"{payload.theme[:60]} · {payload.start:%d %b}–{payload.end:%d %b}"
    with session_scope() as session:
        plan = ContentPlan(
            character_id=payload.character_id, name=name, theme=payload.theme, planner=planner, job_id=job_id,
            request=payload.model_dump(mode="json"),
            prompt_tokens=sum(c.prompt_tokens for c in calls),
            completion_tokens=sum(c.completion_tokens for c in calls),
            cost_usd=sum(c.cost_usd for c in calls),
        )
        session.add(plan)
        session.flush()
        for planned in posts:
            session.add(Post(plan_id=plan.id, character_id=payload.character_id, status=PostStatus.DRAFT,
                             **planned.model_dump()))
        plan_id = plan.id
    if calls:
        record_calls(calls, plan_id=plan_id, job_id=job_id, purpose="plan")
    return plan_id or 0


def list_plans(*, page: int = 1, page_size: int = 20) -> Page[ContentPlan]:
    page, page_size = clamp(page, page_size, max_page_size=100)
    with session_scope() as session:
        mine = in_scope(col(ContentPlan.character_id))
        total = session.execute(select(func.count()).select_from(ContentPlan).where(*mine)).scalar_one()
        items = list(session.execute(select(ContentPlan).where(*mine).order_by(col(ContentPlan.created_at).desc())
                                     .offset((page - 1) * page_size).limit(page_size)).scalars())
    return Page(items, total, page, page_size)


def plan_post_counts(plan_ids: list[int]) -> dict[int, int]:
    """How many posts each plan has, in one grouped query (the plans table shows it per row)."""
    if not plan_ids:
        return {}
    with session_scope() as session:
        rows = session.execute(select(col(Post.plan_id), func.count()).where(col(Post.plan_id).in_(plan_ids))
                               .group_by(col(Post.plan_id))).all()
    counts = {plan_id: 0 for plan_id in plan_ids}
    counts.update({int(plan_id): int(count) for plan_id, count in rows})
    return counts


def plan_posts(plan_id: int) -> list[Post]:
    with session_scope() as session:
        return list(session.execute(select(Post).where(col(Post.plan_id) == plan_id)
                                    .order_by(col(Post.scheduled_at)).limit(1000)).scalars())


def plan_date_range(plan: ContentPlan) -> tuple[date, date]:
    return date.fromisoformat(plan.request["start"]), date.fromisoformat(plan.request["end"])


# --- the job kinds of this domain (core.catalogue loads them all) ---

register(JobSpec(
    "plan", Queue.DEFAULT, PlanPayload, "Plans posts from a persona and a theme (an LLM, or the offline planner).",
    max_attempts=3, time_limit_s=900, prepare=prepare_plan_payload,
))
