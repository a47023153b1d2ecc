"""Connecting social accounts: OAuth 2.0 code + PKCE (S256) + a one-time state, tokens encrypted at rest
and refreshed before they expire, all against the local fake providers (real HTTP, no network)."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select, text, update
from starlette.applications import Starlette
from starlette.testclient import TestClient

from api.routes import api_routes
from core.config import reload_settings
from core.db import session_scope
from core.errors import InvalidInput
from core.infra.crypto import decrypt_token, encrypt_token
from core.models import OAuthState, SocialAccount, utcnow
from core.publishing import social_accounts
from core.publishing.oauth import OAuthError, complete_authorization, start_authorization
from tests.fakes.google import FakeGoogle
from tests.fakes.meta import FakeMeta
from tests.fakes.server import FakeServer, Fault
from tests.fakes.tiktok import FakeTikTok

pytestmark = pytest.mark.clock  # also run at awkward moments (tests/clock.py): token expiry and refresh

PUBLIC_URL = "https://studio.example.test"
PROVIDERS = ("meta", "google", "tiktok")
PLATFORM_OF = {"meta": "facebook", "google": "youtube", "tiktok": "tiktok"}  # what a user clicks "connect" on
TOKEN_ROUTE = {"meta": "oauth_token", "google": "token", "tiktok": "token"}
CLIENT_ID_PARAM = {"meta": "client_id", "google": "client_id", "tiktok": "client_key"}


def callback_uri(provider: str) -> str:
    return f"{PUBLIC_URL}/api/oauth/callback/{provider}"


def _settings_for(provider: str, fake: FakeServer) -> dict[str, str]:
    if provider == "meta":
        assert isinstance(fake, FakeMeta)
        return {"graph_api_url": f"{fake.url}/v21.0", "facebook_dialog_url": f"{fake.url}/v21.0/dialog/oauth",
                "meta_app_id": fake.oauth.client_id, "meta_app_secret": fake.oauth.client_secret}
    assert isinstance(fake, FakeGoogle | FakeTikTok)
    return fake.settings()


@pytest.fixture
def fake_provider(studio, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeServer]]:
    """Start a provider's fake and point the studio at it: ``fake_provider("google", redirect_uris=…)``."""
    started: list[FakeServer] = []
    monkeypatch.setenv("STUDIO_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("STUDIO_PUBLISH_HTTP_TIMEOUT_S", "10")

    def start(provider: str, *, redirect_uris: set[str] | None = None, **options: Any) -> FakeServer:
        kind = {"meta": FakeMeta, "google": FakeGoogle, "tiktok": FakeTikTok}[provider]
        if provider == "tiktok":  # PUBLIC_URL is https: only a TikTok Web app may redirect there
            options.setdefault("app_type", "web")
        fake = kind(redirect_uris=redirect_uris or {callback_uri(provider)}, **options).start()
        started.append(fake)
        for name, value in _settings_for(provider, fake).items():
            monkeypatch.setenv(f"STUDIO_{name.upper()}", str(value))
        reload_settings()
        return fake

    reload_settings()
    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def client(studio) -> Iterator[TestClient]:
    with TestClient(Starlette(routes=api_routes())) as test_client:
        yield test_client


# --- helpers --------------------------------------------------------------------------------------------


def _query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def consent(consent_url: str) -> httpx.Response:
    """The browser at the provider: the fake consents at once and redirects (or refuses with a 4xx)."""
    return httpx.get(consent_url, follow_redirects=False, timeout=10)


def back_to_studio(client: TestClient, location: str) -> httpx.Response:
    """The browser following the provider's redirect to our callback (the 303 is not followed)."""
    assert location.startswith(f"{PUBLIC_URL}/api/oauth/callback/"), location
    return client.get(location.removeprefix(PUBLIC_URL), follow_redirects=False)


def provider_redirect(provider: str) -> str:
    """Start a connection and go through consent; the callback URL the provider sends the browser to."""
    answer = consent(start_authorization(PLATFORM_OF[provider]))
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(callback_uri(provider) + "?")
    return location


def connect(client: TestClient, provider: str) -> httpx.Response:
    return back_to_studio(client, provider_redirect(provider))


def redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(f"{PUBLIC_URL}/accounts?"), location
    return _query(location)


def state_row(state: str) -> OAuthState:
    with session_scope() as session:
        row = session.get(OAuthState, hashlib.sha256(state.encode()).hexdigest())
        assert row is not None, "the state was not stored (hashed)"
        session.expunge(row)
        return row


def account_rows() -> list[SocialAccount]:
    with session_scope() as session:
        rows = list(session.execute(select(SocialAccount).order_by(SocialAccount.id)).scalars())
        for row in rows:
            session.expunge(row)
        return rows


def account_count() -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(SocialAccount)).scalar_one()


def raw_rows(table: str) -> list[str]:
    """Every row of a table, all columns as text, read with plain SQL (what a database dump shows)."""
    with session_scope() as session:
        rows = session.execute(text(f"SELECT * FROM {table}")).all()  # noqa: S608 (a fixed table name)
    return [" | ".join(str(value) for value in row) for row in rows]


def secrets_seen_by(fake: FakeServer) -> set[str]:
    """Every token and verifier the fake received: in forms, queries and Authorization headers."""
    found: set[str] = set()
    for call in fake.calls:
        fields = dict(call.query)
        if call.method == "POST" and call.body:
            fields.update(call.form())
        for name in ("access_token", "refresh_token", "fb_exchange_token", "code_verifier", "code"):
            if fields.get(name):
                found.add(fields[name])
        _scheme, _, value = call.headers.get("authorization", "").partition(" ")
        if value.strip():
            found.add(value.strip())
    return found


