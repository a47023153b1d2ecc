"""The Calendar page under AppTest on real services. The calendar itself is a custom component
(an UnknownElement here), so its callbacks are fed exactly as the component returns them: through
``handle_calendar_value`` and through the component's key in session state. The browser test in
test_browser.py drags a real event."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from core.characters import characters
from core.config import reload_settings
from core.db import session_scope
from core.jobs import lifecycle as jobs
from core.jobs.lifecycle import aware
from core.library.assets import AssetSource, store_image
from core.models import JobStatus, Post, PostStatus
from core.publishing import planning, posts, social_accounts
from tests.apptest import click, open_page, rerun
from tests.conftest import wait_until
from tests.factories import days_from_today, image_bytes
from ui.calendar.board import calendar_events, handle_calendar_value
from ui.calendar.post_form import editor_key
from ui.calendar.state import HANDLED, MOUNT, calendar_key

pytestmark = pytest.mark.clock  # also run at awkward moments (tests/clock.py): calendar dates

PAGE = "pages/calendar.py"
UTC_ZONE = ZoneInfo("UTC")
# Every date here derives from SOON, never from a fixed day: a fixed "elsewhere" equals SOON on some day.
SOON = (datetime.now(UTC) + timedelta(days=2)).replace(hour=11, minute=0, second=0, microsecond=0)


def later(days: int, hour: int = 11, minute: int = 0) -> datetime:
    """A moment `days` after SOON's day, at hour:minute UTC: always a different moment from SOON."""
    return (SOON + timedelta(days=days)).replace(hour=hour, minute=minute)


def iso(moment: datetime, *, zulu: bool = True) -> str:
    """How the component writes a time: UTC with Z, or the zone's wall clock without an offset."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if zulu else "")


def field(at, post: Post, name: str) -> str:
    """The key of an editor field now (it moves when a drag or a production loads it: ui.loaded_form)."""
    return editor_key(post.id, name, at.session_state)


def _post(**fields) -> Post:
    values = {"platform": "instagram", "scheduled_at": SOON, "caption": "Morning run by the lake"}
    return posts.create_post(**{**values, **fields})


def _set_status(post: Post, status: str) -> None:
    with session_scope() as session:
        session.execute(update(Post).where(Post.id == post.id).values(status=status))


def _month_view(day: date) -> dict:
    """FullCalendar's month view around `day`, as streamlit-calendar 1.4.0 reports it."""
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    start, end = first - timedelta(days=first.weekday()), following + timedelta(days=(7 - following.weekday()) % 7)
    return {"type": "dayGridMonth", "title": first.strftime("%B %Y"), "activeStart": f"{start}T00:00:00.000Z",
            "activeEnd": f"{end}T00:00:00.000Z", "currentStart": f"{first}T00:00:00.000Z",
            "currentEnd": f"{following}T00:00:00.000Z"}


def _event_change(post_id: int, old: str, new: str) -> dict:
    """The component's value after a drop, as streamlit-calendar 1.4.0 returns it."""
    view = _month_view(date.fromisoformat(old[:10]))
    event = {"allDay": False, "title": "IG · Morning run", "id": str(post_id), "backgroundColor": "#C13584",
             "extendedProps": {"status": "draft", "platform": "instagram"}}
    return {"callback": "eventChange",
            "eventChange": {"oldEvent": {**event, "start": old, "end": None},
                            "event": {**event, "start": new, "end": None}, "relatedEvents": [], "view": view}}


def _open_editor(post: Post):
    at = open_page(PAGE)
    return click(at, f"calendar.open.{post.id}")


def _texts(at) -> str:
    return "\n".join(t.value for t in at.text)


def _plain(elements) -> list[str]:
    return [e.value.replace("\\", "") for e in elements]  # messages escape Markdown characters


