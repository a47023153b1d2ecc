"""Connecting social accounts: OAuth 2.0 authorization code + PKCE (S256) + a one-time ``state``.

Three providers cover the four platforms: Facebook Login (Facebook Pages and the Instagram
Business/Creator accounts linked to them), Google (YouTube) and TikTok. The flow:

1. :func:`start_authorization` makes a PKCE verifier and an unguessable ``state``, stores the
   state *hashed* and the verifier *encrypted*, and returns the provider's consent URL.
2. The provider redirects the browser to ``<public_url>/api/oauth/callback/<provider>`` (the
   exact URI to register with the app); :func:`complete_authorization` consumes the state once
   (expired, unknown or replayed states are refused), exchanges the code with the verifier,
   discovers the accounts the token can post as, and stores their tokens encrypted.
3. :func:`refresh_tokens` renews an access token before it expires (``core.publishing.social_accounts``).

Only protocol lives here (httpx, no platform SDKs); posting is in ``workers/social``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from sqlalchemy import delete, update
from sqlmodel import col

from core.config import Settings, get_settings
from core.db import affected_rows, session_scope
from core.errors import InvalidInput, StudioError, TransientError
from core.infra.crypto import decrypt_token, encrypt_token
from core.infra.http_retry import RetryPolicy, send_with_retries
from core.models import OAuthState, Platform, utcnow


class OAuthError(StudioError):
    """The provider refused (a bad code, a wrong redirect URI, a revoked refresh token…)."""


@dataclass(frozen=True)
class Provider:
    name: str  # meta | google | tiktok
    label: str
    platforms: tuple[str, ...]
    client_id_setting: str
    client_secret_setting: str
    scopes: tuple[str, ...]
    client_id_param: str = "client_id"  # TikTok calls it client_key
    scope_separator: str = " "
    # The code exchange's grant_type; Meta documents none (its form is client_id, redirect_uri,
    # client_secret, code: https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow#confirm).
    code_grant_type: str | None = "authorization_code"
    extra_authorize_params: dict[str, str] = field(default_factory=dict)

    def client_id(self, settings: Settings) -> str:
        return getattr(settings, self.client_id_setting)

    def client_secret(self, settings: Settings) -> str:
        return getattr(settings, self.client_secret_setting).get_secret_value()

    def authorize_url(self, settings: Settings) -> str:
        return {"meta": settings.facebook_dialog_url, "google": settings.google_auth_url,
                "tiktok": settings.tiktok_auth_url}[self.name]

    def token_url(self, settings: Settings) -> str:
        return {"meta": f"{settings.graph_api_url}/oauth/access_token", "google": settings.google_token_url,
                "tiktok": f"{settings.tiktok_api_url}/oauth/token/"}[self.name]


PROVIDERS: dict[str, Provider] = {
    "meta": Provider(
        "meta", "Facebook Login (Facebook Pages and Instagram)", (Platform.FACEBOOK, Platform.INSTAGRAM),
        "meta_app_id", "meta_app_secret",
        ("pages_show_list", "pages_read_engagement", "pages_manage_posts", "business_management",
         "instagram_basic", "instagram_content_publish"),
        scope_separator=",", code_grant_type=None,
    ),
    "google": Provider(
        "google", "Google (YouTube)", (Platform.YOUTUBE,), "google_client_id", "google_client_secret",
        ("https://www.googleapis.com/auth/youtube.upload", "https://www.googleapis.com/auth/youtube.readonly"),
        # offline + consent: Google only returns a refresh token on a consent screen.
        extra_authorize_params={"access_type": "offline", "prompt": "consent", "include_granted_scopes": "true"},
    ),
    "tiktok": Provider(
        "tiktok", "TikTok", (Platform.TIKTOK,), "tiktok_client_key", "tiktok_client_secret",
        # username (for the post's permalink) needs user.info.profile; user.info.basic only covers open_id,
        # display_name and avatars (https://developers.tiktok.com/bulletin/user-info-scope-migration).
        ("user.info.basic", "user.info.profile", "video.publish", "video.upload"), client_id_param="client_key",
        scope_separator=",",
    ),
}


def provider_for(platform: str) -> Provider:
    for provider in PROVIDERS.values():
        if platform in provider.platforms:
            return provider
    raise InvalidInput(f"unknown platform {platform!r}; choose one of: {', '.join(p.value for p in Platform)}")


def get_provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise InvalidInput(f"unknown OAuth provider {name!r}") from None


def redirect_uri(provider: Provider, settings: Settings | None = None) -> str:
    """The exact callback URI to register in the provider's app console."""
    settings = settings or get_settings()
    return f"{settings.public_url.rstrip('/')}/api/oauth/callback/{provider.name}"