def stored_secrets() -> set[str]:
    """The plaintext tokens of every stored account (decrypted)."""
    found = set()
    for row in account_rows():
        found.add(decrypt_token(row.access_token_enc))
        if row.refresh_token_enc:
            found.add(decrypt_token(row.refresh_token_enc))
    return found


def set_expiry(account_id: int, *, seconds_from_now: float) -> None:
    with session_scope() as session:
        session.execute(update(SocialAccount).where(SocialAccount.id == account_id).values(
            expires_at=utcnow() + timedelta(seconds=seconds_from_now)))


# --- the consent URL --------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_consent_url_asks_for_pkce_s256_with_the_exact_redirect_uri_and_a_state(fake_provider, provider):
    fake = fake_provider(provider)
    url = start_authorization(PLATFORM_OF[provider])
    params = _query(url)
    assert url.startswith(_settings_for(provider, fake)[
        {"meta": "facebook_dialog_url", "google": "google_auth_url", "tiktok": "tiktok_auth_url"}[provider]] + "?")
    assert params[CLIENT_ID_PARAM[provider]] == fake.oauth.client_id
    assert params["redirect_uri"] == callback_uri(provider)
    assert params["response_type"] == "code"
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 32
    row = state_row(params["state"])
    verifier = decrypt_token(row.code_verifier_enc)
    assert 43 <= len(verifier) <= 128
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert params["code_challenge"] == expected
    assert row.platform == provider and row.redirect_uri == callback_uri(provider) and row.used_at is None
    # Each start is a fresh state and verifier.
    again = _query(start_authorization(PLATFORM_OF[provider]))
    assert again["state"] != params["state"] and again["code_challenge"] != params["code_challenge"]


def test_google_consent_asks_for_offline_access_so_a_refresh_token_comes_back(fake_provider):
    fake_provider("google")
    params = _query(start_authorization("youtube"))
    assert params["access_type"] == "offline" and params["prompt"] == "consent"
    assert "youtube.upload" in params["scope"]


# --- the full round trip -----------------------------------------------------------------------------------


def test_connecting_meta_stores_the_facebook_page_and_its_instagram_account(fake_provider, client):
    meta = fake_provider("meta")
    assert isinstance(meta, FakeMeta)
    params = redirect_params(connect(client, "meta"))
    assert "oauth_error" not in params
    assert "Studio Test Page" in params["connected"] and "studio.test" in params["connected"]
    accounts = {a.platform: a for a in social_accounts.list_accounts()}
    assert set(accounts) == {"facebook", "instagram"}
    page, instagram = accounts["facebook"], accounts["instagram"]
    assert page.external_id == meta.page.id and page.name == "Studio Test Page"
    assert instagram.external_id == meta.page.ig_user_id and instagram.name == "studio.test"
    assert page.status == instagram.status == "connected" and page.connected_via == "oauth"
    creds = social_accounts.credentials(instagram.id)
    assert creds.meta["page_id"] == meta.page.id
    # The stored token is the Page token from /me/accounts, which the Graph API accepts for that Page.
    assert meta.oauth.subject_of(creds.access_token) == f"page:{meta.page.id}"
    # The short-lived user token was exchanged for a long-lived one (fb_exchange_token).
    grants = [call.form().get("grant_type") or call.query.get("grant_type") for call in meta.calls_to("oauth_token")]
    assert grants == [None, "fb_exchange_token"]  # Meta's code exchange has no grant_type


def test_connecting_google_stores_the_youtube_channel_with_a_refresh_token_and_expiry(fake_provider, client):
    google = fake_provider("google")
    params = redirect_params(connect(client, "google"))
    assert params["connected"] == "YouTube Shorts: Fake Channel"
    [channel] = social_accounts.list_accounts()
    assert channel.platform == "youtube" and channel.external_id == google.oauth.subject
    assert channel.refreshable
    assert channel.expires_at is not None
    assert timedelta(minutes=55) < channel.expires_at - utcnow() <= timedelta(hours=1)
    [row] = account_rows()
    assert row.refresh_token_enc and decrypt_token(row.refresh_token_enc).startswith("rt-")
    assert google.oauth.check_bearer(social_accounts.credentials(channel.id).access_token) == "ok"


def test_tiktok_user_info_refuses_username_without_the_profile_scope(fake_provider):
    # https://developers.tiktok.com/bulletin/user-info-scope-migration: username needs user.info.profile.
    tiktok = fake_provider("tiktok")
    assert isinstance(tiktok, FakeTikTok)
    basic_only = tiktok.oauth.grant(scope="user.info.basic,video.publish,video.upload").access_token
    answer = httpx.get(f"{tiktok.url}/v2/user/info/", params={"fields": "open_id,display_name,username"},
                       headers={"Authorization": f"Bearer {basic_only}"}, timeout=10)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "scope_not_authorized"
    answer = httpx.get(f"{tiktok.url}/v2/user/info/", params={"fields": "open_id,display_name"},
                       headers={"Authorization": f"Bearer {basic_only}"}, timeout=10)
    assert answer.status_code == 200


def test_tiktok_consent_asks_for_the_profile_scope_the_username_needs(fake_provider):
    fake_provider("tiktok")
    scopes = _query(start_authorization("tiktok"))["scope"].split(",")
    assert {"user.info.basic", "user.info.profile", "video.publish", "video.upload"} <= set(scopes)


LOOPBACK = "http://127.0.0.1:8501"


