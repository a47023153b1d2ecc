"""A post's editor in the side panel: its live status, the fields, the media, a per-platform preview
of the post as it will appear (and what would stop it from publishing), and the actions its status
allows (save, schedule, publish now, dry run, retry, delete)."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

import streamlit as st

from core.characters import likeness
from core.config import get_settings
from core.errors import StudioError
from core.models import Platform, Post, PostStatus
from core.publishing import posts, production, social_accounts
from core.publishing.checks import RULES, normalize_hashtags
from ui.auth import fragment, guard
from ui.calendar.clock import studio_zone, when_text
from ui.calendar.media import media_picker
from ui.calendar.post_form import DEFAULT_ACCOUNT, edit_key, form_values, post_form, sync_form
from ui.calendar.state import EDITOR_FLASH, PAGE_FLASH, close_panel
from ui.calendar.tiktok import tiktok_fields
from ui.feedback import Refused, run_action, show_flash
from ui.text import literal, plain
from ui.widgets import status_badge

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
    close_panel()
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
    run_action(EDITOR_FLASH, lambda: ACTIONS[name][1](post_id))


def _delete_action(post_id: int) -> None:
    run_action(PAGE_FLASH, lambda: _delete(post_id))


# --- the editor: drawing -------------------------------------------------------------------------------


def post_editor(post_id: int, tz: ZoneInfo) -> None:
    try:
        post = posts.get_post(post_id)
    except StudioError:
        st.info(f"Post #{post_id} no longer exists.")
        st.button("Close", key="calendar.close", on_click=guard(close_panel))
        return
    top = st.columns([4, 1], vertical_alignment="center")
    top[0].subheader(f"{Platform(post.platform).label} post #{post.id}")
    top[1].button("Close", key="calendar.close", on_click=guard(close_panel))
    _post_status(post_id, post.status, post.production_status)
    show_flash(EDITOR_FLASH)
    _held_for_review(post)
    locked = post.status in posts.LOCKED
    sync_form(post, tz)
    _fields(post, tz, locked)
    media_picker(post, locked)
    _preview(post, tz)
    _actions(post)


def _held_for_review(post: Post) -> None:
    """A draft whose image looks like another person waits for a person: approve (= schedule) or reject (delete)."""
    hold = likeness.held_posts([post]).get(post.id or 0)
    if hold is None:
        return
    pid = post.id or 0
    st.warning(literal(f"Held for review: {hold['reason']}. Likeness score (face distance) "
                       f"{hold['faceDistance']:.2f}; this character's threshold is {hold['threshold']:.2f}."),
               icon=":material/pause_circle:")
    with st.container(horizontal=True):
        st.button("Approve and schedule", key=edit_key(pid, "approve"), on_click=guard(_act), args=(pid, "schedule"),
                  type="primary", icon=":material/check:")
        st.button("Reject (delete the post)", key=edit_key(pid, "reject"), on_click=guard(_delete_action),
                  args=(pid,), icon=":material/close:")


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
            st.error(literal(post.error))
        if post.status == PostStatus.PUBLISHED:
            _published(post)

    fragment(run_every=2 if active else None)(body)()


def _published(post: Post) -> None:
    if post.dry_run:
        st.info("Published in dry-run mode: checked and recorded, nothing was sent.")
    if post.permalink and post.permalink.startswith(("https://", "http://")):
        st.link_button("Open the published post", post.permalink, icon=":material/open_in_new:")
    if post.published_at:
        st.caption(f"Published {when_text(post.published_at, studio_zone())}")


def _fields(post: Post, tz: ZoneInfo, locked: bool) -> None:
    form = post_form(post.id or 0)
    platforms = [p.value for p in Platform]
    platform = st.selectbox("Platform", platforms, index=platforms.index(form.value("platform")),
                            format_func=lambda p: Platform(p).label, key=form.key("platform"), disabled=locked)
    accounts = {a.id: a for a in social_accounts.list_accounts(platform)}
    if form.value("account") not in (DEFAULT_ACCOUNT, *accounts):
        form.load({"account": DEFAULT_ACCOUNT})  # an account of the previous platform
    choices = [DEFAULT_ACCOUNT, *accounts]
    st.selectbox("Account", choices, index=choices.index(form.value("account")), key=form.key("account"),
                 disabled=locked, format_func=lambda i: "default (the platform's connected account)"
                 if i == DEFAULT_ACCOUNT else plain(f"{accounts[i].label} ({accounts[i].status})"))
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
    if platform == Platform.TIKTOK:
        tiktok_fields(form, form.value("account") or None, locked)


def _preview(post: Post, tz: ZoneInfo) -> None:
    """The post as it will appear with the values in the form, and what would stop it from publishing."""
    values = form_values(post, tz)
    draft = Post(id=post.id, status=post.status, image_prompt=post.image_prompt,
                 **{**values, "hashtags": normalize_hashtags(values["hashtags"])})
    try:
        preview = posts.post_preview(draft)
    except StudioError as error:
        st.error(literal(error))
        return
    with st.container(border=True):
        st.markdown(f"**Preview · {Platform(preview.platform).label}**")
        if preview.title:
            st.text(f"Title: {plain(preview.title)}")
        st.text(plain(preview.shown) or "(empty)")
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
            st.error("\n".join(["Cannot be scheduled yet:", *(f"- {literal(e)}" for e in preview.errors)]))
        for warning in preview.warnings:
            st.warning(literal(warning))
        if preview.ok:
            st.success("Ready to schedule.")


def _actions(post: Post) -> None:
    pid = post.id or 0
    names = ACTIONS_BY_STATUS.get(PostStatus(post.status), ())
    for column, name in zip(st.columns(max(len(names), 1)), names, strict=False):
        column.button(ACTIONS[name][0], key=edit_key(pid, name), on_click=guard(_act), args=(pid, name),
                      width="stretch",
                      type="primary" if name in ("schedule", "retry") else "secondary")
    if post.status == PostStatus.PUBLISHING:
        st.caption("Being published: it can be changed when the publish job finishes.")
        return
    left, right = st.columns([3, 2], vertical_alignment="center")
    sure = left.checkbox("Yes, delete this post" + (" (from the calendar only)" if post.status == "published" else ""),
                         key=edit_key(pid, "confirm_delete"))
    right.button("Delete", key=edit_key(pid, "delete"), disabled=not sure, on_click=guard(_delete_action), args=(pid,),
                 icon=":material/delete:")
