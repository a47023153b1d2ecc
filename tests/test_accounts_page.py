"""The Social accounts page under AppTest: a token entered by hand is stored encrypted and never shown,
disconnecting asks first, the OAuth callback's messages are shown once, and Connect either explains
what to configure or offers the provider's consent URL (PKCE S256, one-time state)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from core.config import reload_settings
from core.db import session_scope
from core.models import OAuthState, SocialAccount
from core.publishing import caps, social_accounts
from core.publishing.oauth import sign_result
from tests.apptest import ROOT, checked, click, open_page, rerun
from tests.fakes.meta import FakeMeta

pytestmark = pytest.mark.clock  # also run at awkward moments (tests/clock.py): token expiry shown to people

PAGE = "pages/accounts.py"
TOKEN = "EAAG-very-secret-access-token-1234567890"
REFRESH = "refresh-secret-0987654321"


def _rendered(node: object) -> Iterator[str]:
    """Every element's protobuf as text: what the browser would receive."""
    if (proto := getattr(node, "proto", None)) is not None:
        yield str(proto)
    for child in getattr(node, "children", {}).values():
        yield from _rendered(child)


def _plain(text: str) -> str:
    return text.replace("\\", "")  # messages escape Markdown characters


def test_a_token_entered_by_hand_is_stored_encrypted_and_never_shown(studio):
    at = open_page(PAGE)
    at.selectbox(key="accounts.manual.platform").set_value("instagram")
    at.text_input(key="accounts.manual.external_id").input("17841400000000001")
    at.text_input(key="accounts.manual.name").input("mia.rivers")
    at.text_input(key="accounts.manual.page_id").input("1234567890")
    at.text_input(key="accounts.manual.access_token").input(TOKEN)
    at.text_input(key="accounts.manual.refresh_token").input(REFRESH)
    at.number_input(key="accounts.manual.expires_in").set_value(3600)
    click(at, "accounts.manual.submit")

    [account] = social_accounts.list_accounts()
    assert (account.platform, account.external_id, account.name) == ("instagram", "17841400000000001", "mia.rivers")
    assert account.connected_via == "manual" and account.expires_at is not None
    assert any("Connected Instagram" in _plain(s.value) for s in at.success)
    rendered = "\n".join(_rendered(at._tree))
    assert "17841400000000001" in rendered and TOKEN not in rendered and REFRESH not in rendered
    assert at.text_input(key="accounts.manual.access_token").value == ""
    with session_scope() as session:
        row = session.execute(select(SocialAccount)).scalar_one()
    assert TOKEN not in row.access_token_enc and REFRESH not in (row.refresh_token_enc or "")
    assert social_accounts.credentials(account.id).access_token == TOKEN  # still usable by a worker


def test_a_bad_manual_token_is_refused_with_the_reason(studio):
    at = open_page(PAGE)
    at.text_input(key="accounts.manual.external_id").input("123")
    at.text_input(key="accounts.manual.access_token").input("short")
    click(at, "accounts.manual.submit")
    assert any("access token looks wrong" in e.value for e in at.error)
    assert social_accounts.list_accounts() == []


def test_disconnect_asks_for_confirmation_then_forgets_the_account(studio):
    account = social_accounts.connect_manually(platform="youtube", external_id="UC123", name="Mia on YouTube",
                                               access_token="ya29.a-long-enough-token")
    at = open_page(PAGE)
    assert any("Mia on YouTube" in m.value for m in at.markdown)
    click(at, f"accounts.disconnect.{account.id}")
    assert social_accounts.list_accounts(), "one click only asks"
    click(at, f"accounts.disconnect_yes.{account.id}")
    assert social_accounts.list_accounts() == []
    assert any("Disconnected" in s.value for s in at.success)
    assert any("No account connected yet" in i.value for i in at.info)