def test_a_tiktok_desktop_app_connects_from_a_loopback_url_with_a_hex_pkce_challenge(fake_provider, monkeypatch):
    # https://developers.tiktok.com/doc/login-kit-desktop/: loopback redirect with a port, hex SHA-256 challenge.
    callback = f"{LOOPBACK}/api/oauth/callback/tiktok"
    tiktok = fake_provider("tiktok", redirect_uris={callback}, app_type="desktop")
    monkeypatch.setenv("STUDIO_PUBLIC_URL", LOOPBACK)
    reload_settings()
    url = start_authorization("tiktok")
    challenge = _query(url)["code_challenge"]
    assert len(challenge) == 64 and set(challenge) <= set("0123456789abcdef")
    answer = consent(url)
    assert answer.status_code == 302, answer.text
    back = _query(answer.headers["location"])
    [account] = complete_authorization("tiktok", code=back["code"], state=back["state"])
    assert account.external_id == "openid-fake-0001" and account.meta["username"] == "fake.creator"
    [exchange] = tiktok.calls_to("token")
    assert exchange.form()["code_verifier"]


def test_the_tiktok_desktop_fake_refuses_a_base64url_challenge(fake_provider, monkeypatch):
    callback = f"{LOOPBACK}/api/oauth/callback/tiktok"
    tiktok = fake_provider("tiktok", redirect_uris={callback}, app_type="desktop")
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    answer = httpx.get(f"{tiktok.url}/v2/auth/authorize/", follow_redirects=False, timeout=10, params={
        "client_key": tiktok.oauth.client_id, "redirect_uri": callback, "response_type": "code", "state": "s",
        "code_challenge": challenge, "code_challenge_method": "S256", "scope": "user.info.basic"})
    code = _query(answer.headers["location"])["code"]
    refused = httpx.post(f"{tiktok.url}/v2/oauth/token/", timeout=10, data={
        "client_key": tiktok.oauth.client_id, "client_secret": tiktok.oauth.client_secret, "code": code,
        "grant_type": "authorization_code", "redirect_uri": callback, "code_verifier": verifier})
    assert refused.json()["error_description"] == "Code verifier or code challenge is invalid."


@pytest.mark.parametrize(("app_type", "public_url", "refusal"), [
    ("web", LOOPBACK, "accepts only https redirect URIs"),  # https://developers.tiktok.com/doc/login-kit-web
    ("desktop", PUBLIC_URL, "Desktop app accepts only"),  # …/login-kit-desktop/
])
def test_a_redirect_tiktok_would_refuse_for_the_app_type_is_refused_before_consent(
        fake_provider, monkeypatch, app_type, public_url, refusal):
    tiktok = fake_provider("tiktok", app_type=app_type)
    monkeypatch.setenv("STUDIO_PUBLIC_URL", public_url)
    reload_settings()
    with pytest.raises(InvalidInput, match=refusal):
        start_authorization("tiktok")
    assert isinstance(tiktok, FakeTikTok)
    answer = httpx.get(f"{tiktok.url}/v2/auth/authorize/", follow_redirects=False, timeout=10, params={
        "client_key": tiktok.oauth.client_id, "redirect_uri": f"{public_url}/api/oauth/callback/tiktok",
        "response_type": "code", "state": "s", "code_challenge": "c" * 43, "code_challenge_method": "S256"})
    assert answer.status_code == 400  # the fake refuses it the same way


def test_connecting_tiktok_stores_the_account_with_its_open_id_and_username(fake_provider, client):
    tiktok = fake_provider("tiktok")
    params = redirect_params(connect(client, "tiktok"))
    assert params["connected"] == "TikTok: Fake Creator"
    [account] = social_accounts.list_accounts()
    assert account.platform == "tiktok" and account.external_id == "openid-fake-0001"
    creds = social_accounts.credentials(account.id)
    assert creds.meta["username"] == "fake.creator"
    assert tiktok.oauth.check_bearer(creds.access_token) == "ok"
    assert account.refreshable and account.expires_at is not None
    [row] = account_rows()
    assert row.refresh_expires_at is not None


