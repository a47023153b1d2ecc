"""The post editor's form state: its fields as a LoadedForm (a drag or a finished production loads new
values into them), and the values Save writes (the user's edits over the post as it is now)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import streamlit as st

from core.models import Platform, Post
from ui.calendar.clock import local, studio_zone
from ui.loaded_form import LoadedForm
from ui.session import ReadOnlySessionState

DEFAULT_ACCOUNT = 0  # the account choice "the platform's default" (a selectbox shows None as no choice at all)


def edit_key(post_id: int, name: str) -> str:
    return f"calendar.edit.{post_id}.{name}"


def post_form(post_id: int) -> LoadedForm:
    """The editor's fields; a drag or a finished production loads new values into them (ui.loaded_form)."""
    return LoadedForm(f"calendar.edit.{post_id}")


def editor_key(post_id: int, name: str, state: ReadOnlySessionState | None = None) -> str:
    """The widget key of an editor field now (it moves when the field is loaded)."""
    return post_form(post_id).key(name, state)


def _post_fields(post: Post, tz: ZoneInfo) -> dict[str, Any]:
    when = local(post.scheduled_at, tz)
    return {"platform": post.platform, "account": post.account_id or DEFAULT_ACCOUNT, "title": post.title,
            "caption": post.caption, "hashtags": " ".join(f"#{t}" for t in post.hashtags), "date": when.date(),
            "time": when.time().replace(second=0, microsecond=0), "media": list(post.asset_ids),
            "ai": post.ai_generated, "privacy": post.options.get("privacy", "public"),
            "kids": bool(post.options.get("made_for_kids", False)),
            # TikTok: no default privacy (None until the user picks); interactions allowed unless turned off.
            "tt_privacy": post.options.get("privacy_level"),
            "tt_comment": not post.options.get("disable_comment", False),
            "tt_duet": not post.options.get("disable_duet", False),
            "tt_stitch": not post.options.get("disable_stitch", False),
            "tt_brand_organic": bool(post.options.get("brand_organic_toggle", False)),
            "tt_brand_content": bool(post.options.get("brand_content_toggle", False))}


def sync_form(post: Post, tz: ZoneInfo) -> None:
    """Load the post into the widgets; afterwards only fields that changed in the database (a drag, a
    finished production) are reloaded, so unsaved edits of the others survive a rerun."""
    fields = _post_fields(post, tz)
    seen_key = edit_key(post.id or 0, "seen")
    seen = st.session_state.get(seen_key)
    changed = {name: value for name, value in fields.items() if seen is None or seen.get(name) != value}
    if changed:
        post_form(post.id or 0).load(changed)
    st.session_state[seen_key] = fields


def _edited_fields(post: Post, tz: ZoneInfo) -> dict[str, Any]:
    """The post as it is now, with the user's edits over it. A field counts as edited when the form holds
    something other than what the editor last loaded; any other field takes the post's current value.
    So Save never writes back a value the form merely had: a drag or a finished production that the
    form has not shown yet (its rerun was cut short by the click) is kept."""
    now = _post_fields(post, tz)
    seen = st.session_state.get(edit_key(post.id or 0, "seen")) or now
    form = post_form(post.id or 0)
    return {name: value if (edit := form.value(name, value)) == seen.get(name) else edit for name, value in now.items()}


def form_values(post: Post, tz: ZoneInfo | None = None) -> dict[str, Any]:
    """The editor's values as ``update_post`` takes them (the user's edits over the post as it is now)."""
    tz = tz or studio_zone()
    fields = _edited_fields(post, tz)
    options = dict(post.options)
    if fields["platform"] == Platform.YOUTUBE:
        options.update(privacy=fields["privacy"], made_for_kids=bool(fields["kids"]))
    if fields["platform"] == Platform.TIKTOK:
        options.pop("privacy_level", None)
        if fields["tt_privacy"]:
            options["privacy_level"] = fields["tt_privacy"]
        options.update({f"disable_{name}": not fields[f"tt_{name}"] for name in ("comment", "duet", "stitch")},
                       brand_organic_toggle=bool(fields["tt_brand_organic"]),
                       brand_content_toggle=bool(fields["tt_brand_content"]))
    day, clock = fields["date"], fields["time"]
    when = datetime.combine(day, clock, tz) if day and clock else post.scheduled_at
    return {"platform": fields["platform"], "scheduled_at": when, "caption": fields["caption"],
            "hashtags": fields["hashtags"], "title": fields["title"], "account_id": fields["account"] or None,
            "asset_ids": list(fields["media"]), "ai_generated": bool(fields["ai"]), "options": options}
