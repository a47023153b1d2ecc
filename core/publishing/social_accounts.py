"""Connected social accounts: stored with encrypted tokens, refreshed before they expire.

Tokens leave this module only through :func:`credentials` (for a worker about to call a
platform). Everything shown in the UI or the API is an :class:`AccountView`, which holds no
token at all, so a page cannot display one by mistake.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from core.config import get_settings
from core.db import get_or_raise, session_scope
from core.errors import InvalidInput
from core.infra.crypto import decrypt_token, encrypt_token, get_cipher
from core.jobs.lifecycle import aware
from core.models import Platform, Post, PostStatus, SocialAccount, utcnow
from core.publishing import oauth

_logger = logging.getLogger("studio.social")

NEEDS_RECONNECT = "needs-reconnect"
CONNECTED = "connected"
GOOGLE_TESTING_REFRESH_LIFETIME = timedelta(days=7)
WARN_AHEAD = timedelta(days=7)  # token health warns this long before an account stops working


@dataclass(frozen=True)
class AccountView:
    id: int
    platform: str
    external_id: str
    name: str
    status: str
    connected_via: str
    expires_at: datetime | None
    refreshable: bool
    last_error: str | None
    updated_at: datetime
    refresh_expires_at: datetime | None = None
    refreshed_at: datetime | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # no token in here: names, Page id, user token expiry

    @property
    def label(self) -> str:
        return f"{Platform(self.platform).label}: {self.name or self.external_id}"


def _view(account: SocialAccount) -> AccountView:
    return AccountView(
        id=account.id or 0, platform=account.platform, external_id=account.external_id, name=account.name,
        status=account.status, connected_via=account.connected_via, expires_at=aware(account.expires_at),
        refreshable=account.refresh_token_enc is not None
        or account.platform in (Platform.FACEBOOK, Platform.INSTAGRAM),
        last_error=account.last_error, updated_at=aware(account.updated_at) or utcnow(),
        refresh_expires_at=aware(account.refresh_expires_at), refreshed_at=aware(account.refreshed_at),
        meta=dict(account.meta or {}),
    )


def _platform(value: str) -> Platform:
    try:
        return Platform(value)
    except ValueError:
        known = ", ".join(p.value for p in Platform)
        raise InvalidInput(f"unknown platform {value!r}; choose one of: {known}") from None


def save_account(found: oauth.DiscoveredAccount, *, connected_via: str = "oauth") -> AccountView:
    """Insert or update (by platform and external id) with the tokens encrypted."""
    tokens = found.tokens
    refresh_expires_at = tokens.refresh_expires_at
    if found.platform == Platform.YOUTUBE and tokens.refresh_token and get_settings().google_consent_testing:
        # A consent screen in "Testing" issues refresh tokens that die after 7 days
        # (https://developers.google.com/identity/protocols/oauth2#expiration).
        refresh_expires_at = utcnow() + GOOGLE_TESTING_REFRESH_LIFETIME
    values: dict[str, Any] = dict(
        name=found.name, access_token_enc=encrypt_token(tokens.access_token),
        refresh_token_enc=encrypt_token(tokens.refresh_token) if tokens.refresh_token else None,
        expires_at=tokens.expires_at, refresh_expires_at=refresh_expires_at, scopes=tokens.scope,
        connected_via=connected_via, status=CONNECTED, last_error=None, meta=found.meta, updated_at=utcnow(),
        refreshed_at=utcnow(),
    )
    with session_scope() as session:
        account = session.execute(select(SocialAccount).where(
            col(SocialAccount.platform) == found.platform, col(SocialAccount.external_id) == found.external_id)
        ).scalar_one_or_none()
        if account is None:
            account = SocialAccount(platform=found.platform, external_id=found.external_id, **values)
            session.add(account)
        else:
            for name, value in values.items():
                setattr(account, name, value)
        session.flush()
        return _view(account)


def connect_from_callback(provider_name: str, *, code: str, state: str) -> list[AccountView]:
    return [save_account(found) for found in oauth.complete_authorization(provider_name, code=code, state=state)]


def connect_manually(*, platform: str, external_id: str, access_token: str, name: str = "",
                     refresh_token: str = "", expires_in_s: int | None = None, page_id: str = "") -> AccountView:
    """The fallback when OAuth cannot be used: a token pasted from the platform's developer tools."""
    platform = _platform(platform)
    external_id, access_token = external_id.strip(), access_token.strip()
    if not external_id:
        raise InvalidInput("the account id is required (Instagram user id, Page id, channel id or TikTok open_id)")
    if len(access_token) < 8 or any(c.isspace() for c in access_token):
        raise InvalidInput("the access token looks wrong (empty, too short or containing spaces)")
    if expires_in_s is not None and expires_in_s <= 0:
        raise InvalidInput("expires in must be a positive number of seconds")
    tokens = oauth.TokenSet(
        access_token=access_token, refresh_token=refresh_token.strip() or None,
        expires_at=utcnow() + timedelta(seconds=expires_in_s) if expires_in_s else None,
    )
    meta = {"page_id": page_id.strip()} if page_id.strip() else {}
    return save_account(oauth.DiscoveredAccount(platform, external_id, name.strip(), tokens, meta),
                        connected_via="manual")


