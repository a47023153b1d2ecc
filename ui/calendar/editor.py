"""The Calendar page's parts: the drag-and-drop calendar (streamlit-calendar, i.e. FullCalendar in an
iframe), the side panel (a post's editor with its per-platform preview, or a new post for a clicked
slot) and the Plans tab (persona, plan request, plans and their posts). Keys start with "calendar.".

Two facts about the component shape this module:

* It returns its *last* callback on every rerun, so :func:`handle_calendar_value` remembers the
  value it acted on and ignores it when it comes back. Remounting the component (a new key, see
  :func:`remount`) starts it afresh, so clicking the same event again after closing its editor works.
* It bundles no time-zone plugin, so with a named ``timeZone`` FullCalendar works in "UTC coercion":
  the times we send and the times it sends back are wall-clock times of the studio's zone, naive or
  with a "Z" that means nothing. :func:`parse_calendar_time` reads them that way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import streamlit as st
from pydantic import ValidationError

from core.characters import characters
from core.characters.persona import Persona
from core.config import get_settings
from core.errors import StudioError, describe_validation_error
from core.jobs import lifecycle as jobs
from core.jobs.lifecycle import aware
from core.library import assets
from core.models import Asset, Job, JobStatus, Platform, Post, PostStatus
from core.publishing import planning, posts, production, social_accounts
from core.publishing.checks import RULES, VIDEO_PLATFORMS, normalize_hashtags
from ui.assets import escape_markdown
from ui.loaded_form import LoadedForm
from ui.widgets import live_job_list, status_badge

PANEL = "calendar.panel"  # {"post": id} or {"new": local ISO time, "all_day": bool}; absent: the agenda
HANDLED = "calendar.handled"  # the component value last acted on
VIEW = "calendar.view"  # the last view the component reported: type, date, start, end
MOUNT = "calendar.mount"  # bumped to remount the component (a fresh key)
MOUNT_VIEW = "calendar.mount_view"  # the view the current mount opened on (its options stay fixed)
_FLASH = "calendar.flash."
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
.fc .fc-toolbar-title { font-size: 1.25em; }
"""
MEDIA_PAGE_SIZE = 8
DEFAULT_ACCOUNT = 0  # the account choice "the platform's default" (a selectbox shows None as no choice at all)


# --- time --------------------------------------------------------------------------------------------


def studio_zone() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


def local(moment: datetime, tz: ZoneInfo) -> datetime:
    return (aware(moment) or moment).astimezone(tz)


def wall_clock(moment: datetime, tz: ZoneInfo) -> str:
    """A stored time as the calendar gets it: the studio zone's wall clock, without an offset."""
    return local(moment, tz).replace(tzinfo=None).isoformat(timespec="minutes")


