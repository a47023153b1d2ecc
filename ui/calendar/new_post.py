"""A new post for a clicked slot: a draft with a caption, or content produced for it (images with the
character's LoRA, and a video for video platforms) attached to a new draft."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import streamlit as st

from core.characters import characters
from core.models import Platform
from core.publishing import planning, posts, production
from core.publishing.checks import VIDEO_PLATFORMS, normalize_hashtags
from ui.auth import guard
from ui.calendar.clock import studio_zone, when_text
from ui.calendar.state import EDITOR_FLASH, close_panel, open_post
from ui.feedback import run_action, show_flash


def _new_when(when: datetime, tz: ZoneInfo) -> datetime:
    clock = st.session_state.get("calendar.new.time") or when.time()
    return datetime.combine(when.date(), clock, tz)


def _create_draft(when: datetime) -> str:
    state, tz = st.session_state, studio_zone()
    post = posts.create_post(platform=state["calendar.new.platform"], scheduled_at=_new_when(when, tz),
                             caption=state.get("calendar.new.caption", ""),
                             character_id=characters.current_character().id)
    open_post(post.id or 0)
    return f"Draft created for {when_text(post.scheduled_at, tz)}."


def _produce(when: datetime) -> str:
    state, tz = st.session_state, studio_zone()
    platform = state["calendar.new.platform"]
    post = production.produce_for_slot(
        platform=platform, scheduled_at=_new_when(when, tz), caption=state.get("calendar.new.caption", ""),
        image_prompt=state.get("calendar.new.prompt", ""), title=state.get("calendar.new.title", ""),
        hashtags=normalize_hashtags(state.get("calendar.new.hashtags", "")),
        count=int(state.get("calendar.new.count", 1)), make_video=bool(state.get(f"calendar.new.video.{platform}")),
    )
    open_post(post.id or 0)
    return f"Producing the media for this post: generate job {(post.generate_job_id or '')[:8]}."


def new_post_panel(when: datetime, all_day: bool, tz: ZoneInfo) -> None:
    top = st.columns([4, 1], vertical_alignment="center")
    top[0].subheader(f"New post on {when:%a %d %b %Y}")
    top[1].button("Close", key="calendar.close", on_click=guard(close_panel))
    show_flash(EDITOR_FLASH)
    platform = st.selectbox("Platform", [p.value for p in Platform], format_func=lambda p: Platform(p).label,
                            key="calendar.new.platform")
    if all_day:  # a day was clicked, not a time: start at the platform's usual best hour
        when = when.replace(hour=planning.BEST_HOURS[Platform(platform)], minute=0)
    slot = (when.date().isoformat(), all_day, platform if all_day else "")  # the best hour follows the platform
    if st.session_state.get("calendar.new.slot") != slot or "calendar.new.time" not in st.session_state:
        st.session_state["calendar.new.slot"] = slot
        st.session_state["calendar.new.time"] = when.time()
    st.time_input(f"Time ({tz.key})", key="calendar.new.time", step=300)
    st.text_area("Caption", key="calendar.new.caption", height=100, max_chars=70_000)
    st.button("Create draft", key="calendar.new.create", icon=":material/edit_calendar:",
              on_click=guard(lambda: run_action(EDITOR_FLASH, lambda: _create_draft(when))))
    with st.container(border=True):
        st.markdown("**Produce content for this slot**")
        st.caption("Generates images with the character's LoRA (and a video for video platforms), then attaches "
                   "them to a new draft post.")
        character = characters.current_character()
        st.text_area("Image prompt", key="calendar.new.prompt", height=80, max_chars=2000,
                     placeholder=f"Leave empty for: {production.default_image_prompt(character.id or 0)}")
        if platform == Platform.YOUTUBE:
            st.text_input("Title", key="calendar.new.title", max_chars=100)
        st.text_input("Hashtags", key="calendar.new.hashtags", placeholder="#fitness #morningrun")
        left, right = st.columns(2, vertical_alignment="bottom")
        left.number_input("Images", 1, 8, 1, key="calendar.new.count")
        right.toggle("Make a video", value=platform in VIDEO_PLATFORMS, key=f"calendar.new.video.{platform}")
        st.button("Produce content", key="calendar.new.produce", type="primary", icon=":material/auto_awesome:",
                  on_click=guard(lambda: run_action(EDITOR_FLASH, lambda: _produce(when))))