def list_accounts(platform: str | None = None) -> list[AccountView]:
    query = select(SocialAccount).order_by(col(SocialAccount.platform), col(SocialAccount.name), col(SocialAccount.id))
    if platform:
        query = query.where(col(SocialAccount.platform) == platform)
    with session_scope() as session:
        return [_view(a) for a in session.execute(query.limit(500)).scalars()]


def get_account(account_id: int) -> AccountView:
    return _view(get_or_raise(SocialAccount, account_id, f"social account {account_id}"))


def default_account(platform: str) -> AccountView | None:
    """The account a post goes to when it names none: the platform's only (or first) connected one."""
    connected = [a for a in list_accounts(platform) if a.status == CONNECTED]
    return connected[0] if connected else None


def update_meta(account_id: int, values: dict[str, Any]) -> None:
    """Merge what the platform said about an account (never a token) into its meta; a gone account is skipped."""
    with session_scope() as session:
        account = session.get(SocialAccount, account_id, with_for_update=True)
        if account is not None:
            account.meta = {**(account.meta or {}), **values}  # a new dict: the JSON column sees the change
            account.updated_at = utcnow()


def disconnect(account_id: int) -> None:
    """Forget an account and its tokens; posts that named it fall back to the platform's default."""
    with session_scope() as session:
        account = get_or_raise(SocialAccount, account_id, f"social account {account_id}")
        busy = session.execute(select(col(Post.id)).where(
            col(Post.account_id) == account_id, col(Post.status) == PostStatus.PUBLISHING).limit(1)).first()
        if busy:
            raise InvalidInput("a post is being published with this account; try again when it finishes")
        session.execute(update(Post).where(col(Post.account_id) == account_id).values(account_id=None))
        session.delete(account)


# --- token health ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenHealth:
    """What the Social accounts page and the calendar show about an account's tokens."""

    state: str  # ok | expiring | unusable
    valid_until: datetime | None  # the access token
    renewable_until: datetime | None  # after this nobody can renew it: refresh-token or Meta user-token expiry
    last_refresh: datetime | None
    last_error: str | None
    usable_until: datetime | None  # None: no known end
    warnings: tuple[str, ...] = ()


def _renewable_until(account: AccountView) -> datetime | None:
    if account.refresh_expires_at is not None:
        return account.refresh_expires_at
    if account.platform in (Platform.FACEBOOK, Platform.INSTAGRAM):
        # Page tokens come from the long-lived user token: renewing them needs it valid (60 days).
        raw = account.meta.get("user_token_expires_at")
        try:
            return aware(datetime.fromisoformat(str(raw))) if raw else None
        except ValueError:
            return None
    return None


def _usable_until(account: AccountView) -> datetime | None:
    """When posting with this account stops working unless someone reconnects it."""
    if account.platform in (Platform.FACEBOOK, Platform.INSTAGRAM) and account.expires_at is None:
        return None  # a Page token made from a long-lived user token does not expire
    if not account.refreshable:
        return account.expires_at
    return _renewable_until(account)


def token_health(account: AccountView, *, now: datetime | None = None) -> TokenHealth:
    now = now or utcnow()
    usable_until = _usable_until(account)
    renewable = _renewable_until(account)
    warnings = []
    if account.status == NEEDS_RECONNECT:
        state = "unusable"
        warnings.append(f"reconnect: {account.last_error or 'the platform refused the token'}")
    elif usable_until is not None and usable_until <= now:
        state = "unusable"
        warnings.append("the token has expired and cannot be renewed: reconnect the account")
    elif usable_until is not None and usable_until - now <= WARN_AHEAD:
        state = "expiring"
        days = max(0, (usable_until - now).days)
        warnings.append(f"stops working in {days} day(s) unless reconnected")
    else:
        state = "ok"
    if (account.platform == Platform.YOUTUBE and account.refreshable and account.refresh_expires_at is not None
            and get_settings().google_consent_testing):
        warnings.append("Google's consent screen is in Testing mode: refresh tokens last 7 days; publish the "
                        "app to Production to keep the channel connected")
    return TokenHealth(state=state, valid_until=account.expires_at, renewable_until=renewable,
                       last_refresh=account.refreshed_at, last_error=account.last_error, usable_until=usable_until,
                       warnings=tuple(warnings))


def unusable_at(account: AccountView, at: datetime) -> str | None:
    """Why this account will not be able to post at ``at`` (None when it will, as far as we know)."""
    if account.status == NEEDS_RECONNECT:
        return f"it needs to be reconnected ({account.last_error or 'its token was refused'})"
    usable_until = _usable_until(account)
    if usable_until is not None and usable_until < at:
        return (f"its token stops working {usable_until.isoformat(timespec='minutes')}, before this post; "
                "reconnect it first")
    return None