def parse_calendar_time(text: str, tz: ZoneInfo) -> datetime:
    """A time the component sent: naive or "Z" is the studio zone's wall clock; another offset is honoured."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None or moment.utcoffset() == timedelta(0):
        return moment.replace(tzinfo=tz)
    return moment


def when_text(moment: datetime, tz: ZoneInfo) -> str:
    return f"{local(moment, tz):%a %d %b %Y, %H:%M}"


# --- messages ------------------------------------------------------------------------------------------


def flash(where: str, kind: str, text: str, details: Sequence[str] = ()) -> None:
    """A message shown once, on the next run, at ``where`` ("page", "editor", "plans")."""
    st.session_state[_FLASH + where] = (kind, text, list(details))


def show_flash(where: str) -> None:
    if (flashed := st.session_state.pop(_FLASH + where, None)) is None:
        return
    kind, text, details = flashed
    body = "\n".join([escape_markdown(text), *(f"- {escape_markdown(d)}" for d in details)])
    {"success": st.success, "info": st.info}.get(kind, st.error)(body)


class Refused(StudioError):
    """An action refused with a list of reasons (shown as a list)."""

    def __init__(self, message: str, reasons: Sequence[str]) -> None:
        super().__init__(message)
        self.reasons = list(reasons)


def _run(where: str, action: Callable[[], str]) -> None:
    """A button callback: run the action and remember its message, or the reasons it was refused."""
    try:
        flash(where, "success", action())
    except Refused as error:
        flash(where, "error", str(error), error.reasons)
    except StudioError as error:
        flash(where, "error", str(error))


# --- the component's value -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    kind: Literal["none", "moved", "refused", "opened", "slot"]
    message: str = ""
    post_id: int | None = None


def calendar_key(state: Mapping[str, Any]) -> str:
    return f"calendar.cal.{state.get(MOUNT, 0)}"


def remount(state: MutableMapping[str, Any]) -> None:
    """Draw the component afresh (from the database), opening on the last view it reported."""
    state[MOUNT] = state.get(MOUNT, 0) + 1
    state[HANDLED] = None
    state[MOUNT_VIEW] = dict(state.get(VIEW) or {})


def _remember_view(view: Any, state: MutableMapping[str, Any]) -> None:
    if not isinstance(view, Mapping) or not view.get("activeStart"):
        return
    state[VIEW] = {"type": view.get("type", "dayGridMonth"), "date": str(view.get("currentStart", ""))[:10],
                   "start": view["activeStart"], "end": view.get("activeEnd") or view["activeStart"]}


def _on_event_change(payload: Mapping[str, Any], state: MutableMapping[str, Any], tz: ZoneInfo) -> Outcome:
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


def _on_event_click(payload: Mapping[str, Any], state: MutableMapping[str, Any], tz: ZoneInfo) -> Outcome:
    try:
        post_id = int((payload.get("event") or {})["id"])
    except (KeyError, TypeError, ValueError):
        return Outcome("none")
    state[PANEL] = {"post": post_id}
    return Outcome("opened", post_id=post_id)


def _on_slot(payload: Mapping[str, Any], state: MutableMapping[str, Any], tz: ZoneInfo) -> Outcome:
    text = payload.get("date") or payload.get("start")
    try:
        when = parse_calendar_time(str(text), tz)
    except ValueError:
        return Outcome("none")
    state[PANEL] = {"new": when.replace(tzinfo=None).isoformat(timespec="minutes"),
                    "all_day": bool(payload.get("allDay"))}
    return Outcome("slot")


def _on_dates(payload: Mapping[str, Any], state: MutableMapping[str, Any], tz: ZoneInfo) -> Outcome:
    return Outcome("none")  # the view was remembered already


_HANDLERS: dict[str, Callable[[Mapping[str, Any], MutableMapping[str, Any], ZoneInfo], Outcome]] = {
    "eventChange": _on_event_change, "eventClick": _on_event_click, "dateClick": _on_slot, "select": _on_slot,
    "datesSet": _on_dates,
}


def handle_calendar_value(value: Any, state: MutableMapping[str, Any], *, tz: ZoneInfo | None = None) -> Outcome:
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


def event_window(state: Mapping[str, Any], tz: ZoneInfo) -> tuple[datetime, datetime]:
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


def post_event(post: Post, tz: ZoneInfo) -> dict[str, Any]:
    caption = " ".join(post.caption.split())
    title = f"{STATUS_MARKS.get(post.status, '')} {PLATFORM_SHORT[post.platform]} · {caption[:40] or '(no caption)'}"
    return {
        "id": str(post.id), "title": title, "start": wall_clock(post.scheduled_at, tz),
        "backgroundColor": PLATFORM_COLOURS[post.platform], "borderColor": PLATFORM_COLOURS[post.platform],
        "textColor": "#ffffff", "classNames": [f"post-{post.status}"],
        "editable": post.status not in posts.LOCKED,  # published posts stay where they are
        "extendedProps": {"status": post.status, "platform": post.platform},
    }


def calendar_events(shown: list[Post], tz: ZoneInfo) -> list[dict[str, Any]]:
    return [post_event(post, tz) for post in shown]


def calendar_options(state: Mapping[str, Any], tz: ZoneInfo) -> dict[str, Any]:
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
    right.date_input("Go to", value=None, key="calendar.goto", on_change=_go_to)
    return platforms, statuses


def status_summary() -> None:
    counts = posts.count_by_status()
    if counts:
        st.caption(" · ".join(f"{counts[s]} {s}" for s in PostStatus if counts.get(s)))


# --- the side panel ------------------------------------------------------------------------------------


def _open_post(post_id: int) -> None:
    st.session_state[PANEL] = {"post": post_id}


def _open_new(when: datetime, all_day: bool) -> None:
    st.session_state[PANEL] = {"new": when.replace(tzinfo=None).isoformat(timespec="minutes"), "all_day": all_day}


def _close_panel() -> None:
    st.session_state.pop(PANEL, None)
    remount(st.session_state)  # so a click on the same event opens it again


def side_panel(shown: list[Post], tz: ZoneInfo) -> None:
    panel = st.session_state.get(PANEL) or {}
    if "post" in panel:
        post_editor(int(panel["post"]), tz)
    elif "new" in panel:
        new_post_panel(datetime.fromisoformat(panel["new"]).replace(tzinfo=tz), bool(panel.get("all_day")), tz)
    else:
        agenda(shown, tz)


def agenda(shown: list[Post], tz: ZoneInfo) -> None:
    st.caption("Click a post to edit it, click or select a day to add one, drag a post to move it.")
    now = datetime.now(tz)
    st.button("New post", icon=":material/add:", key="calendar.new_post", on_click=_open_new,
              args=((now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0), False))
    upcoming = [p for p in shown if local(p.scheduled_at, tz) >= now][:8]
    if not upcoming:
        st.info("No posts coming up in this range. Plan some on the Plans tab, or click a day.")
    for post in upcoming:
        with st.container(border=True):
            left, right = st.columns([4, 1], vertical_alignment="center")
            left.caption(f"{when_text(post.scheduled_at, tz)} · {Platform(post.platform).label} · {post.status}")
            left.text(post.caption[:80] or "(no caption)")
            right.button("Open", key=f"calendar.open.{post.id}", on_click=_open_post, args=(post.id,))


# --- the editor: its form state ------------------------------------------------------------------------


def _ek(post_id: int, name: str) -> str:
    return f"calendar.edit.{post_id}.{name}"


def _form(post_id: int) -> LoadedForm:
    """The editor's fields; a drag or a finished production loads new values into them (ui.loaded_form)."""
    return LoadedForm(f"calendar.edit.{post_id}")