def test_the_page_shows_its_posts_around_the_calendar(studio):
    draft = _post(caption="Sunrise yoga on the pier")
    published = _post(platform="youtube", caption="Five-minute stretch", title="Stretch",
                      scheduled_at=SOON + timedelta(hours=3))
    _set_status(published, PostStatus.PUBLISHED)
    at = open_page(PAGE)
    assert [t.label for t in at.tabs] == ["Calendar", "Plans"]
    assert any("1 draft · 1 published" in c.value for c in at.caption)
    assert "Sunrise yoga on the pier" in _texts(at) and "Five-minute stretch" in _texts(at)
    assert any(c.value.startswith("No LLM is configured") for c in at.caption), "the planner says what it uses"

    events = {e["id"]: e for e in calendar_events(posts.posts_between(SOON - timedelta(days=1),
                                                                      SOON + timedelta(days=1)), UTC_ZONE)}
    assert events[str(draft.id)]["start"] == SOON.replace(tzinfo=None).isoformat(timespec="minutes")
    assert events[str(draft.id)]["editable"] and not events[str(published.id)]["editable"]
    assert events[str(published.id)]["title"].startswith("✓ YT · Five-minute")
    assert events[str(draft.id)]["classNames"] == ["post-draft"]

    at.multiselect(key="calendar.f.platforms").set_value(["youtube"])
    rerun(at)
    assert "Sunrise yoga" not in _texts(at) and "Five-minute stretch" in _texts(at)


def test_a_drop_on_the_calendar_moves_the_post_once(studio):
    post = _post()
    value = _event_change(post.id, iso(SOON), iso(later(2)))
    state: dict = {}
    outcome = handle_calendar_value(value, state, tz=UTC_ZONE)
    assert outcome.kind == "moved" and outcome.post_id == post.id
    assert aware(posts.get_post(post.id).scheduled_at) == later(2)

    posts.move_post(post.id, later(4, hour=9))  # changed elsewhere meanwhile (the editor)
    assert handle_calendar_value(value, state, tz=UTC_ZONE).kind == "none", "the same value comes back each rerun"
    assert aware(posts.get_post(post.id).scheduled_at) == later(4, hour=9)
    assert state["calendar.view"]["date"] == str(SOON.date().replace(day=1)), "the view it reported is remembered"


