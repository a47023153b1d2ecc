"""The editor's TikTok part, as TikTok's Direct Post rules want it
(https://developers.tiktok.com/doc/content-sharing-guidelines): the creator's current options read live
(creator_info), a privacy choice with no default, interactions the creator turned off shown off, the
longest video allowed, and the commercial-content disclosure."""

from __future__ import annotations

import httpx
import streamlit as st

from core.errors import StudioError
from core.publishing import social_accounts
from core.publishing.tiktok_creator import (
    PRIVACY_LABELS,
    UNAUDITED_WHY,
    CreatorInfo,
    app_audited,
    creator_info_for_account,
    privacy_choices,
)
from ui.loaded_form import LoadedForm
from ui.text import literal

_CACHE = "calendar.tiktok.creator"  # per account, for this session: the editor reruns on every keystroke


def _creator(account_id: int | None) -> CreatorInfo | str | None:
    """The creator's options, or why they could not be read; None without an account."""
    if account_id is None:
        default = social_accounts.default_account("tiktok")
        account_id = default.id if default else None
    if account_id is None:
        return None
    cache = st.session_state.setdefault(_CACHE, {})
    if account_id not in cache:
        try:
            cache[account_id] = creator_info_for_account(account_id)
        except (StudioError, httpx.HTTPError) as error:
            return f"could not read the creator's TikTok options: {error}"
    found: CreatorInfo = cache[account_id]
    return found


def tiktok_fields(form: LoadedForm, account_id: int | None, locked: bool) -> None:
    creator = _creator(account_id)
    info = creator if isinstance(creator, CreatorInfo) else None
    if isinstance(creator, str):
        st.caption(literal(creator))
    if info is not None:
        st.caption(f"Posting as {literal(info.nickname)} (@{literal(info.username)}) · videos up to "
                   f"{info.max_video_post_duration_sec} s")
    audited = app_audited()
    choices = privacy_choices(info.privacy_level_options if info else None, audited=audited)
    if not audited:  # say why "Only me" is the only choice (plain text: the link stays readable)
        st.caption(f"Only 'Only me': {literal(UNAUDITED_WHY)}")
    chosen = form.value("tt_privacy", None)
    st.selectbox("Who can see this TikTok post", choices, index=choices.index(chosen) if chosen in choices else None,
                 placeholder="Choose (TikTok allows no default)", format_func=lambda o: PRIVACY_LABELS.get(o, o),
                 key=form.key("tt_privacy"), disabled=locked)
    columns = st.columns(3)
    for column, name, label in zip(columns, ("comment", "duet", "stitch"), ("Comments", "Duets", "Stitches"),
                                   strict=True):
        off = bool(info and info.disabled(name))
        column.checkbox(f"Allow {label.lower()}", value=bool(form.value(f"tt_{name}", True)) and not off,
                        key=form.key(f"tt_{name}"), disabled=locked or off,
                        help="turned off in the creator's TikTok settings" if off else None)
    st.checkbox("Promotes my own brand (\u201cPromotional content\u201d)", value=bool(form.value("tt_brand_organic")),
                key=form.key("tt_brand_organic"), disabled=locked)
    st.checkbox("Paid partnership (\u201cBranded content\u201d; cannot be private)",
                value=bool(form.value("tt_brand_content")), key=form.key("tt_brand_content"), disabled=locked)