def editor_key(post_id: int, name: str, state: Mapping[str, Any] | None = None) -> str:
    """The widget key of an editor field now (it moves when the field is loaded)."""
    return _form(post_id).key(name, state)


def _post_fields(post: Post, tz: ZoneInfo) -> dict[str, Any]:
    when = local(post.scheduled_at, tz)
    return {"platform": post.platform, "account": post.account_id or DEFAULT_ACCOUNT, "title": post.title,
            "caption": post.caption, "hashtags": " ".join(f"#{t}" for t in post.hashtags), "date": when.date(),
            "time": when.time().replace(second=0, microsecond=0), "media": list(post.asset_ids),
            "ai": post.ai_generated, "privacy": post.options.get("privacy", "public"),
            "kids": bool(post.options.get("made_for_kids", False))}


def _sync_form(post: Post, tz: ZoneInfo) -> None:
    """Load the post into the widgets; afterwards only fields that changed in the database (a drag, a
    finished production) are reloaded, so unsaved edits of the others survive a rerun."""
    fields = _post_fields(post, tz)
    seen_key = _ek(post.id or 0, "seen")
    seen = st.session_state.get(seen_key)
    changed = {name: value for name, value in fields.items() if seen is None or seen.get(name) != value}
    if changed:
        _form(post.id or 0).load(changed)
    st.session_state[seen_key] = fields


def _edited_fields(post: Post, tz: ZoneInfo) -> dict[str, Any]:
    """The post as it is now, with the user's edits over it. A field counts as edited when the form holds
    something other than what the editor last loaded; any other field takes the post's current value.
    So Save never writes back a value the form merely had: a drag or a finished production that the
    form has not shown yet (its rerun was cut short by the click) is kept."""
    now = _post_fields(post, tz)
    seen = st.session_state.get(_ek(post.id or 0, "seen")) or now
    form = _form(post.id or 0)
    return {name: value if (edit := form.value(name, value)) == seen.get(name) else edit for name, value in now.items()}


def form_values(post: Post, tz: ZoneInfo | None = None) -> dict[str, Any]:
    """The editor's values as ``update_post`` takes them (the user's edits over the post as it is now)."""
    tz = tz or studio_zone()
    fields = _edited_fields(post, tz)
    options = dict(post.options)
    if fields["platform"] == Platform.YOUTUBE:
        options.update(privacy=fields["privacy"], made_for_kids=bool(fields["kids"]))
    day, clock = fields["date"], fields["time"]
    when = datetime.combine(day, clock, tz) if day and clock else post.scheduled_at
    return {"platform": fields["platform"], "scheduled_at": when, "caption": fields["caption"],
            "hashtags": fields["hashtags"], "title": fields["title"], "account_id": fields["account"] or None,
            "asset_ids": list(fields["media"]), "ai_generated": bool(fields["ai"]), "options": options}


