"""The Social accounts page's parts: the OAuth callback's result, one card per OAuth provider, the
connected accounts, and the manual token form. Keys start with "accounts.".

No token ever reaches this module: accounts come as ``AccountView`` (which holds none), and the
manual form's token fields are emptied by the callback that stores them.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import streamlit as st

from core.config import get_settings
from core.errors import StudioError
from core.jobs.lifecycle import aware
from core.models import Platform
from core.publishing import caps, oauth, social_accounts
from ui import feedback
from ui.account_health import show_health
from ui.auth import guard
from ui.calendar.clock import studio_zone
from ui.text import literal

_FLASH = "accounts.flash"
_CONFIRM = "accounts.confirm"  # the account whose Disconnect asks for confirmation
RESULT_PARAMS = ("connected", "oauth_error")
SIGNATURE_PARAM = "oauth_sig"
PROVIDER_SHORT = {"meta": "Facebook", "google": "Google", "tiktok": "TikTok"}
TEXT_FIELDS = ("external_id", "name", "access_token", "refresh_token", "page_id")


def _mk(name: str) -> str:
    return f"accounts.manual.{name}"


def show_flash() -> None:
    feedback.show_flash(_FLASH)


def _run(action: Callable[[], str]) -> None:
    """A button callback; a provider's HTTP failure is an outcome to show, like a refusal."""
    feedback.run_action(_FLASH, action, errors=(StudioError, httpx.HTTPError))


def oauth_result() -> None:
    """The message the OAuth callback sent back in the URL, shown once (as plain text), then cleared."""
    params = st.query_params
    fields = {name: params[name] for name in RESULT_PARAMS if name in params}
    if fields and not oauth.result_is_authentic(fields, params.get(SIGNATURE_PARAM, "")):
        st.warning("This link carried a connection result the studio did not write; it is not shown.")
    elif fields:
        if connected := fields.get("connected"):
            st.success(f"Connected: {literal(connected)}")
        if failed := fields.get("oauth_error"):
            st.error(f"The connection failed: {literal(failed)}")
    for name in (*RESULT_PARAMS, SIGNATURE_PARAM):
        if name in params:
            del params[name]


def dry_run_notice() -> None:
    if get_settings().publish_dry_run:
        st.info("Dry-run mode is on (STUDIO_PUBLISH_DRY_RUN): posts are checked and recorded, nothing is sent "
                "to any platform.", icon=":material/science:")
    else:
        st.caption("Dry-run mode is off (STUDIO_PUBLISH_DRY_RUN=false): scheduled posts are really published.")


# --- OAuth providers ------------------------------------------------------------------------------------


def _settings_names(provider: oauth.Provider) -> str:
    return f"`STUDIO_{provider.client_id_setting.upper()}` and `STUDIO_{provider.client_secret_setting.upper()}`"


def _connect(provider: oauth.Provider) -> None:
    """Only on a click: each consent URL stores a one-time state."""
    st.session_state.pop(f"accounts.consent.{provider.name}", None)
    try:
        url = oauth.start_authorization(provider.platforms[0])
    except StudioError as error:
        st.session_state[f"accounts.consent_error.{provider.name}"] = str(error)
        return
    st.session_state.pop(f"accounts.consent_error.{provider.name}", None)
    st.session_state[f"accounts.consent.{provider.name}"] = url


def provider_card(provider: oauth.Provider) -> None:
    with st.container(border=True):
        st.markdown(f"**{provider.label}**")
        st.caption("Posts to: " + ", ".join(Platform(p).label for p in provider.platforms))
        if oauth.is_configured(provider):
            st.caption(":material/check_circle: Configured")
        else:
            st.caption(f":material/warning: Not configured: set {_settings_names(provider)}")
        st.caption("Redirect URI to register in the provider's app console:")
        st.code(oauth.redirect_uri(provider), language=None, wrap_lines=True)
        st.button("Connect", key=f"accounts.connect.{provider.name}", on_click=guard(_connect), args=(provider,),
                  icon=":material/link:")
        if error := st.session_state.get(f"accounts.consent_error.{provider.name}"):
            st.error(literal(error))
        if url := st.session_state.get(f"accounts.consent.{provider.name}"):
            st.link_button(f"Continue to {PROVIDER_SHORT.get(provider.name, provider.label)}", url,
                           type="primary", icon=":material/open_in_new:")
            st.caption("The link works once, for a few minutes; press Connect again for a new one.")


def provider_cards() -> None:
    for column, provider in zip(st.columns(len(oauth.PROVIDERS)), oauth.PROVIDERS.values(), strict=True):
        with column:
            provider_card(provider)


# --- connected accounts -----------------------------------------------------------------------------------


def _refresh(account_id: int) -> None:
    _run(lambda: f"Token renewed for {social_accounts.refresh_account(account_id).label}.")


def _check_quota(account_id: int) -> None:
    def check() -> str:
        reading = caps.check_instagram_quota(account_id)
        return f"Instagram says {reading.used} of {reading.total or '?'} API posts in the last 24 hours are used."
    _run(check)