def is_configured(provider: Provider, settings: Settings | None = None) -> bool:
    settings = settings or get_settings()
    return bool(provider.client_id(settings) and provider.client_secret(settings))


def pkce_pair(*, hex_challenge: bool = False) -> tuple[str, str]:
    """A PKCE code verifier (RFC 7636: 43–128 unreserved characters) and its S256 challenge.

    RFC 7636 encodes the SHA-256 digest base64url; TikTok's Login Kit for Desktop expects it
    hex-encoded instead (https://developers.tiktok.com/doc/login-kit-desktop/; a base64url challenge
    there ends in "Code verifier or code challenge is invalid").
    """
    verifier = secrets.token_urlsafe(64)[:96]
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = digest.hex() if hex_challenge else base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return verifier, challenge


def tiktok_redirect_problem(callback: str, app_type: str) -> str | None:
    """Why TikTok would refuse this redirect URI for the configured app type (None when it is fine).

    Desktop apps: only localhost / 127.0.0.1 with a port, http or https
    (https://developers.tiktok.com/doc/login-kit-desktop/). Web apps: https only
    (https://developers.tiktok.com/doc/login-kit-web).
    """
    parts = urlsplit(callback)
    if app_type == "web":
        if parts.scheme != "https":
            return ("a TikTok Web app accepts only https redirect URIs; set STUDIO_PUBLIC_URL to the studio's "
                    "https address, or register a Desktop app and set STUDIO_TIKTOK_APP_TYPE=desktop")
        return None
    if parts.hostname not in ("localhost", "127.0.0.1") or not parts.port:
        return ("a TikTok Desktop app accepts only http(s)://localhost:PORT or 127.0.0.1:PORT redirect URIs; "
                "run the studio on a loopback public URL, or register a Web app and set STUDIO_TIKTOK_APP_TYPE=web")
    return None