def _with_query(*, signed: bool = True, **params: str) -> AppTest:
    """The Accounts page opened as the OAuth callback's redirect does (its result signed), or by a crafted link."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    at.query_params.update(params)
    if signed:
        at.query_params["oauth_sig"] = sign_result(params)
    return checked(at.switch_page(PAGE).run())


def test_the_oauth_callback_result_is_shown_once_and_cleared(studio):
    at = _with_query(connected="Instagram: mia.rivers")
    assert [_plain(s.value) for s in at.success] == ["Connected: Instagram: mia.rivers"]
    assert "connected" not in at.query_params
    assert not rerun(at).success

    at = _with_query(oauth_error="consent refused: *the user said no*")
    assert [_plain(e.value) for e in at.error] == ["The connection failed: consent refused: *the user said no*"]
    assert "oauth_error" not in at.query_params


def test_a_crafted_link_cannot_put_its_text_in_the_oauth_result_box(studio):
    phishing = "Session expired. Sign in again at https://evil.example/reset or mail help@evil.example"
    at = _with_query(signed=False, oauth_error=phishing)
    assert not at.error and not at.success
    assert [w.value for w in at.warning] == [
        "This link carried a connection result the studio did not write; it is not shown."]
    assert "oauth_error" not in at.query_params
    forged = _with_query(signed=False, oauth_error=phishing, oauth_sig="0" * 64)
    assert not forged.error


def test_connect_on_an_unconfigured_provider_names_the_settings_to_set(studio):
    at = open_page(PAGE)
    assert any("STUDIO_GOOGLE_CLIENT_ID" in c.value for c in at.caption)
    assert any(c.value.endswith("/api/oauth/callback/google") for c in at.code)
    click(at, "accounts.connect.google")
    [error] = at.error
    assert "STUDIO_GOOGLE_CLIENT_ID" in _plain(error.value) and "STUDIO_GOOGLE_CLIENT_SECRET" in _plain(error.value)
    assert not at.get("link_button")


def test_connect_on_a_configured_provider_offers_the_consent_url_with_pkce(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_META_APP_ID", "424242")
    monkeypatch.setenv("STUDIO_META_APP_SECRET", "meta-app-secret-value")
    settings = reload_settings()
    at = open_page(PAGE)
    assert not at.get("link_button"), "no state is written before a click"
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(OAuthState)).scalar_one() == 0

    click(at, "accounts.connect.meta")
    [link] = at.get("link_button")
    assert link.proto.label == "Continue to Facebook"
    url = urlparse(link.proto.url)
    query = parse_qs(url.query)
    assert link.proto.url.startswith(settings.facebook_dialog_url)
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == ["424242"]
    assert len(query["state"][0]) >= 32 and query["code_challenge"][0]
    assert query["redirect_uri"] == [f"{settings.public_url}/api/oauth/callback/meta"]
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(OAuthState)).scalar_one() == 1
    rerun(at)
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(OAuthState)).scalar_one() == 1, "reruns add none"
    assert "meta-app-secret-value" not in "\n".join(_rendered(at._tree))


def test_dry_run_mode_is_shown(studio, monkeypatch):
    assert any("Dry-run mode is off" in c.value for c in open_page(PAGE).caption)
    monkeypatch.setenv("STUDIO_PUBLISH_DRY_RUN", "true")
    reload_settings()
    assert any("Dry-run mode is on" in i.value for i in open_page(PAGE).info)


def test_each_account_shows_its_token_health_and_cap_and_an_expiring_one_offers_reconnect(studio):
    expiring = social_accounts.connect_manually(platform="tiktok", external_id="open-1", name="Mia",
                                                access_token="act.long-enough-token", expires_in_s=2 * 86_400)
    lasting = social_accounts.connect_manually(platform="youtube", external_id="UC1", name="Chan",
                                               access_token="ya29.long-enough-token")
    at = open_page(PAGE)
    captions = [_plain(c.value) for c in at.caption]
    assert any("Token valid until" in c and "last refresh" in c and "0 of 15 posts in the last 24 h" in c
               for c in captions), captions
    assert any("Token valid until no expiry" in c and "0 of 6 posts" in c for c in captions)
    assert any("stops working in 1 day(s) unless reconnected" in _plain(w.value) for w in at.warning)
    reconnect = [b for b in at.button if b.key.startswith("accounts.reconnect.")]
    assert [b.key for b in reconnect] == [f"accounts.reconnect.{expiring.id}"], "only the account that needs it"
    assert lasting.id != expiring.id
    click(at, f"accounts.reconnect.{expiring.id}")  # TikTok is not configured here: it says what to set
    assert any("STUDIO_TIKTOK_CLIENT_KEY" in _plain(e.value) for e in at.error)


def test_check_quota_reads_instagrams_publishing_limit_and_the_cap_follows_it(studio, monkeypatch):
    # GET /{ig-user}/content_publishing_limit?fields=quota_usage,config (quota_total, quota_duration):
    # https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/content_publishing_limit/
    with FakeMeta(publishing_quota=100).running() as meta:
        monkeypatch.setenv("STUDIO_GRAPH_API_URL", f"{meta.url}/v21.0")
        reload_settings()
        page = meta.page
        account = social_accounts.connect_manually(platform="instagram", external_id=page.ig_user_id or "",
                                                   access_token=meta.page_token(), page_id=page.id)
        at = open_page(PAGE)
        assert any("0 of 50 posts in the last 24 h" in _plain(c.value) for c in at.caption)  # the default
        click(at, f"accounts.quota.{account.id}")
    assert any("Instagram says 0 of 100 API posts" in _plain(s.value) for s in at.success)
    assert any("0 of 100 posts in the last 24 h" in _plain(c.value) for c in at.caption)
    assert caps.cap_for("instagram", account.id) == 100
    assert [call.route for call in meta.calls] == ["publishing_limit"]