def _disconnect(account_id: int) -> None:
    label = social_accounts.get_account(account_id).label
    st.session_state.pop(_CONFIRM, None)

    def disconnect() -> str:
        social_accounts.disconnect(account_id)
        return f"Disconnected {label}."

    _run(disconnect)


def _ask(account_id: int | None) -> None:
    st.session_state[_CONFIRM] = account_id


def account_row(account: social_accounts.AccountView) -> None:
    tz = studio_zone()
    with st.container(border=True):
        left, right = st.columns([3, 2], vertical_alignment="center")
        name = literal(account.name or account.external_id)
        left.markdown(f"**{name}** · {Platform(account.platform).label}")
        expires = aware(account.expires_at)
        expiry = f"token expires {expires.astimezone(tz):%Y-%m-%d %H:%M}" if expires else "token does not expire"
        left.caption(f"Account id {literal(account.external_id)} · connected via "
                     f"{account.connected_via} · {expiry}")
        with left:
            st.badge(account.status, color="green" if account.status == social_accounts.CONNECTED else "orange")
            health = show_health(account, tz)
        if account.last_error and account.status == social_accounts.NEEDS_RECONNECT:
            left.warning(literal(account.last_error))
        provider = oauth.provider_for(account.platform)
        if health.state != "ok":  # a new consent replaces the tokens of the same account
            right.button("Reconnect", key=f"accounts.reconnect.{account.id}", on_click=guard(_connect),
                         args=(provider,), type="primary", width="stretch", icon=":material/link:")
            if url := st.session_state.get(f"accounts.consent.{provider.name}"):
                right.link_button(f"Continue to {PROVIDER_SHORT.get(provider.name, provider.label)}", url,
                                  width="stretch", icon=":material/open_in_new:")
            if error := st.session_state.get(f"accounts.consent_error.{provider.name}"):
                right.error(literal(error))
        # Renewing a token takes the provider's app credentials, even for a token entered by hand.
        configured = oauth.is_configured(provider)
        right.button("Refresh token", key=f"accounts.refresh.{account.id}", on_click=guard(_refresh),
                     args=(account.id,),
                     disabled=not (account.refreshable and configured), width="stretch",
                     help=None if configured else f"Set {_settings_names(provider)} to renew tokens")
        if account.platform == Platform.INSTAGRAM:  # the quota Instagram reports; the cap follows it
            right.button("Check quota", key=f"accounts.quota.{account.id}", on_click=guard(_check_quota),
                         args=(account.id,), width="stretch")
        if st.session_state.get(_CONFIRM) == account.id:
            right.button("Yes, disconnect", key=f"accounts.disconnect_yes.{account.id}", type="primary",
                         on_click=guard(_disconnect), args=(account.id,), width="stretch")
            right.button("Cancel", key=f"accounts.disconnect_no.{account.id}", on_click=guard(_ask), args=(None,),
                         width="stretch")
        else:
            right.button("Disconnect", key=f"accounts.disconnect.{account.id}", on_click=guard(_ask),
                         args=(account.id,),
                         width="stretch")


def account_list() -> None:
    accounts = social_accounts.list_accounts()
    if not accounts:
        st.info("No account connected yet: connect one above, or enter a token by hand below.")
    for account in accounts:
        account_row(account)


# --- manual token entry --------------------------------------------------------------------------------------


def _connect_manually() -> None:
    state = st.session_state
    try:
        expires = int(state[_mk("expires_in")] or 0)
        account = social_accounts.connect_manually(
            platform=state[_mk("platform")], external_id=state[_mk("external_id")], name=state[_mk("name")],
            access_token=state[_mk("access_token")], refresh_token=state[_mk("refresh_token")],
            expires_in_s=expires or None, page_id=state[_mk("page_id")])
    except StudioError as error:
        feedback.flash(_FLASH, "error", str(error))
        return
    for name in TEXT_FIELDS:  # the tokens above all: they must not linger in the session
        state[_mk(name)] = ""
    feedback.flash(_FLASH, "success", f"Connected {account.label} (entered by hand).")


def manual_form() -> None:
    with st.form("accounts.manual"):
        st.markdown("**Enter a token by hand**")
        st.caption("For when OAuth cannot be used: a token from the platform's developer tools (Graph API "
                   "Explorer, Google OAuth Playground, TikTok developer portal). It is stored encrypted.")
        left, right = st.columns(2)
        left.selectbox("Platform", [p.value for p in Platform], format_func=lambda p: Platform(p).label,
                       key=_mk("platform"))
        right.text_input("Account id", key=_mk("external_id"), max_chars=200,
                         help="Instagram user id, Facebook Page id, YouTube channel id or TikTok open_id")
        left.text_input("Name", key=_mk("name"), max_chars=200)
        right.text_input("Page id (Instagram only)", key=_mk("page_id"), max_chars=200,
                         help="the Facebook Page the Instagram account is linked to")
        left.text_input("Access token", type="password", key=_mk("access_token"))
        right.text_input("Refresh token (optional)", type="password", key=_mk("refresh_token"))
        left.number_input("Expires in (seconds, 0 = does not expire)", 0, 10**9, 0, step=3600, key=_mk("expires_in"))
        st.form_submit_button("Save account", key=_mk("submit"), on_click=guard(_connect_manually), type="primary")
