"""The Calendar tab's board: the drag-and-drop calendar (streamlit-calendar, i.e. FullCalendar in an
iframe), its filters, and what its value means.

The component returns its *last* callback on every rerun, so :func:`handle_calendar_value` remembers
the value it acted on and ignores it when it comes back. Remounting the component (a new key, see
:func:`ui.calendar.state.remount`) starts it afresh, so clicking the same event again after closing
its editor works.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import streamlit as st
from streamlit_calendar import calendar

from core.characters import likeness
from core.errors import StudioError
from core.models import Platform, Post, PostStatus
from core.publishing import posts
from ui.account_health import calendar_summary
from ui.auth import guard
from ui.calendar.clock import parse_calendar_time, studio_zone, wall_clock, when_text
from ui.calendar.panel import side_panel
from ui.calendar.state import HANDLED, MOUNT_VIEW, PAGE_FLASH, PANEL, VIEW, calendar_key, remount
from ui.feedback import flash, show_flash
from ui.session import ReadOnlySessionState, SessionState

# "datesSet" is asked for, but streamlit-calendar 1.4.0 only reports the other four; every one of them
# carries the view, which is how the visible range is learned.
CALLBACKS = ["eventClick", "eventChange", "dateClick", "select", "datesSet"]
MARGIN = timedelta(weeks=6)  # events loaded beyond the reported view, so FullCalendar's prev/next show posts
PLATFORM_COLOURS = {"instagram": "#C13584", "facebook": "#1877F2", "youtube": "#D32F2F", "tiktok": "#111111"}
PLATFORM_SHORT = {"instagram": "IG", "facebook": "FB", "youtube": "YT", "tiktok": "TT"}
STATUS_MARKS = {"draft": "✎", "scheduled": "⏱", "publishing": "⇪", "published": "✓", "failed": "✗"}
CALENDAR_CSS = """
.fc-event.post-draft { opacity: .65; border-style: dashed !important; }
.fc-event.post-failed { border: 2px solid #ff5252 !important; }
.fc-event.post-published, .fc-event.post-publishing { filter: saturate(.45); }
.fc .fc-toolbar-title { font-size: 1.15em; white-space: nowrap; }
/* At 1280 px the calendar column is ~460 px: compact buttons keep the toolbar on one line. */
.fc .fc-toolbar { flex-wrap: wrap; gap: .4em; }
.fc .fc-toolbar-chunk { display: flex; align-items: center; gap: .25em; white-space: nowrap; }
.fc .fc-button { padding: .3em .5em; font-size: .85em; }
"""


@dataclass(frozen=True)
class Outcome:
    kind: Literal["none", "moved", "refused", "opened", "slot"]
    message: str = ""
    post_id: int | None = None


def _remember_view(view: Any, state: SessionState) -> None:
    if not isinstance(view, Mapping) or not view.get("activeStart"):
        return
    state[VIEW] = {"type": view.get("type", "dayGridMonth"), "date": str(view.get("currentStart", ""))[:10],
                   "start": view["activeStart"], "end": view.get("activeEnd") or view["activeStart"]}


def _on_event_change(payload: Mapping[str, Any], state: SessionState, tz: ZoneInfo) -> Outcome:
    event = payload.get("event") or {}
    try:
        post_id, when = int(event["id"]), parse_calendar_time(str(event["start"]), tz)
    except (KeyError, TypeError, ValueError):
        return Outcome("refused", "The calendar sent a move without a post id or a start time; nothing changed.")
    try:
        posts.move_post(post_id, when)
    except StudioError as error:
        remount(state)  # the component shows the drop; draw it again from the database
        return Outcome("refused", f"Not moved: {error}", post_id)
    return Outcome("moved", f"Post #{post_id} moved to {when_text(when, tz)}.", post_id)


def _on_event_click(payload: Mapping[str, Any], state: SessionState, tz: ZoneInfo) -> Outcome:
    try:
        post_id = int((payload.get("event") or {})["id"])
    except (KeyError, TypeError, ValueError):
        return Outcome("none")
    state[PANEL] = {"post": post_id}
    return Outcome("opened", post_id=post_id)


def _on_slot(payload: Mapping[str, Any], state: SessionState, tz: ZoneInfo) -> Outcome:
    text = payload.get("date") or payload.get("start")
    try:
        when = parse_calendar_time(str(text), tz)
    except ValueError:
        return Outcome("none")
    state[PANEL] = {"new": when.replace(tzinfo=None).isoformat(timespec="minutes"),
                    "all_day": bool(payload.get("allDay"))}
    return Outcome("slot")


def _on_dates(payload: Mapping[str, Any], state: SessionState, tz: ZoneInfo) -> Outcome:
    return Outcome("none")  # the view was remembered already


_HANDLERS: dict[str, Callable[[Mapping[str, Any], SessionState, ZoneInfo], Outcome]] = {
    "eventChange": _on_event_change, "eventClick": _on_event_click, "dateClick": _on_slot, "select": _on_slot,
    "datesSet": _on_dates,
}


def handle_calendar_value(value: Any, state: SessionState, *, tz: ZoneInfo | None = None) -> Outcome:
    """Act on what the component returned, once: a drop moves the post, a click opens a panel."""
    if not isinstance(value, Mapping) or value.get("callback") not in _HANDLERS:
        return Outcome("none")
    payload = value.get(value["callback"]) or {}
    _remember_view(payload.get("view"), state)
    if value == state.get(HANDLED):
        return Outcome("none")
    state[HANDLED] = value
    return _HANDLERS[value["callback"]](payload, state, tz or studio_zone())


# --- what the calendar shows ---------------------------------------------------------------------------


def event_window(state: ReadOnlySessionState, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The posts to load: the reported view (default: this month ± a week), with a margin either side."""
    view = state.get(VIEW) or {}
    if view.get("start"):
        start, end = parse_calendar_time(view["start"], tz), parse_calendar_time(view["end"], tz)
    else:
        day = date.fromisoformat(view["date"]) if view.get("date") else datetime.now(tz).date()
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        start = datetime.combine(first, time(), tz) - timedelta(days=7)
        end = datetime.combine(following, time(), tz) + timedelta(days=7)
    return start - MARGIN, end + MARGIN


def post_event(post: Post, tz: ZoneInfo, hold: dict[str, Any] | None = None) -> dict[str, Any]:
    caption = " ".join(post.caption.split())
    title = f"{STATUS_MARKS.get(post.status, '')} {PLATFORM_SHORT[post.platform]} · {caption[:40] or '(no caption)'}"
    if hold is not None:  # a draft a pipeline held: its image looks like another person
        title = f"⏸ held for review ({hold['faceDistance']:.2f}) · {title}"
    return {
        "id": str(post.id), "title": title, "start": wall_clock(post.scheduled_at, tz),
        "backgroundColor": PLATFORM_COLOURS[post.platform], "borderColor": PLATFORM_COLOURS[post.platform],
        "textColor": "#ffffff", "classNames": [f"post-{post.status}"],
        "editable": post.status not in posts.LOCKED,  # published posts stay where they are
        "extendedProps": {"status": post.status, "platform": post.platform, "held": hold is not None},
    }


def calendar_events(shown: list[Post], tz: ZoneInfo) -> list[dict[str, Any]]:
    holds = likeness.held_posts(shown)
    return [post_event(post, tz, holds.get(post.id or 0)) for post in shown]


def calendar_options(state: ReadOnlySessionState, tz: ZoneInfo) -> dict[str, Any]:
    """Fixed for the life of one mount: FullCalendar reads initialView/initialDate only when it starts."""
    view = state.get(MOUNT_VIEW) or {}
    options: dict[str, Any] = {
        "timeZone": tz.key, "initialView": view.get("type") or "dayGridMonth", "editable": True,
        "eventDurationEditable": False,  # a post is a moment: only its start moves
        "selectable": True, "eventDisplay": "block", "dayMaxEvents": 4, "allDaySlot": False, "firstDay": 1,
        "nowIndicator": True, "height": 680,
        "headerToolbar": {"left": "prev,next today", "center": "title",
                          "right": "dayGridMonth,timeGridWeek,listMonth"},
        "eventTimeFormat": {"hour": "2-digit", "minute": "2-digit", "hour12": False},
        "slotLabelFormat": {"hour": "2-digit", "minute": "2-digit", "hour12": False},
        "views": {"dayGridMonth": {"displayEventTime": False}},  # month cells are narrow: the caption matters more
    }
    if view.get("date") and not _shows_today(view, tz):
        options["initialDate"] = view["date"]  # else FullCalendar opens on today, inside the same view
    return options


def _shows_today(view: Mapping[str, Any], tz: ZoneInfo) -> bool:
    if not view.get("start"):
        return False
    now = datetime.now(tz)
    return parse_calendar_time(view["start"], tz) <= now < parse_calendar_time(view["end"], tz)


def _go_to() -> None:
    day = st.session_state.get("calendar.goto")
    if day is not None:
        st.session_state[VIEW] = {"type": (st.session_state.get(VIEW) or {}).get("type", "dayGridMonth"),
                                  "date": day.isoformat()}
        remount(st.session_state)


def filter_bar() -> tuple[list[str], list[str]]:
    left, middle, right = st.columns([3, 3, 2])
    platforms = left.multiselect("Platforms", [p.value for p in Platform], format_func=lambda p: Platform(p).label,
                                 key="calendar.f.platforms", placeholder="all platforms")
    statuses = middle.multiselect("Statuses", [s.value for s in PostStatus], key="calendar.f.statuses",
                                  placeholder="all statuses")
    right.date_input("Go to", value=None, key="calendar.goto", on_change=guard(_go_to))
    return platforms, statuses


def status_summary() -> None:
    counts = posts.count_by_status()
    if counts:
        st.caption(" · ".join(f"{counts[s]} {s}" for s in PostStatus if counts.get(s)))


# --- the tab ----------------------------------------------------------------------------------------------


def calendar_tab(tz: ZoneInfo) -> None:
    """Filters, the calendar, and the side panel beside it; a drop on the calendar moves its post."""
    show_flash(PAGE_FLASH)
    platforms, statuses = filter_bar()
    start, end = event_window(st.session_state, tz)
    shown = posts.posts_between(start, end, platforms=platforms, statuses=statuses)
    status_summary()
    calendar_summary(tz)
    left, right = st.columns([3, 2], gap="large")
    with left:
        value = calendar(events=calendar_events(shown, tz), options=calendar_options(st.session_state, tz),
                         custom_css=CALENDAR_CSS, callbacks=CALLBACKS, key=calendar_key(st.session_state))
    outcome = handle_calendar_value(value, st.session_state, tz=tz)
    if outcome.kind in ("moved", "refused"):
        # This run drew the calendar before the move: draw it again from the database.
        flash(PAGE_FLASH, "success" if outcome.kind == "moved" else "error", outcome.message)
        st.rerun()
    with right:
        side_panel(shown, tz)