def mark_needs_reconnect(account_id: int, reason: str) -> None:
    with session_scope() as session:
        session.execute(update(SocialAccount).where(col(SocialAccount.id) == account_id).values(
            status=NEEDS_RECONNECT, last_error=reason[:1000], updated_at=utcnow()))


@dataclass(frozen=True)
class AccountCredentials:
    account_id: int
    platform: str
    external_id: str
    access_token: str
    meta: dict[str, Any]

    def __repr__(self) -> str:  # never print a token
        return f"AccountCredentials(account_id={self.account_id}, platform={self.platform!r})"


def _expiring(account: SocialAccount) -> bool:
    expires = aware(account.expires_at)
    margin = timedelta(seconds=get_settings().token_refresh_margin_s)
    return expires is not None and expires - margin <= utcnow()


def refresh_account(account_id: int) -> AccountView:
    """Renew the account's access token now; a refusal marks it as needing a reconnect."""
    account = get_or_raise(SocialAccount, account_id, f"social account {account_id}")
    provider = oauth.provider_for(account.platform)
    if not oauth.is_configured(provider):
        raise InvalidInput(f"cannot refresh: {provider.label} is not configured (set "
                           f"STUDIO_{provider.client_id_setting.upper()} and "
                           f"STUDIO_{provider.client_secret_setting.upper()}); or paste a new token")
    refresh = decrypt_token(account.refresh_token_enc) if account.refresh_token_enc else None
    access = decrypt_token(account.access_token_enc)
    try:
        tokens = oauth.refresh_tokens(provider, refresh_token=refresh, access_token=access)
    except oauth.OAuthError as error:
        mark_needs_reconnect(account_id, str(error))
        raise
    with session_scope() as session:
        session.execute(update(SocialAccount).where(col(SocialAccount.id) == account_id).values(
            access_token_enc=encrypt_token(tokens.access_token),
            refresh_token_enc=encrypt_token(tokens.refresh_token) if tokens.refresh_token else None,
            expires_at=tokens.expires_at,
            refresh_expires_at=tokens.refresh_expires_at,
            status=CONNECTED, last_error=None, refreshed_at=utcnow(), updated_at=utcnow(),
        ))
    _logger.info("refreshed the token of social account %s (%s)", account_id, account.platform)
    return get_account(account_id)


def credentials(account_id: int, *, force_refresh: bool = False) -> AccountCredentials:
    """Decrypted credentials for a worker, refreshed first when they expire within the margin."""
    account = get_or_raise(SocialAccount, account_id, f"social account {account_id}")
    # Without the provider's app settings a token cannot be refreshed: use it while it lasts.
    needs_refresh = force_refresh or (_expiring(account)
                                      and oauth.is_configured(oauth.provider_for(account.platform)))
    if account.status == NEEDS_RECONNECT and not force_refresh:
        raise InvalidInput(f"the {account.platform} account {account.name or account.external_id} needs "
                           f"to be reconnected: {account.last_error or 'its token was refused'}")
    if needs_refresh:
        refresh_account(account_id)
    account = get_or_raise(SocialAccount, account_id, f"social account {account_id}")
    return AccountCredentials(account.id or 0, account.platform, account.external_id,
                              decrypt_token(account.access_token_enc), dict(account.meta))


def reencrypt_tokens(*, batch: int = 200) -> int:
    """After a key rotation: re-encrypt every stored token with the first configured key."""

    cipher = get_cipher()
    done = 0
    last_id = 0
    while True:
        with session_scope() as session:
            accounts = list(session.execute(select(SocialAccount).where(col(SocialAccount.id) > last_id)
                                            .order_by(col(SocialAccount.id)).limit(batch)).scalars())
            for account in accounts:
                account.access_token_enc = cipher.rotate(account.access_token_enc)
                if account.refresh_token_enc:
                    account.refresh_token_enc = cipher.rotate(account.refresh_token_enc)
        if not accounts:
            return done
        done += len(accounts)
        last_id = accounts[-1].id or last_id


def refresh_expiring(*, limit: int = 20) -> int:
    """Refresh connected accounts whose token expires within the margin (the scheduler calls this), so
    an account unused for weeks is still valid when its next post is due."""
    soon = utcnow() + timedelta(seconds=get_settings().token_refresh_margin_s)
    platforms = [p for p in Platform if oauth.is_configured(oauth.provider_for(p))]
    if not platforms:
        return 0
    with session_scope() as session:
        due = session.execute(select(col(SocialAccount.id)).where(
            col(SocialAccount.status) == CONNECTED, col(SocialAccount.platform).in_(platforms),
            col(SocialAccount.expires_at).is_not(None), col(SocialAccount.expires_at) < soon)
            .order_by(col(SocialAccount.expires_at)).limit(limit)).scalars().all()
    refreshed = 0
    for account_id in due:
        try:
            refresh_account(account_id)
            refreshed += 1
        except Exception:  # marked needs-reconnect by refresh_account when the provider refused
            _logger.warning("could not refresh the token of social account %s", account_id, exc_info=True)
    return refreshed