# Each provider's documented token requests, field by field: the code exchange and the renewal.
# Meta: https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow#confirm (no grant_type)
# + code_verifier (https://developers.facebook.com/docs/facebook-login/guides/advanced/oidc-token), and
# https://developers.facebook.com/docs/facebook-login/guides/access-tokens/get-long-lived;
# Google: https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code, #offline;
# TikTok: https://developers.tiktok.com/doc/oauth-user-access-token-management (client_key, not client_id).
DOCUMENTED_FORMS = {
    "meta": ({"client_id", "client_secret", "code", "redirect_uri", "code_verifier"},
             {"grant_type", "client_id", "client_secret", "fb_exchange_token"}),
    "google": ({"client_id", "client_secret", "code", "grant_type", "redirect_uri", "code_verifier"},
               {"client_id", "client_secret", "grant_type", "refresh_token"}),
    "tiktok": ({"client_key", "client_secret", "code", "grant_type", "redirect_uri", "code_verifier"},
               {"client_key", "client_secret", "grant_type", "refresh_token"}),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_studio_sends_exactly_the_documented_token_requests(fake_provider, client, provider):
    fake = fake_provider(provider)
    location = provider_redirect(provider)
    verifier = decrypt_token(state_row(_query(location)["state"]).code_verifier_enc)
    redirect_params(back_to_studio(client, location))
    account = social_accounts.list_accounts()[0]
    social_accounts.credentials(account.id, force_refresh=True)

    calls = fake.calls_to(TOKEN_ROUTE[provider])
    exchange, renewal = calls[0], calls[-1]
    code_form, renewal_form = DOCUMENTED_FORMS[provider]
    assert set(exchange.form()) == code_form
    assert exchange.headers["content-type"] == "application/x-www-form-urlencoded"
    assert exchange.form()["code_verifier"] == verifier
    assert exchange.form()["redirect_uri"] == callback_uri(provider)
    assert exchange.form()["code"] == _query(location)["code"]
    assert set(renewal.form()) == renewal_form
    assert all(call.status == 200 for call in calls)


def test_connecting_again_updates_the_accounts_instead_of_duplicating_them(fake_provider, client):
    fake_provider("meta")
    redirect_params(connect(client, "meta"))
    first = stored_secrets()
    redirect_params(connect(client, "meta"))
    assert account_count() == 2
    assert stored_secrets().isdisjoint(first)  # the new tokens replaced the old ones


# --- the one-time state -----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_replayed_callback_is_refused_and_never_reaches_the_token_endpoint(fake_provider, client, provider):
    fake = fake_provider(provider)
    location = provider_redirect(provider)
    assert "connected" in redirect_params(back_to_studio(client, location))
    exchanges = len(fake.calls_to(TOKEN_ROUTE[provider]))
    accounts = account_count()
    replay = redirect_params(back_to_studio(client, location))
    assert "connected" not in replay
    assert "already used" in replay["oauth_error"]
    assert "start the connection again" in replay["oauth_error"]
    assert len(fake.calls_to(TOKEN_ROUTE[provider])) == exchanges
    assert account_count() == accounts


def test_an_unknown_state_is_refused_without_calling_the_provider(fake_provider, client):
    google = fake_provider("google")
    location = provider_redirect("google")
    forged = location.replace(f"state={_query(location)['state']}", "state=forged-state-0123456789")
    params = redirect_params(back_to_studio(client, forged))
    assert "unknown, expired or already used state" in params["oauth_error"]
    assert google.calls_to("token") == []
    assert account_count() == 0


def test_a_callback_without_state_is_refused(fake_provider, client):
    google = fake_provider("google")
    location = provider_redirect("google")
    code = _query(location)["code"]
    params = redirect_params(client.get(f"/api/oauth/callback/google?code={code}", follow_redirects=False))
    assert "no state" in params["oauth_error"]
    assert google.calls_to("token") == []


def test_an_expired_state_is_refused(fake_provider, client, monkeypatch):
    monkeypatch.setenv("STUDIO_OAUTH_STATE_TTL_S", "60")
    google = fake_provider("google")
    location = provider_redirect("google")
    state_hash = hashlib.sha256(_query(location)["state"].encode()).hexdigest()
    with session_scope() as session:
        session.execute(update(OAuthState).where(OAuthState.state_hash == state_hash).values(
            created_at=utcnow() - timedelta(seconds=61)))
    params = redirect_params(back_to_studio(client, location))
    assert "unknown, expired or already used state" in params["oauth_error"]
    assert google.calls_to("token") == []
    assert account_count() == 0


def test_a_state_within_its_ttl_still_works(fake_provider, client, monkeypatch):
    monkeypatch.setenv("STUDIO_OAUTH_STATE_TTL_S", "60")
    fake_provider("google")
    location = provider_redirect("google")
    state_hash = hashlib.sha256(_query(location)["state"].encode()).hexdigest()
    with session_scope() as session:
        session.execute(update(OAuthState).where(OAuthState.state_hash == state_hash).values(
            created_at=utcnow() - timedelta(seconds=50)))
    assert "connected" in redirect_params(back_to_studio(client, location))


def test_a_state_issued_for_one_provider_is_refused_on_another_providers_callback(fake_provider, client):
    meta = fake_provider("meta")
    google = fake_provider("google")
    location = provider_redirect("meta")
    elsewhere = location.replace("/api/oauth/callback/meta?", "/api/oauth/callback/google?")
    params = redirect_params(back_to_studio(client, elsewhere))
    assert "unknown, expired or already used state" in params["oauth_error"]
    assert google.calls_to("token") == [] and meta.calls_to("oauth_token") == []
    # The refusal did not burn the state: the right callback still completes.
    assert "connected" in redirect_params(back_to_studio(client, location))


def test_an_unknown_provider_in_the_callback_is_refused(fake_provider, client):
    fake_provider("google")
    location = provider_redirect("google").replace("/callback/google?", "/callback/myspace?")
    params = redirect_params(back_to_studio(client, location))
    assert "unknown OAuth provider 'myspace'" in params["oauth_error"]


# --- refusals at the provider ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_redirect_uri_not_registered_at_the_provider_fails_at_consent(fake_provider, provider):
    fake = fake_provider(provider, redirect_uris={"https://elsewhere.example.test/oauth/callback"})
    answer = consent(start_authorization(PLATFORM_OF[provider]))
    assert answer.status_code == 400
    assert "location" not in answer.headers
    message = answer.text
    assert "redirect_uri_mismatch" in message
    assert callback_uri(provider) in message
    assert fake.calls_to(TOKEN_ROUTE[provider]) == []


def test_a_consent_refused_by_the_user_comes_back_as_a_readable_error(fake_provider, client):
    google = fake_provider("google")
    state = _query(start_authorization("youtube"))["state"]
    response = client.get("/api/oauth/callback/google", params={
        "error": "access_denied", "error_description": "The user denied the request", "state": state,
    }, follow_redirects=False)
    params = redirect_params(response)
    assert params["oauth_error"] == ("consent refused: the account declined the requested permissions "
                                     "(the provider said: The user denied the request)")
    assert "connected" not in params
    assert google.calls_to("token") == []
    # The refused link is spent: completing it later with a code is refused too.
    late = redirect_params(client.get("/api/oauth/callback/google", params={"code": "x", "state": state},
                                      follow_redirects=False))
    assert "already used" in late["oauth_error"]


def test_a_consent_error_without_description_names_the_error_code(fake_provider, client):
    fake_provider("tiktok")
    params = redirect_params(client.get("/api/oauth/callback/tiktok?error=access_denied", follow_redirects=False))
    assert params["oauth_error"] == "consent refused: the account declined the requested permissions"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_pkce_is_checked_a_tampered_verifier_gets_the_exchange_refused(fake_provider, client, provider):
    fake = fake_provider(provider)
    location = provider_redirect(provider)
    state_hash = hashlib.sha256(_query(location)["state"].encode()).hexdigest()
    with session_scope() as session:
        session.execute(update(OAuthState).where(OAuthState.state_hash == state_hash).values(
            code_verifier_enc=encrypt_token("x" * 64)))
    params = redirect_params(back_to_studio(client, location))
    assert "connected" not in params
    assert "refused the token request" in params["oauth_error"]
    assert ("code_verifier does not match" in params["oauth_error"]
            or "Code verifier or code challenge is invalid" in params["oauth_error"])  # TikTok's wording
    [exchange] = fake.calls_to(TOKEN_ROUTE[provider])
    assert exchange.form()["code_verifier"] == "x" * 64
    assert account_count() == 0


def test_a_code_for_another_client_is_refused_by_the_provider(fake_provider, client, monkeypatch):
    fake_provider("google")
    location = provider_redirect("google")
    monkeypatch.setenv("STUDIO_GOOGLE_CLIENT_SECRET", "not-the-secret")
    reload_settings()
    params = redirect_params(back_to_studio(client, location))
    assert "invalid_client" in params["oauth_error"]
    assert account_count() == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_5xx_on_the_code_exchange_is_not_retried_and_is_reported(fake_provider, client, provider):
    fake = fake_provider(provider)
    fake.inject(TOKEN_ROUTE[provider], Fault.server_error())
    params = redirect_params(connect(client, provider))
    assert "connected" not in params
    assert "start the connection again" in params["oauth_error"]
    assert "500" in params["oauth_error"]
    assert len(fake.calls_to(TOKEN_ROUTE[provider])) == 1  # a code works once: never sent twice
    assert account_count() == 0


def test_a_changed_encryption_key_between_consent_and_callback_is_reported(fake_provider, client, monkeypatch):
    from cryptography.fernet import Fernet

    monkeypatch.setenv("STUDIO_TOKEN_ENCRYPTION_KEY", Fernet.generate_key().decode())
    google = fake_provider("google")
    location = provider_redirect("google")
    monkeypatch.setenv("STUDIO_TOKEN_ENCRYPTION_KEY", Fernet.generate_key().decode())
    reload_settings()
    params = redirect_params(back_to_studio(client, location))
    assert "STUDIO_TOKEN_ENCRYPTION_KEY" in params["oauth_error"]
    assert google.calls_to("token") == [] and account_count() == 0


def test_a_login_with_no_page_to_post_as_is_reported(fake_provider, client):
    meta = fake_provider("meta")
    assert isinstance(meta, FakeMeta)
    meta.pages.clear()
    params = redirect_params(connect(client, "meta"))
    assert "no account to post as" in params["oauth_error"]
    assert account_count() == 0


# --- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("platform", "settings"), [
    ("instagram", ("STUDIO_META_APP_ID", "STUDIO_META_APP_SECRET")),
    ("facebook", ("STUDIO_META_APP_ID", "STUDIO_META_APP_SECRET")),
    ("youtube", ("STUDIO_GOOGLE_CLIENT_ID", "STUDIO_GOOGLE_CLIENT_SECRET")),
    ("tiktok", ("STUDIO_TIKTOK_CLIENT_KEY", "STUDIO_TIKTOK_CLIENT_SECRET")),
])
def test_an_unconfigured_provider_names_the_settings_and_the_redirect_uri_to_register(studio, monkeypatch,
                                                                                      platform, settings):
    monkeypatch.setenv("STUDIO_PUBLIC_URL", PUBLIC_URL + "/")
    reload_settings()
    provider = {"instagram": "meta", "facebook": "meta", "youtube": "google", "tiktok": "tiktok"}[platform]
    with pytest.raises(InvalidInput) as refused:
        start_authorization(platform)
    message = str(refused.value)
    assert all(name in message for name in settings)
    assert callback_uri(provider) in message  # the trailing slash of the public URL is not doubled
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(OAuthState)).scalar_one() == 0