# --- the editor: actions ------------------------------------------------------------------------------


def _save(post_id: int) -> Post:
    return posts.update_post(post_id, **form_values(posts.get_post(post_id)))


def _schedule(post_id: int) -> str:
    _save(post_id)
    preview = posts.post_preview(posts.get_post(post_id))
    if not preview.ok:
        raise Refused("Not scheduled. Fix these first:", preview.errors)
    post = posts.schedule_post(post_id)
    return f"Scheduled for {when_text(post.scheduled_at, studio_zone())}."


def _publish_now(post_id: int) -> str:
    _save(post_id)
    job = posts.publish_now(post_id)
    mode = " in dry-run mode (nothing is sent)" if get_settings().publish_dry_run else ""
    return f"Publishing now{mode}: job {job.id[:8]}."


def _dry_run(post_id: int) -> str:
    _save(post_id)
    job = posts.dry_run_post(post_id)
    return f"Dry run started (job {job.id[:8]}): it checks the post and records the calls it would make."


def _retry(post_id: int) -> str:
    _save(post_id)
    post = posts.retry_post(post_id)
    return f"Back on the schedule for {when_text(post.scheduled_at, studio_zone())}."


def _delete(post_id: int) -> str:
    posts.delete_post(post_id)
    _close_panel()
    return f"Post #{post_id} deleted."


def _save_action(post_id: int) -> str:
    _save(post_id)
    return "Saved."


def _unschedule(post_id: int) -> str:
    posts.unschedule_post(post_id)
    return "Back to draft: it will not be published until it is scheduled again."


ACTIONS: dict[str, tuple[str, Callable[[int], str]]] = {
    "save": ("Save", _save_action),
    "schedule": ("Schedule", _schedule),
    "unschedule": ("Unschedule", _unschedule),
    "publish": ("Publish now", _publish_now),
    "dry_run": ("Dry run", _dry_run),
    "retry": ("Retry", _retry),
}
ACTIONS_BY_STATUS = {
    PostStatus.DRAFT: ("save", "schedule", "publish", "dry_run"),
    PostStatus.SCHEDULED: ("save", "unschedule", "publish", "dry_run"),
    PostStatus.FAILED: ("save", "retry", "unschedule", "dry_run"),
}


def _act(post_id: int, name: str) -> None:
    _run("editor", lambda: ACTIONS[name][1](post_id))


def _delete_action(post_id: int) -> None:
    _run("page", lambda: _delete(post_id))


# --- the editor: drawing -------------------------------------------------------------------------------


def post_editor(post_id: int, tz: ZoneInfo) -> None:
    try:
        post = posts.get_post(post_id)
    except StudioError:
        st.info(f"Post #{post_id} no longer exists.")
        st.button("Close", key="calendar.close", on_click=_close_panel)
        return
    top = st.columns([4, 1], vertical_alignment="center")
    top[0].subheader(f"{Platform(post.platform).label} post #{post.id}")
    top[1].button("Close", key="calendar.close", on_click=_close_panel)
    _post_status(post_id, post.status, post.production_status)
    show_flash("editor")
    locked = post.status in posts.LOCKED
    _sync_form(post, tz)
    _fields(post, tz, locked)
    _media_picker(post, locked)
    _preview(post, tz)
    _actions(post)


def _post_status(post_id: int, status: str, production_status: str | None) -> None:
    """The status lines, refreshed live while the post is producing or publishing; a change redraws the page."""
    active = status == PostStatus.PUBLISHING or production_status == production.PRODUCING

    def body() -> None:
        post = posts.get_post(post_id)
        if (post.status, post.production_status) != (status, production_status):
            st.rerun()
        status_badge(post.status)
        if post.production_status:
            job_ids = [f"{what} job {job_id[:8]}" for what, job_id in
                       (("generate", post.generate_job_id), ("video", post.video_job_id)) if job_id]
            st.caption(" · ".join([f"Production: {post.production_status}", *job_ids]))
        if post.publish_job_id:
            st.caption(f"Publish job {post.publish_job_id[:8]}")
        if post.error:
            st.error(escape_markdown(post.error))
        if post.status == PostStatus.PUBLISHED:
            _published(post)

    st.fragment(run_every=2 if active else None)(body)()


