"""An account's token health and how much of its daily publishing cap is used: shown on the Social accounts
page (with Reconnect) and on the Calendar, so an account that will stop working, or a day that is full,
is seen before a post fails."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import streamlit as st

from core.models import Platform, utcnow
from core.publishing import caps, social_accounts
from ui.text import literal

STATE_COLOURS: dict[str, Literal["green", "orange", "red"]] = {"ok": "green", "expiring": "orange",
                                                                "unusable": "red"}


def _when(moment: datetime | None, tz: ZoneInfo, missing: str) -> str:
    return f"{moment.astimezone(tz):%Y-%m-%d %H:%M}" if moment else missing


def health_caption(account: social_accounts.AccountView, tz: ZoneInfo) -> str:
    health = social_accounts.token_health(account)
    used = caps.usage(account.platform, account.id, utcnow())
    return (f"Token valid until {_when(health.valid_until, tz, 'no expiry')} · renewable until "
            f"{_when(health.renewable_until, tz, 'no known end')} · last refresh "
            f"{_when(health.last_refresh, tz, 'never')} · {used.used} of {used.cap} posts in the last 24 h "
            f"({used.remaining} left)")


def show_health(account: social_accounts.AccountView, tz: ZoneInfo) -> social_accounts.TokenHealth:
    """The account's token state (badge, dates, warnings) and daily cap use."""
    health = social_accounts.token_health(account)
    st.badge(f"token {health.state}", color=STATE_COLOURS[health.state])
    st.caption(health_caption(account, tz))
    for warning in health.warnings:
        st.warning(literal(warning), icon=":material/schedule:")
    if health.last_error and account.status != social_accounts.NEEDS_RECONNECT:
        st.caption(f"Last error: {literal(health.last_error)}")
    return health


def calendar_summary(tz: ZoneInfo) -> None:
    """One line per connected account: token state and today's cap, on the Calendar."""
    accounts = social_accounts.list_accounts()
    if not accounts:
        return
    with st.expander("Accounts: token health and daily caps", expanded=any(
            social_accounts.token_health(a).state != "ok" for a in accounts)):
        for account in accounts:
            health = social_accounts.token_health(account)
            used = caps.usage(account.platform, account.id, utcnow())
            line = (f"{Platform(account.platform).label} · {literal(account.name or account.external_id)}: token "
                    f"{health.state}, {used.used}/{used.cap} posts in the last 24 h")
            if health.warnings:
                st.warning(line + " — " + "; ".join(literal(w) for w in health.warnings))
            else:
                st.caption(line)