def test_half_a_configuration_is_still_not_configured(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_GOOGLE_CLIENT_ID", "google-client-id")
    reload_settings()
    with pytest.raises(InvalidInput, match="STUDIO_GOOGLE_CLIENT_SECRET"):
        start_authorization("youtube")


def test_an_unknown_platform_is_refused(studio):
    with pytest.raises(InvalidInput, match="unknown platform 'myspace'"):
        start_authorization("myspace")


# --- tokens at rest -------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_no_token_or_verifier_is_stored_shown_or_logged_in_plaintext(fake_provider, client, caplog, provider):
    caplog.set_level(logging.DEBUG)
    fake = fake_provider(provider)
    location = provider_redirect(provider)
    state = _query(location)["state"]
    verifier = decrypt_token(state_row(state).code_verifier_enc)
    redirect_params(back_to_studio(client, location))
    accounts = social_accounts.list_accounts()
    for account in accounts:
        social_accounts.credentials(account.id)
    secrets = secrets_seen_by(fake) | stored_secrets() | {verifier}
    secrets.discard(_query(location)["code"])  # the code travels in the browser's URL by design
    tokens = {s for s in secrets if s.startswith(("at-", "rt-"))}
    assert len(tokens) >= (3 if provider == "meta" else 2)  # the test looks at real tokens
    dump = "\n".join(raw_rows("socialaccount") + raw_rows("oauthstate"))
    assert dump, "nothing was stored"
    assert state not in dump  # the state is kept hashed
    leaked = [s for s in secrets if s in dump]
    assert leaked == [], "plaintext secrets in the database"
    shown = repr(accounts) + "".join(str(a) for a in accounts)
    assert [s for s in secrets if s in shown] == []
    credentials = social_accounts.credentials(accounts[0].id)
    assert credentials.access_token not in repr(credentials)
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert logged, "the flow logged nothing; is DEBUG capture working?"
    assert [s for s in secrets if s in logged] == [], "secrets in the logs"


def test_the_consent_url_carries_no_verifier(fake_provider):
    fake_provider("tiktok")
    url = start_authorization("tiktok")
    verifier = decrypt_token(state_row(_query(url)["state"]).code_verifier_enc)
    assert verifier not in url


# --- refresh ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["google", "tiktok"])
def test_a_token_expiring_within_the_margin_is_refreshed_before_use(fake_provider, client, provider):
    fake = fake_provider(provider)
    redirect_params(connect(client, provider))
    [account] = social_accounts.list_accounts()
    old = social_accounts.credentials(account.id).access_token
    [row] = account_rows()
    refresh_token = decrypt_token(row.refresh_token_enc or "")
    set_expiry(account.id, seconds_from_now=300)  # inside the default 600 s margin
    fake.oauth.expire_access_tokens()
    calls = len(fake.calls_to("token"))

    fresh = social_accounts.credentials(account.id)

    refreshes = fake.calls_to("token")[calls:]
    assert [call.form()["grant_type"] for call in refreshes] == ["refresh_token"]
    assert refreshes[0].form()["refresh_token"] == refresh_token
    assert fresh.access_token != old
    assert fake.oauth.check_bearer(fresh.access_token) == "ok"
    renewed = social_accounts.get_account(account.id)
    assert renewed.expires_at is not None and renewed.expires_at - utcnow() > timedelta(minutes=55)
    assert renewed.status == "connected"
    # The refresh token survives (Google sends none back; TikTok sends the same one).
    [row] = account_rows()
    assert decrypt_token(row.refresh_token_enc or "") == refresh_token
    # Fresh now: the next use calls nothing.
    assert social_accounts.credentials(account.id).access_token == fresh.access_token
    assert len(fake.calls_to("token")) == calls + 1


@pytest.mark.parametrize("provider", ["google", "tiktok"])
def test_a_token_far_from_expiry_is_used_without_refreshing(fake_provider, client, provider):
    fake = fake_provider(provider)
    redirect_params(connect(client, provider))
    [account] = social_accounts.list_accounts()
    set_expiry(account.id, seconds_from_now=601 + 60)
    calls = len(fake.calls_to("token"))
    before = social_accounts.get_account(account.id).expires_at
    social_accounts.credentials(account.id)
    social_accounts.credentials(account.id)
    assert len(fake.calls_to("token")) == calls
    assert social_accounts.get_account(account.id).expires_at == before


def test_the_refresh_margin_is_a_setting(fake_provider, client, monkeypatch):
    google = fake_provider("google")
    redirect_params(connect(client, "google"))
    [account] = social_accounts.list_accounts()
    set_expiry(account.id, seconds_from_now=1800)
    social_accounts.credentials(account.id)
    assert len(google.calls_to("token")) == 1
    monkeypatch.setenv("STUDIO_TOKEN_REFRESH_MARGIN_S", "3600")
    reload_settings()
    social_accounts.credentials(account.id)
    assert [call.form()["grant_type"] for call in google.calls_to("token")] == ["authorization_code",
                                                                                "refresh_token"]


REVOKED = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}