def _published(post: Post) -> None:
    if post.dry_run:
        st.info("Published in dry-run mode: checked and recorded, nothing was sent.")
    if post.permalink and post.permalink.startswith(("https://", "http://")):
        st.link_button("Open the published post", post.permalink, icon=":material/open_in_new:")
    if post.published_at:
        st.caption(f"Published {when_text(post.published_at, studio_zone())}")


def _fields(post: Post, tz: ZoneInfo, locked: bool) -> None:
    form = _form(post.id or 0)
    platforms = [p.value for p in Platform]
    platform = st.selectbox("Platform", platforms, index=platforms.index(form.value("platform")),
                            format_func=lambda p: Platform(p).label, key=form.key("platform"), disabled=locked)
    accounts = {a.id: a for a in social_accounts.list_accounts(platform)}
    if form.value("account") not in (DEFAULT_ACCOUNT, *accounts):
        form.load({"account": DEFAULT_ACCOUNT})  # an account of the previous platform
    choices = [DEFAULT_ACCOUNT, *accounts]
    st.selectbox("Account", choices, index=choices.index(form.value("account")), key=form.key("account"),
                 disabled=locked, format_func=lambda i: "default (the platform's connected account)"
                 if i == DEFAULT_ACCOUNT else f"{accounts[i].label} ({accounts[i].status})")
    if platform == Platform.YOUTUBE:
        st.text_input("Title", value=form.value("title", ""), key=form.key("title"), max_chars=100, disabled=locked)
    st.text_area("Caption", value=form.value("caption", ""), key=form.key("caption"), height=140, max_chars=70_000,
                 disabled=locked)
    st.text_input("Hashtags", value=form.value("hashtags", ""), key=form.key("hashtags"),
                  placeholder="#fitness #morningrun", disabled=locked)
    left, right = st.columns(2)
    left.date_input("Date", value=form.value("date"), key=form.key("date"), disabled=locked)
    right.time_input(f"Time ({tz.key})", value=form.value("time"), key=form.key("time"), step=300, disabled=locked)
    st.toggle("AI-generated (disclosed as such on the platform)", value=bool(form.value("ai", True)),
              key=form.key("ai"), disabled=locked)
    if platform == Platform.YOUTUBE:
        left, right = st.columns(2)
        privacy = list(posts.PRIVACY_CHOICES)
        left.selectbox("Privacy", privacy, index=privacy.index(form.value("privacy", "public")),
                       key=form.key("privacy"), disabled=locked)
        right.checkbox("Made for kids", value=bool(form.value("kids", False)), key=form.key("kids"),
                       disabled=locked)


@st.cache_data(max_entries=512, show_spinner=False)
def _thumbnail(key: str, asset_id: int) -> bytes:
    return assets.read_thumbnail(assets.get_asset(asset_id))


def _media_tile(asset: Asset) -> None:
    if asset.thumbnail_key or asset.kind == "image":
        try:
            st.image(_thumbnail(asset.thumbnail_key or asset.key, asset.id or 0), width="stretch")
            return
        except StudioError:
            pass
    st.markdown(":material/movie:" if asset.kind == "video" else ":material/broken_image:")


def _set_media(post_id: int, asset_ids: list[int]) -> None:
    _form(post_id).load({"media": asset_ids})


def _media_picker(post: Post, locked: bool) -> None:
    pid = post.id or 0
    chosen = list(_form(pid).value("media", []))
    st.caption("Media")
    for asset_id in chosen:
        left, right = st.columns([1, 3], vertical_alignment="center")
        try:
            asset = assets.get_asset(asset_id)
        except StudioError:
            right.warning(f"Asset #{asset_id} no longer exists.")
            continue
        with left:
            _media_tile(asset)
        right.caption(f"{asset.kind} #{asset.id} · {asset.width or '?'}×{asset.height or '?'}")
        right.button("Remove", key=_ek(pid, f"remove.{asset_id}"), disabled=locked, on_click=_set_media,
                     args=(pid, [i for i in chosen if i != asset_id]))
    if locked:
        return
    with st.expander("Choose media from the library", expanded=not chosen):
        _media_choices(pid, _form(pid).value("platform", post.platform))