def test_the_components_times_are_the_studio_zones_wall_clock(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_TIMEZONE", "Europe/Paris")
    reload_settings()
    post = _post()
    paris = ZoneInfo("Europe/Paris")
    wall_clock = later(2).replace(tzinfo=None)  # 11:00 in Paris, whatever the day (and its UTC offset)
    handle_calendar_value(_event_change(post.id, iso(SOON, zulu=False), iso(wall_clock, zulu=False)), {}, tz=paris)
    assert aware(posts.get_post(post.id).scheduled_at) == wall_clock.replace(tzinfo=paris)
    assert aware(posts.get_post(post.id).scheduled_at).astimezone(paris).hour == 11
    [event] = calendar_events([posts.get_post(post.id)], paris)
    assert event["start"] == wall_clock.isoformat(timespec="minutes")


def test_a_move_through_the_page_is_saved_and_a_published_post_stays_put(studio):
    movable, published = _post(), _post(caption="Already out")
    _set_status(published, PostStatus.PUBLISHED)
    at = open_page(PAGE)
    wall_clock = later(2, hour=16, minute=30).replace(tzinfo=None)  # the component speaks the studio zone's wall clock
    at.session_state[calendar_key({})] = _event_change(movable.id, iso(SOON), iso(wall_clock))
    rerun(at)
    assert aware(posts.get_post(movable.id).scheduled_at) == wall_clock.replace(tzinfo=ZoneInfo(studio.timezone))
    assert any(f"moved to {wall_clock:%a %d %b %Y, %H:%M}" in s for s in _plain(at.success))

    at.session_state[calendar_key({})] = _event_change(published.id, iso(SOON), iso(later(3)))
    rerun(at)
    assert aware(posts.get_post(published.id).scheduled_at) == SOON, "published posts are not moved"
    assert any("Not moved" in e and "published" in e for e in _plain(at.error))
    assert at.session_state[MOUNT] == 1 and at.session_state[HANDLED] is None, "the calendar is drawn afresh"


def test_the_editor_previews_the_post_and_schedule_lists_what_is_missing(studio):
    post = _post(caption="A long morning story. " * 15, hashtags="#run #lake #sunrise")
    at = _open_editor(post)
    assert "… more" in _texts(at)
    assert any("3 hashtags" in c.value and "truncated" in c.value for c in at.caption)
    [problems] = _plain(at.error)
    assert "needs media" in problems and "no Instagram account is connected" in problems

    click(at, f"calendar.edit.{post.id}.schedule")
    refused = "\n".join(_plain(at.error))
    assert "Not scheduled. Fix these first:" in refused and "- Instagram needs media" in refused
    assert posts.get_post(post.id).status == PostStatus.DRAFT

    at.text_area(key=field(at, post, "caption")).input("Short and sweet")
    click(at, f"calendar.edit.{post.id}.save")
    assert posts.get_post(post.id).caption == "Short and sweet"
    assert "… more" not in _texts(at)


def test_a_move_elsewhere_reloads_the_editors_date_and_keeps_its_unsaved_caption(studio):
    post = _post()
    at = _open_editor(post)
    at.text_area(key=field(at, post, "caption")).input("Unsaved words")
    rerun(at)
    date_key = field(at, post, "date")
    elsewhere = later(2, hour=7, minute=30)  # from SOON, not a fixed day: a fixed day equals SOON on some day
    posts.move_post(post.id, elsewhere)  # a drag on the calendar, say
    rerun(at)
    assert field(at, post, "date") != date_key, "the loaded date is drawn under a fresh key"
    assert at.date_input(key=field(at, post, "date")).value == elsewhere.date()
    assert at.text_area(key=field(at, post, "caption")).value == "Unsaved words"
    click(at, f"calendar.edit.{post.id}.save")
    saved = posts.get_post(post.id)
    assert (aware(saved.scheduled_at), saved.caption) == (elsewhere, "Unsaved words")


def test_a_post_with_an_image_schedules_in_dry_run_mode(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_PUBLISH_DRY_RUN", "true")
    reload_settings()
    image = store_image("uploads/portrait.png", image_bytes(400, 500, seed=3), source=AssetSource.UPLOAD)
    post = _post(hashtags="#run")
    at = _open_editor(post)
    click(at, f"calendar.edit.{post.id}.use.{image.id}")
    assert any(f"image #{image.id} · 400×500 · aspect 4:5" in c.value for c in at.caption)
    assert [s.value for s in at.success] == ["Ready to schedule."]
    at.time_input(key=field(at, post, "time")).set_value(datetime(2026, 1, 1, 18, 45).time())
    click(at, f"calendar.edit.{post.id}.schedule")
    saved = posts.get_post(post.id)
    assert saved.status == PostStatus.SCHEDULED and saved.asset_ids == [image.id]
    assert aware(saved.scheduled_at).astimezone(ZoneInfo(studio.timezone)).time().isoformat() == "18:45:00"
    assert any(s.startswith("Scheduled for") for s in _plain(at.success))

    click(at, f"calendar.edit.{post.id}.unschedule")
    assert posts.get_post(post.id).status == PostStatus.DRAFT

    click(at, f"calendar.edit.{post.id}.publish")
    publishing = posts.get_post(post.id)
    assert publishing.status == PostStatus.PUBLISHING and jobs.get_job(publishing.publish_job_id).payload["dry_run"]
    assert any("dry-run mode" in s for s in _plain(at.success))
    assert at.text_area(key=field(at, post, "caption")).disabled, "no edits while it is being published"


def test_an_account_and_the_youtube_options_are_saved_from_the_editor(studio):
    account = social_accounts.connect_manually(platform="youtube", external_id="UC1", name="Mia",
                                               access_token="ya29.long-enough-token")
    post = _post(platform="youtube", caption="Five minutes, every morning", title="Old title")
    at = _open_editor(post)
    problems = "\n".join(_plain(at.error))
    assert "needs media" in problems and "account is connected" not in problems, "the connected one is the default"
    at.selectbox(key=field(at, post, "account")).set_value(account.id)
    at.text_input(key=field(at, post, "title")).input("Five-minute stretch")
    at.selectbox(key=field(at, post, "privacy")).set_value("unlisted")
    at.checkbox(key=field(at, post, "kids")).check()
    click(at, f"calendar.edit.{post.id}.save")
    saved = posts.get_post(post.id)
    assert (saved.account_id, saved.title) == (account.id, "Five-minute stretch")
    assert saved.options["privacy"] == "unlisted" and saved.options["made_for_kids"] is True
    assert "Title: Five-minute stretch" in _texts(at)

    at.selectbox(key=field(at, post, "platform")).set_value("instagram")
    rerun(at)
    assert at.selectbox(key=field(at, post, "account")).value == 0, "the YouTube account does not apply"
    assert not [t for t in at.text_input if t.key == field(at, post, "title")]


def test_a_locked_post_shows_its_link_and_offers_no_edits(studio):
    post = _post()
    with session_scope() as session:
        session.execute(update(Post).where(Post.id == post.id).values(
            status=PostStatus.PUBLISHED, permalink="https://www.instagram.com/p/abc123/"))
    at = open_page(PAGE, **{"calendar.panel": {"post": post.id}})
    assert [b.proto.url for b in at.get("link_button")] == ["https://www.instagram.com/p/abc123/"]
    assert at.text_area(key=field(at, post, "caption")).disabled
    assert not [b for b in at.button if b.key == f"calendar.edit.{post.id}.schedule"]


def test_clicking_a_day_creates_a_draft_or_produces_content_for_the_slot(studio):
    at = open_page(PAGE)
    day = days_from_today(10).isoformat()
    at.session_state[calendar_key({})] = {"callback": "dateClick", "dateClick": {
        "allDay": True, "date": f"{day}T00:00:00.000Z", "view": {"type": "dayGridMonth", "title": "",
                                                                 "activeStart": f"{day}T00:00:00.000Z"}}}
    rerun(at)
    assert any(s.value.startswith("New post on") for s in at.subheader)
    at.selectbox(key="calendar.new.platform").set_value("tiktok")
    rerun(at)
    assert at.time_input(key="calendar.new.time").value.hour == planning.BEST_HOURS["tiktok"]
    assert at.toggle(key="calendar.new.video.tiktok").value, "video platforms make a video by default"
    at.text_area(key="calendar.new.caption").input("Trail day!")
    click(at, "calendar.new.create")
    [draft] = posts.posts_between(datetime.fromisoformat(day).replace(tzinfo=UTC),
                                  datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1))
    assert (draft.platform, draft.caption, draft.status) == ("tiktok", "Trail day!", PostStatus.DRAFT)
    assert aware(draft.scheduled_at).astimezone(ZoneInfo(studio.timezone)).hour == planning.BEST_HOURS["tiktok"]
    assert at.text_area(key=field(at, draft, "caption")).value == "Trail day!", "its editor opens"

    at.session_state[calendar_key(at.session_state)] = {"callback": "select", "select": {
        "allDay": False, "start": f"{day}T15:30:00.000Z", "end": f"{day}T16:00:00.000Z"}}
    rerun(at)
    at.text_area(key="calendar.new.prompt").input("photo of mia on a forest trail")
    at.number_input(key="calendar.new.count").set_value(2)
    click(at, "calendar.new.produce")
    produced = [p for p in posts.posts_between(datetime.fromisoformat(day).replace(tzinfo=UTC),
                                               datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1))
                if p.id != draft.id]
    assert len(produced) == 1 and produced[0].production_status == "producing"
    job = jobs.get_job(produced[0].generate_job_id)
    assert job.kind == "generate" and job.payload["count"] == 2 and "forest trail" in job.payload["prompt"]
    assert f"{aware(produced[0].scheduled_at).astimezone(ZoneInfo(studio.timezone)):%H:%M}" == "15:30"
    assert any("Production: producing" in c.value for c in at.caption)