@pytest.mark.parametrize(("provider", "status"), [("google", 400), ("tiktok", 400), ("tiktok", 200)])
def test_a_refused_refresh_marks_the_account_for_reconnecting(fake_provider, client, provider, status):
    # TikTok may answer an error with HTTP 200 and an "error" field; that is a refusal too.
    fake = fake_provider(provider)
    redirect_params(connect(client, provider))
    [account] = social_accounts.list_accounts()
    set_expiry(account.id, seconds_from_now=60)
    fake.inject("token", Fault.respond(status, REVOKED))

    with pytest.raises(OAuthError, match="refused the token request: invalid_grant: Token has been expired"):
        social_accounts.credentials(account.id)

    marked = social_accounts.get_account(account.id)
    assert marked.status == "needs-reconnect"
    assert marked.last_error and "revoked" in marked.last_error
    calls = len(fake.calls_to("token"))
    with pytest.raises(InvalidInput, match="needs to be reconnected") as refused:
        social_accounts.credentials(account.id)
    assert "revoked" in str(refused.value)
    assert len(fake.calls_to("token")) == calls  # refused without asking the provider again
    assert social_accounts.default_account(marked.platform) is None


def test_reconnecting_clears_the_needs_reconnect_mark(fake_provider, client):
    fake_provider("google")
    redirect_params(connect(client, "google"))
    [account] = social_accounts.list_accounts()
    social_accounts.mark_needs_reconnect(account.id, "the refresh token was revoked")
    redirect_params(connect(client, "google"))
    [again] = social_accounts.list_accounts()
    assert again.id == account.id and again.status == "connected" and again.last_error is None
    assert social_accounts.credentials(account.id).access_token