def _media_choices(pid: int, platform: str) -> None:
    kinds = list(RULES[platform].media)
    kind = st.radio("Kind", kinds, horizontal=True, key="calendar.media.kind") if len(kinds) > 1 else kinds[0]
    library = assets.make_filter(kind=kind or kinds[0])
    page = assets.list_assets(library, page=clamp_page("calendar.media.page", library), page_size=MEDIA_PAGE_SIZE)
    if not page.items:
        st.info(f"No {kind} in the library yet: make some on the Generate or Videos page.")
        return
    for start in range(0, len(page.items), 4):
        for column, asset in zip(st.columns(4), page.items[start:start + 4], strict=False):
            with column:
                _media_tile(asset)
                st.button(f"Use #{asset.id}", key=_ek(pid, f"use.{asset.id}"), on_click=_set_media,
                          args=(pid, [asset.id]))
    if page.pages > 1:
        st.number_input(f"Page (of {page.pages})", 1, page.pages, key="calendar.media.page")


def clamp_page(key: str, library: assets.AssetFilter) -> int:
    """The stored page number, brought back in range when the library shrank."""
    pages = max(1, -(-assets.list_assets(library, page_size=1).total // MEDIA_PAGE_SIZE))
    if st.session_state.get(key, 1) > pages:
        st.session_state[key] = pages
    return int(st.session_state.get(key, 1))


def _preview(post: Post, tz: ZoneInfo) -> None:
    """The post as it will appear with the values in the form, and what would stop it from publishing."""
    values = form_values(post, tz)
    draft = Post(id=post.id, status=post.status, image_prompt=post.image_prompt,
                 **{**values, "hashtags": normalize_hashtags(values["hashtags"])})
    try:
        preview = posts.post_preview(draft)
    except StudioError as error:
        st.error(escape_markdown(str(error)))
        return
    with st.container(border=True):
        st.markdown(f"**Preview · {Platform(preview.platform).label}**")
        if preview.title:
            st.text(f"Title: {preview.title}")
        st.text(preview.shown or "(empty)")
        notes = [f"{len(preview.text):,} characters", f"{preview.hashtag_count} hashtags"]
        if preview.truncated:
            notes.append(f"truncated: followers see the first {RULES[preview.platform].preview_chars} "
                         "characters, then “… more”")
        st.caption(" · ".join(notes))
        for media in preview.media:
            size = f"{media.width}×{media.height}" if media.width and media.height else "size unknown"
            length = f" · {media.duration:.1f} s" if media.duration else ""
            st.caption(f"{media.kind} #{media.asset_id} · {size} · aspect {media.aspect or '?'}{length}")
        if preview.errors:
            st.error("\n".join(["Cannot be scheduled yet:", *(f"- {escape_markdown(e)}" for e in preview.errors)]))
        for warning in preview.warnings:
            st.warning(escape_markdown(warning))
        if preview.ok:
            st.success("Ready to schedule.")


def _actions(post: Post) -> None:
    pid = post.id or 0
    names = ACTIONS_BY_STATUS.get(PostStatus(post.status), ())
    for column, name in zip(st.columns(max(len(names), 1)), names, strict=False):
        column.button(ACTIONS[name][0], key=_ek(pid, name), on_click=_act, args=(pid, name), width="stretch",
                      type="primary" if name in ("schedule", "retry") else "secondary")
    if post.status == PostStatus.PUBLISHING:
        st.caption("Being published: it can be changed when the publish job finishes.")
        return
    left, right = st.columns([3, 2], vertical_alignment="center")
    sure = left.checkbox("Yes, delete this post" + (" (from the calendar only)" if post.status == "published" else ""),
                         key=_ek(pid, "confirm_delete"))
    right.button("Delete", key=_ek(pid, "delete"), disabled=not sure, on_click=_delete_action, args=(pid,),
                 icon=":material/delete:")


# --- a new post for a slot ------------------------------------------------------------------------------


def _new_when(when: datetime, tz: ZoneInfo) -> datetime:
    clock = st.session_state.get("calendar.new.time") or when.time()
    return datetime.combine(when.date(), clock, tz)


def _create_draft(when: datetime) -> str:
    state, tz = st.session_state, studio_zone()
    post = posts.create_post(platform=state["calendar.new.platform"], scheduled_at=_new_when(when, tz),
                             caption=state.get("calendar.new.caption", ""),
                             character_id=characters.current_character().id)
    _open_post(post.id or 0)
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
    _open_post(post.id or 0)
    return f"Producing the media for this post: generate job {(post.generate_job_id or '')[:8]}."


def new_post_panel(when: datetime, all_day: bool, tz: ZoneInfo) -> None:
    top = st.columns([4, 1], vertical_alignment="center")
    top[0].subheader(f"New post on {when:%a %d %b %Y}")
    top[1].button("Close", key="calendar.close", on_click=_close_panel)
    show_flash("editor")
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
              on_click=lambda: _run("editor", lambda: _create_draft(when)))
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
                  on_click=lambda: _run("editor", lambda: _produce(when)))