def test_the_persona_is_saved_to_the_current_character(studio):
    at = open_page(PAGE)
    at.text_input(key="calendar.persona.niche").input("trail running")
    at.text_area(key="calendar.persona.do").input("one tip per post\n\n  end with a question ")
    click(at, "calendar.persona.save")
    persona = characters.persona_of(characters.current_character())
    assert persona.niche == "trail running" and persona.do == ["one tip per post", "end with a question"]
    assert any("Persona saved" in s.value for s in at.success)


@pytest.mark.integration
def test_a_template_plan_is_generated_by_a_worker_and_its_drafts_are_scheduled_or_refused(studio, workers):
    at = open_page(PAGE)
    at.text_input(key="calendar.plan.theme").input("morning routines that stick")
    at.multiselect(key="calendar.plan.platforms").set_value(["instagram", "tiktok"])
    start = days_from_today(1)
    at.date_input(key="calendar.plan.dates").set_value((start, start + timedelta(days=6)))
    at.number_input(key="calendar.plan.per_week").set_value(2)
    at.radio(key="calendar.plan.planner").set_value("template")
    click(at, "calendar.plan.submit")
    [job] = jobs.list_jobs(kinds=["plan"]).items
    assert job.payload["planner"] == "template" and job.payload["persona"]["name"] == characters.DEFAULT_NAME
    assert any(f"job {job.id[:8]}" in s.value for s in at.success)

    workers.worker("default", threads=1)
    wait_until(lambda: jobs.get_job(job.id).status == JobStatus.SUCCEEDED, 60, what="the plan job")
    rerun(at)
    [plan] = planning.list_plans().items
    table = at.dataframe[0].value
    assert list(table["planner"]) == ["template"] and list(table["posts"]) == [4]
    assert list(table["cost (USD)"]) == ["$0.0000"]
    posts_table = at.dataframe[1].value
    assert len(posts_table) == 4 and set(posts_table["platform"]) == {"Instagram", "TikTok"}

    click(at, "calendar.plans.schedule")
    refused = "\n".join(_plain(at.error))
    assert "Scheduled 0 of 4 drafts. 4 refused:" in refused and "needs media" in refused
    assert {p.status for p in planning.plan_posts(plan.id)} == {PostStatus.DRAFT}


