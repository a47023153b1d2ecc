"""The Plans tab: the character's persona, a request for a content plan (written by the LLM or the
offline template planner on a worker), the plan jobs, and the plans with their posts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import streamlit as st
from pydantic import ValidationError

from core.characters import characters
from core.characters.persona import Persona
from core.config import get_settings
from core.errors import StudioError, describe_validation_error
from core.jobs import lifecycle as jobs
from core.models import Job, JobStatus, Platform, PostStatus
from core.publishing import planning, posts
from ui.auth import guard
from ui.calendar.clock import local, studio_zone, when_text
from ui.calendar.state import PLANS_FLASH
from ui.feedback import Refused, run_action, show_flash
from ui.text import literal, plain
from ui.widgets import live_job_list, status_badge, stored_id

# --- persona ---------------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def persona_form() -> None:
    character = characters.current_character()
    persona = characters.persona_of(character)
    seeds = {"name": persona.name, "niche": persona.niche, "tone": persona.tone, "audience": persona.audience,
             "do": "\n".join(persona.do), "dont": "\n".join(persona.dont)}
    for name, value in seeds.items():
        st.session_state.setdefault(f"calendar.persona.{name}", value)

    def seeded(name: str) -> str:
        # Also the widget's default: a collapsed expander mounts its widgets late, and a widget mounted after
        # a rerun shows (and submits) its default, not the seeded state (see ui/training/param_form.py).
        return str(st.session_state[f"calendar.persona.{name}"])

    with st.expander(f"Persona: {literal(persona.name)}", icon=":material/person:"):
        with st.form("calendar.persona"):
            left, right = st.columns(2)
            left.text_input("Name", value=seeded("name"), key="calendar.persona.name", max_chars=120)
            right.text_input("Niche", value=seeded("niche"), key="calendar.persona.niche", max_chars=200)
            left.text_input("Tone", value=seeded("tone"), key="calendar.persona.tone", max_chars=200)
            right.text_input("Audience", value=seeded("audience"), key="calendar.persona.audience", max_chars=200)
            left.text_area("Always (one per line)", value=seeded("do"), key="calendar.persona.do")
            right.text_area("Never (one per line)", value=seeded("dont"), key="calendar.persona.dont")
            saved = st.form_submit_button("Save persona", key="calendar.persona.save")
        if saved:
            _save_persona(character.id or 0)


def _save_persona(character_id: int) -> None:
    state = st.session_state
    try:
        persona = Persona(name=state["calendar.persona.name"].strip(), niche=state["calendar.persona.niche"].strip(),
                          tone=state["calendar.persona.tone"].strip(),
                          audience=state["calendar.persona.audience"].strip(),
                          do=_lines(state["calendar.persona.do"]), dont=_lines(state["calendar.persona.dont"]))
        characters.save_persona(character_id, persona)
    except ValidationError as error:
        st.error(literal(describe_validation_error(error)))
    except StudioError as error:
        st.error(literal(error))
    else:
        st.success("Persona saved: new plans are written from it.")


# --- plans: the request ---------------------------------------------------------------------------------

PLANNERS = {"auto": "Auto (the LLM when one is configured)", "template": "Template (offline)", "llm": "LLM"}


def planner_note() -> str:
    settings = get_settings()
    if settings.llm_base_url and settings.llm_model:
        return f"LLM: {settings.llm_model} at {settings.llm_base_url}"
    return ("No LLM is configured (STUDIO_LLM_BASE_URL and STUDIO_LLM_MODEL): plans use the offline "
            "template planner.")


def plan_form(tz: ZoneInfo) -> None:
    today = datetime.now(tz).date()
    with st.form("calendar.plan"):
        st.markdown("**New content plan**")
        left, right = st.columns([3, 2])
        left.text_input("Theme", key="calendar.plan.theme", max_chars=500,
                        placeholder="e.g. morning routines that stick")
        right.text_input("Name (optional)", key="calendar.plan.name", max_chars=200)
        left.multiselect("Platforms", [p.value for p in Platform], default=["instagram"],
                         format_func=lambda p: Platform(p).label, key="calendar.plan.platforms")
        right.date_input("Dates", value=(today + timedelta(days=1), today + timedelta(days=14)),
                         key="calendar.plan.dates")
        left.number_input("Posts per week, per platform", 1, 28, 3, key="calendar.plan.per_week")
        right.radio("Planner", list(PLANNERS), format_func=PLANNERS.__getitem__, key="calendar.plan.planner")
        st.caption(planner_note())
        submitted = st.form_submit_button("Generate plan", type="primary", key="calendar.plan.submit",
                                          icon=":material/auto_awesome:")
    if submitted:
        _submit_plan()


def _submit_plan() -> None:
    state = st.session_state
    dates = tuple(state.get("calendar.plan.dates") or ())
    if len(dates) != 2:
        st.error("Pick the plan's first and last day.")
        return
    try:
        job = planning.submit_plan(theme=state["calendar.plan.theme"], name=state["calendar.plan.name"],
                                   platforms=state["calendar.plan.platforms"], start=dates[0], end=dates[1],
                                   posts_per_week=int(state["calendar.plan.per_week"]),
                                   planner=state["calendar.plan.planner"])
    except StudioError as error:
        st.error(literal(error))
        return
    state["calendar.planjobs.page"] = 1
    st.success(f"Planning: job {job.id[:8]}. The plan appears below when it finishes.")


def _plan_job(job: Job) -> None:
    with st.container(border=True):
        left, right = st.columns([1, 4], vertical_alignment="center")
        with left:
            status_badge(job.status)
        right.text(plain(f"{job.payload.get('theme', '')[:80]} · job {job.id[:8]}"))
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            st.progress(job.progress, text=job.stage or "waiting for a worker (default queue)…")
        elif job.status == JobStatus.FAILED:
            st.error(literal(job.error or "failed"))
        elif job.status == JobStatus.SUCCEEDED:
            result = job.result or {}
            st.caption(f"{result.get('posts', 0)} posts · planner {result.get('planner', '?')}")


def plan_jobs() -> None:
    live_job_list(lambda page: jobs.list_jobs(kinds=["plan"], page=page, page_size=3), _plan_job,
                  page_key="calendar.planjobs.page", empty="No plans requested yet.")


# --- plans: the list and one plan's posts -----------------------------------------------------------------


def plan_rows(plans: list[Any], tz: ZoneInfo) -> list[dict[str, Any]]:
    counts = planning.plan_post_counts([plan.id for plan in plans])
    return [{"plan": plain(plan.name), "created": f"{local(plan.created_at, tz):%Y-%m-%d %H:%M}",
             "planner": plan.planner,
             "posts": counts[plan.id], "tokens": plan.prompt_tokens + plan.completion_tokens,
             "cost (USD)": f"${plan.cost_usd:,.4f}"} for plan in plans]


def plans_list(tz: ZoneInfo) -> None:
    page = planning.list_plans(page=st.session_state.get("calendar.plans.page", 1), page_size=10)
    st.markdown("**Plans**")
    if not page.items:
        st.info("No plans yet. Describe a theme above and press Generate plan (a worker on the default queue "
                "writes it).")
        return
    st.dataframe(plan_rows(page.items, tz), hide_index=True, width="stretch")
    if page.pages > 1:
        st.number_input(f"Page (of {page.pages})", 1, page.pages, key="calendar.plans.page")
    names = {stored_id(plan): plan.name for plan in page.items}
    if st.session_state.get("calendar.plans.open") not in names:
        st.session_state["calendar.plans.open"] = next(iter(names))
    plan_id = st.selectbox("Show the posts of", list(names), format_func=lambda i: plain(names[i]),
                           key="calendar.plans.open")
    plan_detail(int(plan_id), tz)


def schedule_drafts(plan_id: int) -> str:
    """Schedule every draft of the plan that passes its checks; the refused ones are listed with why."""
    tz = studio_zone()
    drafts = [p for p in planning.plan_posts(plan_id) if p.status == PostStatus.DRAFT]
    refused: list[str] = []
    for post in drafts:
        try:
            posts.schedule_post(post.id or 0)
        except StudioError as error:
            refused.append(f"#{post.id} {Platform(post.platform).label}, {when_text(post.scheduled_at, tz)}: {error}")
    message = f"Scheduled {len(drafts) - len(refused)} of {len(drafts)} drafts."
    if refused:
        raise Refused(f"{message} {len(refused)} refused:", refused[:20])
    return message


def plan_detail(plan_id: int, tz: ZoneInfo) -> None:
    planned = planning.plan_posts(plan_id)
    st.dataframe([{"time": f"{local(p.scheduled_at, tz):%a %d %b %H:%M}", "platform": Platform(p.platform).label,
                   "status": p.status, "caption": plain(p.caption[:80])} for p in planned],
                 hide_index=True, width="stretch")
    show_flash(PLANS_FLASH)
    st.button("Schedule all valid drafts of this plan", key="calendar.plans.schedule", icon=":material/schedule:",
              on_click=guard(lambda: run_action(PLANS_FLASH, lambda: schedule_drafts(plan_id))))