def _hash_state(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


# --- 1. the consent URL ------------------------------------------------------------------------------------


def start_authorization(platform: str) -> str:
    """Store a one-time state and PKCE verifier; return the URL that asks the user's consent."""
    settings = get_settings()
    provider = provider_for(platform)
    if not is_configured(provider, settings):
        raise InvalidInput(
            f"{provider.label} is not configured: set STUDIO_{provider.client_id_setting.upper()} and "
            f"STUDIO_{provider.client_secret_setting.upper()}, and register {redirect_uri(provider, settings)} "
            "as a redirect URI in the app console"
        )
    callback = redirect_uri(provider, settings)
    desktop = provider.name == "tiktok" and settings.tiktok_app_type == "desktop"
    if provider.name == "tiktok" and (problem := tiktok_redirect_problem(callback, settings.tiktok_app_type)):
        raise InvalidInput(f"TikTok would refuse the redirect URI {callback}: {problem}")
    verifier, challenge = pkce_pair(hex_challenge=desktop)
    state = secrets.token_urlsafe(32)
    with session_scope() as session:
        session.execute(delete(OAuthState).where(
            col(OAuthState.created_at) < utcnow() - timedelta(seconds=settings.oauth_state_ttl_s)))
        session.add(OAuthState(state_hash=_hash_state(state), platform=provider.name,
                               code_verifier_enc=encrypt_token(verifier), redirect_uri=callback))
    params = {
        provider.client_id_param: provider.client_id(settings),
        "redirect_uri": callback,
        "response_type": "code",
        "scope": provider.scope_separator.join(provider.scopes),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **provider.extra_authorize_params,
    }
    return f"{provider.authorize_url(settings)}?{urlencode(params)}"


def _consume_state(provider: Provider, state: str) -> tuple[str, str]:
    """The verifier and redirect URI of a pending authorization; each state works once, within its TTL."""
    settings = get_settings()
    if not state:
        raise InvalidInput("the callback has no state; start the connection again from the Social accounts page")
    state_hash = _hash_state(state)
    with session_scope() as session:
        claimed = affected_rows(session.execute(
            update(OAuthState)
            .where(col(OAuthState.state_hash) == state_hash, col(OAuthState.platform) == provider.name,
                   col(OAuthState.used_at).is_(None),
                   col(OAuthState.created_at) >= utcnow() - timedelta(seconds=settings.oauth_state_ttl_s))
            .values(used_at=utcnow())
        ))
        row = session.get(OAuthState, state_hash) if claimed else None
        if row is None:
            raise InvalidInput("unknown, expired or already used state; start the connection again")
        return decrypt_token(row.code_verifier_enc), row.redirect_uri


def abandon_authorization(provider_name: str, state: str) -> bool:
    """The provider sent the user back with an error (consent refused): spend the state anyway, so the
    same link cannot be completed later. True when the state was one we issued (and still pending)."""
    try:
        _consume_state(get_provider(provider_name), state)
    except InvalidInput:
        return False  # unknown, expired or already used: nothing to spend
    return True


# The error codes a provider may send back (RFC 6749 §4.1.2.1, OpenID Connect, TikTok), each with our own
# words: anyone can call the callback with any error text, so only these fixed messages reach the page, and
# the provider's description only when the state proves the request came from a connection we started.
CONSENT_ERRORS: dict[str, str] = {
    "access_denied": "the account declined the requested permissions",
    "user_cancelled": "the sign-in was cancelled",
    "invalid_request": "the provider found the request malformed",
    "unauthorized_client": "the app is not allowed to ask for this kind of access",
    "unsupported_response_type": "the provider does not support this kind of sign-in",
    "invalid_scope": "the provider refused the requested permissions (scopes)",
    "server_error": "the provider had an internal error; try again",
    "temporarily_unavailable": "the provider is temporarily unavailable; try again later",
    "login_required": "the account must sign in first",
    "consent_required": "the account must give its consent first",
    "interaction_required": "the provider needs the account to act first",
}
_MAX_PROVIDER_TEXT = 200


def consent_refused_message(code: str, description: str, *, state_valid: bool) -> str:
    """What the page shows for a callback that came back with ``error=code``."""
    message = f"consent refused: {CONSENT_ERRORS.get(code, 'the provider refused the connection')}"
    if state_valid and description and description != code:
        message += f" (the provider said: {description[:_MAX_PROVIDER_TEXT]})"
    return message


def sign_result(fields: dict[str, str], *, settings: Settings | None = None) -> str:
    """A signature over the callback's result, carried in the redirect to the Accounts page, so the page shows
    only what the callback wrote, never what a crafted link puts in its query string."""
    key = (settings or get_settings()).signing_key.get_secret_value().encode()
    body = "\n".join(f"{name}={value}" for name, value in sorted(fields.items())).encode()
    return hmac.new(key, b"oauth-result\n" + body, hashlib.sha256).hexdigest()


def result_is_authentic(fields: dict[str, str], signature: str, *, settings: Settings | None = None) -> bool:
    return hmac.compare_digest(sign_result(fields, settings=settings), signature)


# --- 2. tokens ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None = None
    expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    scope: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. TikTok's open_id

    def __repr__(self) -> str:  # never print a token
        refresh = self.refresh_token is not None
        return f"TokenSet(expires_at={self.expires_at!r}, scope={self.scope!r}, refresh={refresh})"


def _http(settings: Settings) -> httpx.Client:
    return httpx.Client(timeout=settings.publish_http_timeout_s)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    error = body.get("error")
    if isinstance(error, dict):  # Graph API / TikTok shape
        return str(error.get("message") or error.get("code") or error)
    description = body.get("error_description") or body.get("message") or ""
    return f"{error}: {description}".strip(": ") if error else f"HTTP {response.status_code}"


def _token_request(provider: Provider, data: dict[str, str], *, idempotent: bool) -> dict[str, Any]:
    settings = get_settings()
    form = {provider.client_id_param: provider.client_id(settings),
            "client_secret": provider.client_secret(settings), **data}
    with _http(settings) as http:
        sent = send_with_retries(
            lambda: http.post(provider.token_url(settings), data=form,
                              headers={"Accept": "application/json"}),
            policy=RetryPolicy(max_retries=settings.publish_max_retries), idempotent=idempotent,
        )
    response = sent.response
    try:
        body = response.json()
    except ValueError:
        body = {}
    # TikTok answers errors with HTTP 200 and an "error" field; the others use 4xx.
    if response.status_code >= 400 or "access_token" not in body:
        raise OAuthError(f"{provider.label} refused the token request: {_error_text(response)}")
    return body


def _token_set(body: dict[str, Any]) -> TokenSet:
    now = utcnow()

    def later(seconds: Any) -> datetime | None:
        return now + timedelta(seconds=int(seconds)) if seconds else None

    known = {"access_token", "refresh_token", "expires_in", "refresh_expires_in", "scope", "token_type"}
    return TokenSet(
        access_token=body["access_token"], refresh_token=body.get("refresh_token"),
        expires_at=later(body.get("expires_in")), refresh_expires_at=later(body.get("refresh_expires_in")),
        scope=str(body.get("scope", "")), extra={k: v for k, v in body.items() if k not in known},
    )


def exchange_code(provider: Provider, *, code: str, verifier: str, callback: str) -> TokenSet:
    # A code works once: a 5xx may have consumed it, so it is not retried (idempotent=False).
    data = {"code": code, "redirect_uri": callback, "code_verifier": verifier}
    if provider.code_grant_type:
        data["grant_type"] = provider.code_grant_type
    body = _token_request(provider, data, idempotent=False)
    tokens = _token_set(body)
    if provider.name == "meta":
        tokens = _meta_long_lived(provider, tokens.access_token)
    return tokens


def _meta_long_lived(provider: Provider, token: str) -> TokenSet:
    """Facebook has no refresh tokens: a short-lived user token is exchanged for a 60-day one."""
    return _token_set(_token_request(provider, {"grant_type": "fb_exchange_token", "fb_exchange_token": token},
                                     idempotent=True))


def refresh_tokens(provider: Provider, *, refresh_token: str | None, access_token: str) -> TokenSet:
    """A renewed token set. Facebook renews the (still valid) long-lived token itself."""
    if provider.name == "meta":
        return _meta_long_lived(provider, access_token)
    if not refresh_token:
        raise OAuthError(f"{provider.label} gave no refresh token; reconnect the account")
    tokens = _token_set(_token_request(provider, {"grant_type": "refresh_token", "refresh_token": refresh_token},
                                       idempotent=True))
    if tokens.refresh_token is None:  # Google keeps the old refresh token valid and sends none back
        tokens = TokenSet(tokens.access_token, refresh_token, tokens.expires_at, tokens.refresh_expires_at,
                          tokens.scope, tokens.extra)
    return tokens


# --- 3. which accounts a token can post as ------------------------------------------------------------------


@dataclass(frozen=True)
class DiscoveredAccount:
    platform: str
    external_id: str
    name: str
    tokens: TokenSet
    meta: dict[str, Any] = field(default_factory=dict)


def _get_json(url: str, *, token: str, params: dict[str, str] | None = None, scheme: str = "Bearer") -> dict[str, Any]:
    # The token goes in a header, never the query string: httpx logs every request URL at INFO.
    settings = get_settings()
    headers = {"Authorization": f"{scheme} {token}"}
    query = dict(params or {})
    with _http(settings) as http:
        response = send_with_retries(lambda: http.get(url, params=query, headers=headers),
                                     policy=RetryPolicy(max_retries=settings.publish_max_retries)).response
    if response.status_code >= 400:
        raise OAuthError(f"could not read the connected account: {_error_text(response)}")
    return response.json()


def _discover_meta(tokens: TokenSet) -> list[DiscoveredAccount]:
    settings = get_settings()
    body = _get_json(f"{settings.graph_api_url}/me/accounts", token=tokens.access_token, scheme="OAuth",
                     params={"fields": "id,name,access_token,instagram_business_account{id,username}"})
    found = []
    for page in body.get("data", []):
        # A Page token made from a long-lived user token does not expire.
        page_tokens = TokenSet(access_token=page["access_token"], scope=tokens.scope)
        found.append(DiscoveredAccount(Platform.FACEBOOK, str(page["id"]), page.get("name", ""), page_tokens,
                                       {"user_token_expires_at": str(tokens.expires_at or "")}))
        instagram = page.get("instagram_business_account")
        if instagram:
            found.append(DiscoveredAccount(
                Platform.INSTAGRAM, str(instagram["id"]), instagram.get("username", ""), page_tokens,
                {"page_id": str(page["id"]), "username": instagram.get("username", "")},
            ))
    return found


def _discover_google(tokens: TokenSet) -> list[DiscoveredAccount]:
    settings = get_settings()
    body = _get_json(f"{settings.youtube_api_url}/channels", token=tokens.access_token,
                     params={"part": "snippet", "mine": "true"})
    return [DiscoveredAccount(Platform.YOUTUBE, str(item["id"]), item.get("snippet", {}).get("title", ""), tokens)
            for item in body.get("items", [])]


def _discover_tiktok(tokens: TokenSet) -> list[DiscoveredAccount]:
    settings = get_settings()
    body = _get_json(f"{settings.tiktok_api_url}/user/info/", token=tokens.access_token,
                     params={"fields": "open_id,display_name,username"})
    user = body.get("data", {}).get("user", {})
    open_id = str(user.get("open_id") or tokens.extra.get("open_id", ""))
    if not open_id:
        raise OAuthError("TikTok did not say which account was connected (no open_id)")
    return [DiscoveredAccount(Platform.TIKTOK, open_id, user.get("display_name", ""), tokens,
                              {"username": user.get("username", "")})]


DISCOVERERS: dict[str, Callable[[TokenSet], list[DiscoveredAccount]]] = {
    "meta": _discover_meta, "google": _discover_google, "tiktok": _discover_tiktok,
}


def complete_authorization(provider_name: str, *, code: str, state: str) -> list[DiscoveredAccount]:
    """The callback's work: one-time state → code exchange with the PKCE verifier → accounts found."""
    provider = get_provider(provider_name)
    verifier, callback = _consume_state(provider, state)
    if not code:
        raise InvalidInput("the provider sent no authorization code")
    try:
        tokens = exchange_code(provider, code=code, verifier=verifier, callback=callback)
        accounts = DISCOVERERS[provider.name](tokens)
    except TransientError as error:  # a 5xx or timeout (OutcomeUnknown, RetriesExhausted): the code may be spent
        raise OAuthError(f"{provider.label} did not complete the connection; start the connection again "
                         f"(an authorization code works once): {error}") from error
    if not accounts:
        raise OAuthError(f"{provider.label} connected, but the login has no account to post as "
                         "(no Page, Instagram professional account or channel)")
    return accounts