@pytest.mark.parametrize("dry_run", [True, False])
def test_the_calendar_shows_a_dry_run_banner_only_while_publishing_is_a_dry_run(studio, monkeypatch, dry_run):
    monkeypatch.setenv("STUDIO_PUBLISH_DRY_RUN", str(dry_run).lower())
    reload_settings()
    at = open_page(PAGE)
    banners = [w.value for w in at.warning if w.value.startswith("**Dry run:**")]
    assert len(banners) == (1 if dry_run else 0)
    if dry_run:
        assert "without a connected account" in banners[0] and "STUDIO_PUBLISH_DRY_RUN=false" in banners[0]


def test_the_editor_flags_a_post_over_the_daily_cap_and_after_its_accounts_token_ends(studio):
    social_accounts.connect_manually(platform="youtube", external_id="UC1", name="Chan",
                                     access_token="ya29.long-enough-token", expires_in_s=86_400)  # no refresh
    for hours in range(6):  # YouTube: six uploads a day
        _set_status(_post(platform="youtube", title="Earlier", scheduled_at=SOON - timedelta(hours=hours)),
                    PostStatus.SCHEDULED)
    post = _post(platform="youtube", title="One more", scheduled_at=SOON + timedelta(hours=1))
    at = _open_editor(post)
    warnings = _plain(at.warning)
    assert any("over the daily cap" in w and "6 API posts" in w for w in warnings), warnings
    assert any("will not be able to post then" in w and "before this post" in w for w in warnings)
    assert any("token expiring" in w for w in warnings), "the accounts summary on the calendar"


def test_an_unaudited_tiktok_app_offers_only_only_me_and_says_why(studio):
    post = _post(platform="tiktok", caption="Trail day")
    at = _open_editor(post)
    privacy = at.selectbox(key=field(at, post, "tt_privacy"))
    assert privacy.options == ["Only me"] and privacy.value is None  # still the user's pick: no default
    assert any("not passed TikTok's audit" in c and "content-sharing-guidelines" in c for c in _plain(at.caption))


def test_a_tiktok_post_gets_its_privacy_picked_with_no_default_and_its_disclosures(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_TIKTOK_APP_AUDITED", "true")  # an audited app: every level TikTok offers
    reload_settings()
    post = _post(platform="tiktok", caption="Trail day")
    at = _open_editor(post)
    privacy = at.selectbox(key=field(at, post, "tt_privacy"))
    assert privacy.value is None, "TikTok's rules: no default privacy"
    assert any("choose who can see this post" in e for e in _plain(at.error))
    privacy.set_value("FOLLOWER_OF_CREATOR")
    at.checkbox(key=field(at, post, "tt_duet")).uncheck()
    at.checkbox(key=field(at, post, "tt_brand_organic")).check()
    click(at, f"calendar.edit.{post.id}.save")
    options = posts.get_post(post.id).options
    assert options["privacy_level"] == "FOLLOWER_OF_CREATOR"
    assert (options["disable_comment"], options["disable_duet"], options["brand_organic_toggle"]) == (False, True, True)
    assert not any("choose who can see" in e for e in _plain(at.error))