def test_an_account_without_a_refresh_token_must_be_reconnected_when_it_expires(studio, monkeypatch):
    account = social_accounts.connect_manually(platform="youtube", external_id="UCmanual", access_token="ya29.manual",
                                               expires_in_s=60)
    assert not account.refreshable
    # Without the provider's app settings nothing can be refreshed: the token is used while it lasts.
    assert social_accounts.credentials(account.id).access_token == "ya29.manual"
    monkeypatch.setenv("STUDIO_GOOGLE_CLIENT_ID", "client")
    monkeypatch.setenv("STUDIO_GOOGLE_CLIENT_SECRET", "secret")
    reload_settings()
    with pytest.raises(OAuthError, match="no refresh token; reconnect"):
        social_accounts.credentials(account.id)
    assert social_accounts.get_account(account.id).status == "needs-reconnect"


def test_meta_renews_its_token_with_fb_exchange_token(fake_provider, client):
    meta = fake_provider("meta")
    assert isinstance(meta, FakeMeta)
    redirect_params(connect(client, "meta"))
    page = next(a for a in social_accounts.list_accounts() if a.platform == "facebook")
    assert page.refreshable
    old = social_accounts.credentials(page.id).access_token
    calls = len(meta.calls_to("oauth_token"))

    fresh = social_accounts.credentials(page.id, force_refresh=True)

    [renewal] = meta.calls_to("oauth_token")[calls:]
    fields = {**renewal.query, **(renewal.form() if renewal.body else {})}
    assert fields["grant_type"] == "fb_exchange_token"
    assert fields["fb_exchange_token"] == old
    assert fields["client_id"] == meta.oauth.client_id
    assert fresh.access_token != old
    assert meta.oauth.subject_of(fresh.access_token) == f"page:{meta.page.id}"
    renewed = social_accounts.get_account(page.id)
    assert renewed.expires_at is not None and renewed.expires_at - utcnow() > timedelta(days=59)


def test_a_meta_token_that_already_expired_cannot_be_renewed(fake_provider, client):
    meta = fake_provider("meta")
    redirect_params(connect(client, "meta"))
    page = next(a for a in social_accounts.list_accounts() if a.platform == "facebook")
    meta.oauth.expire_access_tokens()
    with pytest.raises(OAuthError, match="Error validating access token"):
        social_accounts.credentials(page.id, force_refresh=True)
    assert social_accounts.get_account(page.id).status == "needs-reconnect"


# --- what the providers' token endpoints refuse (the fakes, spoken to directly) ------------------------------

FAKE_REDIRECT = "http://127.0.0.1:8501/oauth/callback"  # each fake's registered default


@pytest.fixture(scope="module")
def token_fakes() -> Iterator[dict[str, FakeServer]]:
    fakes: dict[str, FakeServer] = {"meta": FakeMeta(), "google": FakeGoogle(), "tiktok": FakeTikTok()}
    for fake in fakes.values():
        fake.start()
    yield fakes
    for fake in fakes.values():
        fake.stop()


def _oauth_of(fake: FakeServer) -> Any:
    assert isinstance(fake, FakeMeta | FakeGoogle | FakeTikTok)
    return fake.oauth


def _token_url(name: str, fake: FakeServer) -> str:
    return fake.url + {"meta": "/v21.0/oauth/access_token", "google": "/token"}.get(name, "/v2/oauth/token/")


def _code_form(name: str, fake: FakeServer) -> dict[str, str]:
    """A fresh code's exchange in the provider's documented form (the fake consents at once)."""
    oauth = _oauth_of(fake)
    verifier = "v" * 64
    challenge = oauth.challenge_of(verifier)
    location = oauth.authorize(client_id=oauth.client_id, redirect_uri=FAKE_REDIRECT, state="s",
                               code_challenge=challenge, code_challenge_method="S256")
    form = {CLIENT_ID_PARAM[name]: oauth.client_id, "client_secret": oauth.client_secret,
            "code": _query(location)["code"], "redirect_uri": FAKE_REDIRECT, "code_verifier": verifier}
    return form if name == "meta" else {**form, "grant_type": "authorization_code"}


def _refresh_form(name: str, fake: FakeServer) -> dict[str, str]:
    tokens = httpx.post(_token_url(name, fake), data=_code_form(name, fake), timeout=10).json()
    oauth = _oauth_of(fake)
    return {CLIENT_ID_PARAM[name]: oauth.client_id, "client_secret": oauth.client_secret,
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}


def _without(form: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in form.items() if key != name}


def _spend(name: str, fake: FakeServer, form: dict[str, str]) -> dict[str, str]:
    assert httpx.post(_token_url(name, fake), data=form, timeout=10).status_code == 200
    return form


def _revoke(fake: FakeServer, form: dict[str, str]) -> dict[str, str]:
    _oauth_of(fake).revoke(form["refresh_token"])
    return form


def _expire(fake: FakeServer, form: dict[str, str]) -> dict[str, str]:
    _oauth_of(fake).expire_refresh_tokens()
    return form