# --- plans: persona -------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def persona_form() -> None:
    character = characters.current_character()
    persona = characters.persona_of(character)
    seeds = {"name": persona.name, "niche": persona.niche, "tone": persona.tone, "audience": persona.audience,
             "do": "\n".join(persona.do), "dont": "\n".join(persona.dont)}
    for name, value in seeds.items():
        st.session_state.setdefault(f"calendar.persona.{name}", value)
    with st.expander(f"Persona: {escape_markdown(persona.name)}", icon=":material/person:"):
        with st.form("calendar.persona"):
            left, right = st.columns(2)
            left.text_input("Name", key="calendar.persona.name", max_chars=120)
            right.text_input("Niche", key="calendar.persona.niche", max_chars=200)
            left.text_input("Tone", key="calendar.persona.tone", max_chars=200)
            right.text_input("Audience", key="calendar.persona.audience", max_chars=200)
            left.text_area("Always (one per line)", key="calendar.persona.do")
            right.text_area("Never (one per line)", key="calendar.persona.dont")
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
        st.error(escape_markdown(describe_validation_error(error)))
    except StudioError as error:
        st.error(escape_markdown(str(error)))
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
        right.radio("Planner", list(PLANNERS), format_func=PLANNERS.get, key="calendar.plan.planner")
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
        st.error(escape_markdown(str(error)))
        return
    state["calendar.planjobs.page"] = 1
    st.success(f"Planning: job {job.id[:8]}. The plan appears below when it finishes.")


def _plan_job(job: Job) -> None:
    with st.container(border=True):
        left, right = st.columns([1, 4], vertical_alignment="center")
        with left:
            status_badge(job.status)
        right.text(f"{job.payload.get('theme', '')[:80]} · job {job.id[:8]}")
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            st.progress(job.progress, text=job.stage or "waiting for a worker (default queue)…")
        elif job.status == JobStatus.FAILED:
            st.error(escape_markdown(job.error or "failed"))
        elif job.status == JobStatus.SUCCEEDED:
            result = job.result or {}
            st.caption(f"{result.get('posts', 0)} posts · planner {result.get('planner', '?')}")


def plan_jobs() -> None:
    live_job_list(lambda page: jobs.list_jobs(kinds=["plan"], page=page, page_size=3), _plan_job,
                  page_key="calendar.planjobs.page", empty="No plans requested yet.")


# --- plans: the list and one plan's posts -----------------------------------------------------------------


def plan_rows(plans: list[Any], tz: ZoneInfo) -> list[dict[str, Any]]:
    counts = planning.plan_post_counts([plan.id for plan in plans])
    return [{"plan": plan.name, "created": f"{local(plan.created_at, tz):%Y-%m-%d %H:%M}", "planner": plan.planner,
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
    names = {plan.id: plan.name for plan in page.items}
    if st.session_state.get("calendar.plans.open") not in names:
        st.session_state["calendar.plans.open"] = next(iter(names))
    plan_id = st.selectbox("Show the posts of", list(names), format_func=names.get, key="calendar.plans.open")
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
                   "status": p.status, "caption": p.caption[:80]} for p in planned], hide_index=True, width="stretch")
    show_flash("plans")
    st.button("Schedule all valid drafts of this plan", key="calendar.plans.schedule", icon=":material/schedule:",
              on_click=lambda: _run("plans", lambda: schedule_drafts(plan_id)))