# (provider fake, request, how the documented request is spoiled, what the provider answers). Sources in
# tests/fakes/{meta,google,tiktok}.py beside each rule; RFC 6749 §5.2 for the error codes.
REFUSALS: list[tuple[str, str, Callable[[str, FakeServer, dict[str, str]], dict[str, str]], str]] = [
    *[(name, "code", lambda n, f, form: {**form, "grant_type": "password"}, "unsupported_grant_type")
      for name in ("meta", "google", "tiktok")],
    ("meta", "code", lambda n, f, form: {**form, "grant_type": "authorization_code"}, "unsupported_grant_type"),
    *[(name, "code", lambda n, f, form: _without(form, "redirect_uri"), "missing required parameter(s): redirect_uri")
      for name in ("meta", "google", "tiktok")],
    *[(name, "code", lambda n, f, form: {**form, "redirect_uri": FAKE_REDIRECT + "/other"},
       "redirect_uri does not match") for name in ("meta", "google", "tiktok")],
    *[(name, "code", lambda n, f, form: _spend(n, f, form), "invalid or was already used")
      for name in ("meta", "google", "tiktok")],
    *[(name, "code", lambda n, f, form: {**form, "code": "made-up"}, "invalid or was already used")
      for name in ("meta", "google", "tiktok")],
    *[(name, "code", lambda n, f, form: {**form, "client_secret": "wrong"}, "invalid_client")
      for name in ("meta", "google", "tiktok")],
    *[(name, "refresh", lambda n, f, form: {**form, "client_secret": "wrong"}, "invalid_client")
      for name in ("google", "tiktok")],
    *[(name, "refresh", lambda n, f, form: _expire(f, form), "Token has been expired or revoked")
      for name in ("google", "tiktok")],
    *[(name, "refresh", lambda n, f, form: _revoke(f, form), "Token has been expired or revoked")
      for name in ("google", "tiktok")],
    *[(name, "refresh", lambda n, f, form: {**form, "grant_type": "client_credentials"}, "unsupported_grant_type")
      for name in ("google", "tiktok")],
    ("tiktok", "code", lambda n, f, form: {"client_id": form["client_key"], **_without(form, "client_key")},
     "missing required parameter(s): client_key"),
    ("tiktok", "refresh", lambda n, f, form: {"client_id": form["client_key"], **_without(form, "client_key")},
     "missing required parameter(s): client_key"),
    ("google", "code", lambda n, f, form: {**form, "access_type": "offline"}, "unknown parameter(s): access_type"),
    ("tiktok", "code", lambda n, f, form: _without(form, "code_verifier"),  # a Desktop app must send it
     "missing required parameter(s): code_verifier"),
]


@pytest.mark.parametrize(("name", "request_kind", "spoil", "refusal"), REFUSALS,
                         ids=[f"{name}-{kind}-{refusal[:30]}" for name, kind, _s, refusal in REFUSALS])
def test_the_token_endpoint_refuses_what_the_provider_documents_it_refuses(token_fakes, name, request_kind, spoil,
                                                                           refusal):
    fake = token_fakes[name]
    build = _code_form if request_kind == "code" else _refresh_form
    # The documented request is accepted (so the refusal below is the spoiling's doing)...
    accepted = httpx.post(_token_url(name, fake), data=build(name, fake), timeout=10)
    assert accepted.status_code == 200 and "access_token" in accepted.json(), accepted.text
    # ...and the spoilt one is refused, with no token.
    answer = httpx.post(_token_url(name, fake), data=spoil(name, fake, build(name, fake)), timeout=10)
    assert answer.status_code >= 400
    assert "access_token" not in answer.json()
    assert refusal in answer.text


@pytest.mark.parametrize("name", ["google", "tiktok"])
def test_a_token_request_that_is_not_form_encoded_is_refused(token_fakes, name):
    # Both document Content-Type application/x-www-form-urlencoded for the token endpoint.
    fake = token_fakes[name]
    answer = httpx.post(_token_url(name, fake), json=_code_form(name, fake), timeout=10)
    assert answer.status_code == 400
    assert "application/x-www-form-urlencoded" in answer.text


# --- manual token entry -------------------------------------------------------------------------------------


def test_a_manually_entered_token_is_stored_encrypted(studio):
    token = "EAAmanualPageToken0123456789"
    account = social_accounts.connect_manually(platform="facebook", external_id=" 104000000000009 ",
                                               access_token=f"  {token}\n", name="  My Page ", expires_in_s=3600)
    assert account.external_id == "104000000000009" and account.name == "My Page"
    assert account.connected_via == "manual" and account.status == "connected"
    assert account.expires_at is not None
    dump = "\n".join(raw_rows("socialaccount"))
    assert "104000000000009" in dump and token not in dump
    assert token not in repr(social_accounts.list_accounts())
    assert social_accounts.credentials(account.id).access_token == token


def test_a_manual_instagram_account_keeps_its_page_id(studio):
    account = social_accounts.connect_manually(platform="instagram", external_id="17841400000000009",
                                               access_token="EAAinstagram0123", page_id=" 104000000000009 ")
    assert social_accounts.credentials(account.id).meta == {"page_id": "104000000000009"}


@pytest.mark.parametrize(("fields", "message"), [
    ({"external_id": "   "}, "the account id is required"),
    ({"access_token": "   "}, "the access token looks wrong"),
    ({"access_token": "EAA token with spaces"}, "the access token looks wrong"),
    ({"access_token": "short"}, "the access token looks wrong"),
    ({"platform": "myspace"}, "unknown platform 'myspace'; choose one of: instagram, facebook, youtube, tiktok"),
    ({"expires_in_s": 0}, "expires in must be a positive number"),
])
def test_manual_entry_refuses_bad_input_with_a_clear_message_and_stores_nothing(studio, fields, message):
    values = {"platform": "tiktok", "external_id": "openid-1", "access_token": "act.0123456789abcdef", **fields}
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        social_accounts.connect_manually(**values)
    assert account_count() == 0


def test_disconnecting_forgets_the_account_and_its_tokens(studio):
    token = "act.0123456789abcdef"
    account = social_accounts.connect_manually(platform="tiktok", external_id="openid-1", access_token=token)
    other = social_accounts.connect_manually(platform="tiktok", external_id="openid-2", access_token=token + "2")
    social_accounts.disconnect(account.id)
    assert [a.id for a in social_accounts.list_accounts()] == [other.id]
    assert len(raw_rows("socialaccount")) == 1
    with pytest.raises(Exception, match="does not exist"):
        social_accounts.credentials(account.id)
