"""The Instagram and Facebook Page clients against a local fake of Meta's Graph API (real HTTP)."""

from __future__ import annotations

import base64
import hashlib
import io
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from core.config import Settings
from core.errors import PermanentJobError, TransientError
from core.infra.http_retry import OutcomeUnknown, RetryPolicy
from core.models import utcnow
from tests.fakes.meta import FakeMeta, PagePost, graph_fault
from tests.fakes.server import Fault
from workers.social import client_class
from workers.social.base import (
    Credentials,
    MediaFile,
    PlatformClient,
    PlatformRejected,
    PublishDeferred,
    Published,
    PublishRequest,
    TokenExpired,
)
from workers.social.facebook import FacebookClient
from workers.social.instagram import InstagramClient
from workers.social.meta_common import GraphRateLimited, MediaNotReady

pytestmark = pytest.mark.clock  # also run at awkward moments (tests/clock.py): token expiry and refresh

def _jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, "JPEG")
    return out.getvalue()


JPEG = _jpeg(40, 50)  # 4:5, the tallest feed image Instagram takes (the fake measures fetched images)
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"video-bytes" * 10


# --- fixtures and helpers -------------------------------------------------------------------------------------


@pytest.fixture
def meta() -> Iterator[FakeMeta]:
    fake = FakeMeta(container_polls=2, video_upload_polls=2, video_processing_polls=1)
    with fake.running():
        yield fake


def settings_for(meta: FakeMeta, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "graph_api_url": meta.url + "/v21.0", "facebook_upload_url": meta.url + "/video-upload/v21.0",
        "publish_status_poll_s": 0.05, "publish_status_timeout_s": 5, "publish_max_retries": 3,
    } | overrides
    return Settings(_env_file=None, **values)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=1.0) as client:
        yield client


def make_client(cls: type[PlatformClient], meta: FakeMeta, http: httpx.Client, *, token: str | None = None,
                log: list[str] | None = None, **settings: Any) -> Any:
    external_id = meta.page.ig_user_id if cls is InstagramClient else meta.page.id
    client = cls(http, settings_for(meta, **settings),
                 Credentials(account_id=1, external_id=str(external_id), access_token=token or meta.page_token()),
                 log=(log if log is not None else []).append)
    client.policy = RetryPolicy(max_retries=3, backoff_s=0.05, backoff_max_s=0.2)  # keep 5xx retries quick
    return client


def media_file(kind: str = "image", url: str | None = None, content_type: str | None = None) -> MediaFile:
    data = JPEG if kind == "image" else MP4
    return MediaFile(
        asset_id=7, kind=kind, content_type=content_type or ("image/jpeg" if kind == "image" else "video/mp4"),
        size=len(data), url=url or f"https://cdn.example.test/assets/7.{'jpg' if kind == 'image' else 'mp4'}"
        "?X-Amz-Signature=abc123",
        read=lambda offset, length: data[offset:offset + length], width=1080,
        height=1350 if kind == "image" else 1920,
        duration_s=None if kind == "image" else 12.0,
    )


def post(platform: str, *media: MediaFile, text: str = "Morning light in Lisbon #travel #aiart") -> PublishRequest:
    return PublishRequest(post_id=1, platform=platform, text=text, title="", hashtags=["travel", "aiart"],
                          media=list(media), ai_generated=True)


class Saved:
    """``save_state`` as the publish handler gives it: remembers each saved copy."""

    def __init__(self) -> None:
        self.copies: list[dict[str, Any]] = []

    def __call__(self, state: dict[str, Any]) -> None:
        self.copies.append(dict(state))


def prepare_and_publish(client: PlatformClient, request: PublishRequest,
                        state: dict[str, Any] | None = None) -> tuple[Published, dict[str, Any]]:
    state = {} if state is None else state
    client.validate(request)
    client.prepare(request, state, Saved())
    return client.publish(request, state), state


# --- Instagram ------------------------------------------------------------------------------------------------


def test_instagram_image_is_published_once_after_its_container_finishes(meta: FakeMeta, http: httpx.Client) -> None:
    client = make_client(InstagramClient, meta, http)
    request = post("instagram", media_file("image"))
    saved = Saved()
    state: dict[str, Any] = {}

    client.validate(request)
    client.prepare(request, state, saved)
    published = client.publish(request, state)

    container_id = saved.copies[0]["container_id"]
    assert meta.calls_to("media")[0].form() | {"access_token": "-"} == {
        "image_url": request.media[0].url, "caption": request.text, "access_token": "-",
        "is_ai_generated": "true"}  # Instagram's AI info label (changelog, June 22, 2026)
    # The quota is read before the container (content_publishing_limit), as Meta asks.
    assert [c.route for c in meta.calls][:2] == ["publishing_limit", "media"]
    polls = [c for c in meta.calls_to("node") if c.path.endswith(container_id)]
    assert len(polls) == 2  # IN_PROGRESS once, then FINISHED
    assert meta.calls_to("media_publish")[0].form()["creation_id"] == container_id
    [media] = meta.published_media()
    assert published == Published(media.id, media.permalink)
    assert media.caption == request.text and media.is_ai_generated
    assert meta.media_urls == [request.media[0].url]


def test_instagram_reel_is_created_as_reels_shared_to_feed_and_published(meta: FakeMeta, http: httpx.Client) -> None:
    client = make_client(InstagramClient, meta, http)
    request = post("instagram", media_file("video"))

    published, _ = prepare_and_publish(client, request)

    sent = meta.calls_to("media")[0].form()
    assert (sent["media_type"], sent["video_url"], sent["share_to_feed"]) == ("REELS", request.media[0].url, "true")
    [media] = meta.published_media()
    assert media.media_type == "REELS"
    assert published.external_id == media.id
    assert published.permalink and published.permalink.startswith("https://www.instagram.com/p/")


def test_instagram_media_hosted_on_a_real_server_is_fetched_by_meta(http: httpx.Client) -> None:
    with FakeMeta(fetch_media=True, container_polls=0).running() as meta:
        assert isinstance(meta, FakeMeta)
        url = meta.serve_file("look.jpg", JPEG, "image/jpeg")
        prepare_and_publish(make_client(InstagramClient, meta, http), post("instagram", media_file("image", url)))
        assert meta.fetched_urls == [url]
        assert len(meta.published_media()) == 1


def test_repeating_prepare_with_the_saved_state_makes_no_second_container(meta: FakeMeta,
                                                                           http: httpx.Client) -> None:
    client = make_client(InstagramClient, meta, http)
    request = post("instagram", media_file("image"))
    state: dict[str, Any] = {}

    client.prepare(request, state, Saved())
    client.prepare(request, state, Saved())

    assert len(meta.calls_to("media")) == 1
    assert len(meta.containers) == 1


def test_a_saved_container_that_expired_is_replaced_by_a_new_one(meta: FakeMeta, http: httpx.Client) -> None:
    client = make_client(InstagramClient, meta, http)
    request = post("instagram", media_file("image"))
    state: dict[str, Any] = {}
    client.prepare(request, state, Saved())
    old = state["container_id"]
    meta.expire_container(old)

    client.prepare(request, state, Saved())
    client.publish(request, state)

    assert state["container_id"] != old
    assert len(meta.calls_to("media")) == 2
    assert len(meta.published_media()) == 1


def test_instagram_container_error_is_a_platform_rejection_with_its_status(meta: FakeMeta,
                                                                           http: httpx.Client) -> None:
    meta.fail_next_container("ERROR: Video aspect ratio is not supported (2207009)")
    client = make_client(InstagramClient, meta, http)

    with pytest.raises(PlatformRejected, match="aspect ratio is not supported"):
        client.prepare(post("instagram", media_file("video")), {}, Saved())
    assert meta.publish_count == 0


def test_an_image_meta_cannot_download_is_refused_with_metas_message(http: httpx.Client) -> None:
    with FakeMeta(fetch_media=True).running() as meta:
        assert isinstance(meta, FakeMeta)
        client = make_client(InstagramClient, meta, http)
        with pytest.raises(PlatformRejected) as refused:
            client.prepare(post("instagram", media_file("image", meta.url + "/files/missing.jpg")), {}, Saved())
        assert "Media download has failed" in refused.value.platform_message
        assert "9004" in refused.value.platform_message


def test_a_container_still_processing_at_the_timeout_is_transient(http: httpx.Client) -> None:
    with FakeMeta(container_polls=1000).running() as meta:
        assert isinstance(meta, FakeMeta)
        client = make_client(InstagramClient, meta, http, publish_status_timeout_s=0.3)
        state: dict[str, Any] = {}
        with pytest.raises(MediaNotReady):
            client.prepare(post("instagram", media_file("image")), state, Saved())
        assert state["container_id"] in meta.containers  # kept: a retry resumes waiting on it


def test_lost_instagram_publish_answer_is_recovered_without_publishing_twice(meta: FakeMeta) -> None:
    with httpx.Client(timeout=0.3) as http:
        client = make_client(InstagramClient, meta, http)
        request = post("instagram", media_file("image"))
        state: dict[str, Any] = {}
        client.prepare(request, state, Saved())
        meta.inject("media_publish", Fault.lose_response(0.8))

        with pytest.raises(OutcomeUnknown):
            client.publish(request, state)
        recovered = client.recover(request, state)

    [media] = meta.published_media()
    assert recovered == Published(media.id, media.permalink)
    assert len(meta.calls_to("media_publish")) == 1


def test_instagram_recover_is_none_when_the_publish_never_reached_meta(meta: FakeMeta, http: httpx.Client) -> None:
    client = make_client(InstagramClient, meta, http)
    request = post("instagram", media_file("image"))
    state: dict[str, Any] = {}
    client.prepare(request, state, Saved())
    meta.inject("media_publish", Fault.respond(503, {"error": {"message": "Service unavailable", "code": 2}}))

    with pytest.raises(OutcomeUnknown):
        client.publish(request, state)
    assert client.recover(request, state) is None
    client.publish(request, state)

    assert len(meta.published_media()) == 1
    assert meta.publish_count == 1


def test_instagram_recover_never_says_not_published_for_a_published_container(meta: FakeMeta,
                                                                              http: httpx.Client) -> None:
    client = make_client(InstagramClient, meta, http)
    request = post("instagram", media_file("image"))
    _, state = prepare_and_publish(client, request)
    meta.media.clear()  # the media list lags behind (or the post was deleted at once)

    with pytest.raises(TransientError, match="was published, but its media is not among"):
        client.recover(request, state)


def test_instagram_recover_finds_the_newest_media_with_the_same_caption(meta: FakeMeta, http: httpx.Client) -> None:
    client = make_client(InstagramClient, meta, http)
    request = post("instagram", media_file("image"))
    prepare_and_publish(client, post("instagram", media_file("image"), text="another post"))
    first, _ = prepare_and_publish(client, request)  # an earlier post with the very same caption
    state: dict[str, Any] = {}
    client.prepare(request, state, Saved())
    second = client.publish(request, state)

    assert client.recover(request, state) == second != first


# --- Facebook Page ------------------------------------------------------------------------------------------


def test_facebook_photo_is_uploaded_unpublished_then_posted_with_the_message(meta: FakeMeta,
                                                                            http: httpx.Client) -> None:
    client = make_client(FacebookClient, meta, http)
    request = post("facebook", media_file("image"))

    published, state = prepare_and_publish(client, request)

    upload = meta.calls_to("photos")[0].form()
    assert (upload["url"], upload["published"]) == (request.media[0].url, "false")
    [page_post] = meta.feed()
    assert page_post.photo_ids == [state["photo_id"]]
    assert page_post.message == request.text
    assert published == Published(page_post.id, page_post.permalink_url)


def test_facebook_reel_is_uploaded_from_its_url_and_published(meta: FakeMeta, http: httpx.Client) -> None:
    client = make_client(FacebookClient, meta, http)
    request = post("facebook", media_file("video"))
    token = client.credentials.access_token

    published, state = prepare_and_publish(client, request)

    [upload] = meta.calls_to("video_upload")
    assert upload.headers["authorization"] == f"OAuth {token}"
    assert upload.headers["file_url"] == request.media[0].url
    finish = meta.calls_to("video_reels")[1].form()
    assert (finish["upload_phase"], finish["video_id"], finish["video_state"], finish["description"]) == (
        "finish", state["video_id"], "PUBLISHED", request.text)
    [reel] = meta.published_reels()
    assert published == Published(reel.id, f"https://www.facebook.com/reel/{reel.id}")


def test_repeating_facebook_prepare_starts_no_second_upload(meta: FakeMeta, http: httpx.Client) -> None:
    client = make_client(FacebookClient, meta, http)
    photo, video = post("facebook", media_file("image")), post("facebook", media_file("video"))
    photo_state: dict[str, Any] = {}
    video_state: dict[str, Any] = {}

    for _ in range(2):
        client.prepare(photo, photo_state, Saved())
        client.prepare(video, video_state, Saved())

    assert len(meta.calls_to("photos")) == 1
    assert len(meta.calls_to("video_reels")) == 1
    assert len(meta.calls_to("video_upload")) == 1


def test_lost_facebook_feed_answer_is_recovered_without_posting_twice(meta: FakeMeta) -> None:
    with httpx.Client(timeout=0.3) as http:
        client = make_client(FacebookClient, meta, http)
        request = post("facebook", media_file("image"))
        state: dict[str, Any] = {}
        client.prepare(request, state, Saved())
        meta.inject("feed", Fault.lose_response(0.8))

        with pytest.raises(OutcomeUnknown):
            client.publish(request, state)
        recovered = client.recover(request, state)

    [page_post] = meta.feed()
    assert recovered == Published(page_post.id, page_post.permalink_url)


def test_lost_facebook_reel_finish_is_recovered_without_publishing_twice(meta: FakeMeta) -> None:
    with httpx.Client(timeout=0.3) as http:
        client = make_client(FacebookClient, meta, http)
        request = post("facebook", media_file("video"))
        state: dict[str, Any] = {}
        client.prepare(request, state, Saved())
        meta.inject("video_reels", Fault.lose_response(0.8))

        with pytest.raises(OutcomeUnknown):
            client.publish(request, state)
        recovered = client.recover(request, state)

    [reel] = meta.published_reels()
    assert recovered is not None and recovered.external_id == reel.id
    assert meta.publish_count == 1


@pytest.mark.parametrize("kind", ["image", "video"])
def test_facebook_recover_is_none_when_the_final_call_never_reached_meta(meta: FakeMeta, http: httpx.Client,
                                                                         kind: str) -> None:
    client = make_client(FacebookClient, meta, http)
    request = post("facebook", media_file(kind))
    state: dict[str, Any] = {}
    client.prepare(request, state, Saved())
    meta.inject("feed" if kind == "image" else "video_reels", Fault.respond(503, "upstream unavailable"))

    with pytest.raises(OutcomeUnknown):
        client.publish(request, state)
    assert client.recover(request, state) is None
    client.publish(request, state)

    assert meta.publish_count == 1


def test_facebook_reel_whose_upload_fails_is_refused_with_the_reason(meta: FakeMeta, http: httpx.Client) -> None:
    meta.fail_next_video("The video file could not be fetched from file_url.")
    client = make_client(FacebookClient, meta, http)

    with pytest.raises(PlatformRejected, match="could not be fetched from file_url"):
        client.prepare(post("facebook", media_file("video")), {}, Saved())


def test_facebook_policy_refusal_of_the_post_carries_metas_message(meta: FakeMeta, http: httpx.Client) -> None:
    client = make_client(FacebookClient, meta, http)
    request = post("facebook", media_file("image"))
    state: dict[str, Any] = {}
    client.prepare(request, state, Saved())
    meta.inject("feed", graph_fault(368, "The action attempted has been deemed abusive or is otherwise disallowed",
                                    subcode=1390008))

    with pytest.raises(PlatformRejected) as refused:
        client.publish(request, state)
    assert "deemed abusive" in refused.value.platform_message
    assert isinstance(refused.value, PermanentJobError)
    assert meta.feed() == []


# --- errors and retries shared by both ------------------------------------------------------------------------


def test_a_429_with_retry_after_is_waited_out_then_succeeds(meta: FakeMeta, http: httpx.Client) -> None:
    log: list[str] = []
    client = make_client(FacebookClient, meta, http, log=log)
    meta.inject("photos", Fault.rate_limited(retry_after_s=1))

    started = time.monotonic()
    client.prepare(post("facebook", media_file("image")), {}, Saved())

    assert time.monotonic() - started >= 1.0
    assert len(meta.calls_to("photos")) == 2
    assert any("retry 1 in 1.0 s" in line for line in log)


def test_a_500_on_an_idempotent_step_is_retried(meta: FakeMeta, http: httpx.Client) -> None:
    client = make_client(InstagramClient, meta, http)
    meta.inject("media", Fault.server_error(500, {"error": {"message": "An unknown error occurred", "code": 1}}))
    meta.inject("node", Fault.server_error(502))

    published, _ = prepare_and_publish(client, post("instagram", media_file("image")))

    assert len(meta.calls_to("media")) == 2
    assert [m.id for m in meta.published_media()] == [published.external_id]


def test_a_rate_limit_sent_as_http_400_is_a_transient_error(meta: FakeMeta, http: httpx.Client) -> None:
    client = make_client(InstagramClient, meta, http)
    meta.inject("media", graph_fault(4, "(#4) Application request limit reached"))

    with pytest.raises(GraphRateLimited) as limited:
        client.prepare(post("instagram", media_file("image")), {}, Saved())
    assert isinstance(limited.value, TransientError)
    assert len(meta.calls_to("media")) == 1


@pytest.mark.parametrize("cls", [InstagramClient, FacebookClient])
def test_an_expired_token_raises_token_expired(meta: FakeMeta, http: httpx.Client,
                                               cls: type[PlatformClient]) -> None:
    client = make_client(cls, meta, http)
    meta.oauth.expire_access_tokens()

    with pytest.raises(TokenExpired, match="190"):
        client.prepare(post(cls.platform, media_file("image")), {}, Saved())


def test_another_pages_token_is_refused_as_a_permission_error(meta: FakeMeta, http: httpx.Client) -> None:
    client = make_client(FacebookClient, meta, http, token=meta.oauth.grant(subject="page:999").access_token)

    with pytest.raises(PlatformRejected, match=r"\(code 200\)"):
        client.prepare(post("facebook", media_file("image")), {}, Saved())


def test_the_token_never_appears_in_urls_logs_or_the_plan(meta: FakeMeta, http: httpx.Client) -> None:
    log: list[str] = []
    client = make_client(FacebookClient, meta, http, log=log)
    token = client.credentials.access_token
    meta.inject("photos", Fault.server_error(500))

    prepare_and_publish(client, post("facebook", media_file("image")))
    plans = [client.plan(post("facebook", media_file(kind))) for kind in ("image", "video")]
    plans.append(make_client(InstagramClient, meta, http).plan(post("instagram", media_file("video"))))

    assert all("access_token" not in call.query and token not in call.path for call in meta.calls)
    assert log and not any(token in line for line in log)
    assert plans and not any(token in repr(plan) for plan in plans)
    assert not any("abc123" in repr(plan) for plan in plans)  # nor the media link's signature


# --- validation and plans -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [InstagramClient, FacebookClient])
def test_validate_refuses_two_media_files_and_none(meta: FakeMeta, http: httpx.Client,
                                                   cls: type[PlatformClient]) -> None:
    client = make_client(cls, meta, http)

    with pytest.raises(PlatformRejected, match="one image or video per post; this post has 2"):
        client.validate(post(cls.platform, media_file("image"), media_file("image")))
    with pytest.raises(PlatformRejected, match="needs one image or video"):
        client.validate(post(cls.platform))
    assert meta.calls == []


@pytest.mark.parametrize(("text", "message"), [
    ("x" * 2201, "2201 characters; Instagram allows 2200"),
    (" ".join(f"#tag{i}" for i in range(31)), "31 hashtags; Instagram allows 30"),
])
def test_instagram_refuses_captions_over_its_limits(meta: FakeMeta, http: httpx.Client, text: str,
                                                    message: str) -> None:
    with pytest.raises(PlatformRejected, match=message):
        make_client(InstagramClient, meta, http).validate(post("instagram", media_file("image"), text=text))


def test_instagram_refuses_images_that_are_not_jpeg(meta: FakeMeta, http: httpx.Client) -> None:
    with pytest.raises(PlatformRejected, match="JPEG images only"):
        make_client(InstagramClient, meta, http).validate(
            post("instagram", media_file("image", content_type="image/png")))


def test_the_instagram_plan_lists_the_calls_a_publish_makes(meta: FakeMeta, http: httpx.Client) -> None:
    client = make_client(InstagramClient, meta, http)

    plan = client.plan(post("instagram", media_file("video")))

    assert [(c.method, c.url.removeprefix(meta.url + "/v21.0")) for c in plan] == [
        ("GET", f"/{meta.page.ig_user_id}/content_publishing_limit"),
        ("POST", f"/{meta.page.ig_user_id}/media"), ("GET", "/{container-id}"),
        ("POST", f"/{meta.page.ig_user_id}/media_publish"), ("GET", "/{media-id}"),
    ]
    assert plan[1].fields["media_type"] == "REELS" and plan[1].fields["is_ai_generated"] == "true"
    assert plan[1].fields["video_url"] == "https://cdn.example.test/assets/7.mp4?…"
    assert meta.calls == []


def test_client_classes_are_found_by_platform_name() -> None:
    assert client_class("instagram") is InstagramClient
    assert client_class("facebook") is FacebookClient


# --- the fake's OAuth side, as core/publishing/oauth.py uses it ------------------------------------------------------


def test_facebook_login_gives_a_long_lived_token_and_page_tokens_that_publish(meta: FakeMeta,
                                                                             http: httpx.Client) -> None:
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect_uri = "http://127.0.0.1:8501/oauth/callback"
    app = {"client_id": "meta-app-id", "client_secret": "meta-app-secret"}

    dialog = http.get(meta.url + "/v21.0/dialog/oauth", params={
        "client_id": "meta-app-id", "redirect_uri": redirect_uri, "state": "s-1", "response_type": "code",
        "scope": "pages_manage_posts,instagram_content_publish", "code_challenge": challenge,
        "code_challenge_method": "S256"})
    assert dialog.status_code == 302
    back = parse_qs(urlsplit(dialog.headers["location"]).query)
    assert back["state"] == ["s-1"]

    short = http.post(meta.url + "/v21.0/oauth/access_token", data={
        **app, "redirect_uri": redirect_uri, "code": back["code"][0], "code_verifier": verifier}).json()
    assert short["token_type"] == "bearer" and short["expires_in"] > 0
    long_lived = http.get(meta.url + "/v21.0/oauth/access_token", params={
        **app, "grant_type": "fb_exchange_token", "fb_exchange_token": short["access_token"]}).json()
    assert long_lived["expires_in"] == 5_184_000
    accounts = http.get(meta.url + "/v21.0/me/accounts", params={
        "fields": "id,name,access_token,instagram_business_account{id,username}",
        "access_token": long_lived["access_token"]}).json()
    [page] = accounts["data"]
    assert page["instagram_business_account"] == {"id": meta.page.ig_user_id, "username": meta.page.ig_username}

    prepare_and_publish(make_client(InstagramClient, meta, http, token=page["access_token"]),
                        post("instagram", media_file("image")))
    assert len(meta.published_media()) == 1


def test_facebook_login_refuses_a_wrong_verifier_and_an_unregistered_redirect(meta: FakeMeta,
                                                                            http: httpx.Client) -> None:
    dialog = http.get(meta.url + "/v21.0/dialog/oauth", params={
        "client_id": "meta-app-id", "redirect_uri": "https://evil.example/cb", "state": "s", "response_type": "code",
        "code_challenge": "c" * 43, "code_challenge_method": "S256"})
    assert dialog.status_code == 400
    assert dialog.json()["error"]["code"] == 191

    location = meta.oauth.authorize(client_id="meta-app-id", redirect_uri="http://127.0.0.1:8501/oauth/callback",
                                    state="s", code_challenge="c" * 43, code_challenge_method="S256")
    code = parse_qs(urlsplit(location).query)["code"][0]
    refused = http.get(meta.url + "/v21.0/oauth/access_token", params={
        "client_id": "meta-app-id", "client_secret": "meta-app-secret",
        "redirect_uri": "http://127.0.0.1:8501/oauth/callback", "code": code, "code_verifier": "wrong"})
    assert refused.status_code == 400
    assert "code_verifier" in refused.json()["error"]["message"]


# --- the documented rules the fake enforces (issue #29) --------------------------------------------------------

# https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/error-codes/
@pytest.mark.parametrize(("code", "subcode"), [(-1, 2207001), (-2, 2207003), (-1, 2207032), (-1, 2207053)])
def test_instagram_try_again_codes_are_transient_not_refusals(meta: FakeMeta, http: httpx.Client, code: int,
                                                              subcode: int) -> None:
    client = make_client(InstagramClient, meta, http)
    meta.inject("media", graph_fault(code, "Instagram server error. Try again.", subcode=subcode))
    with pytest.raises(TransientError) as raised:
        client.prepare(post("instagram", media_file("image")), {}, Saved())
    assert not isinstance(raised.value, PlatformRejected)
    published, _ = prepare_and_publish(client, post("instagram", media_file("image")))  # the retry goes through
    assert [m.id for m in meta.published_media()] == [published.external_id]


def test_a_spent_instagram_quota_defers_before_any_container(meta: FakeMeta, http: httpx.Client) -> None:
    meta.publishing_quota = 1
    client = make_client(InstagramClient, meta, http)
    prepare_and_publish(client, post("instagram", media_file("image")))
    with pytest.raises(PublishDeferred, match="used its 1 API posts") as deferred:
        client.prepare(post("instagram", media_file("image"), text="second"), {}, Saved())
    assert deferred.value.until > utcnow()
    assert len(meta.calls_to("media")) == 1  # no second container


def test_instagram_daily_cap_code_9_defers_the_post_instead_of_failing_it(meta: FakeMeta, http: httpx.Client) -> None:
    meta.publishing_quota = 1
    client = make_client(InstagramClient, meta, http)
    first, second = post("instagram", media_file("image")), post("instagram", media_file("image"), text="second")
    state: dict[str, Any] = {}
    client.prepare(second, state, Saved())  # quota read while nothing was posted yet
    prepare_and_publish(client, first)
    with pytest.raises(PublishDeferred, match="2207042"):  # the fake refuses the publish beyond the cap
        client.publish(second, state)
    assert len(meta.published_media()) == 1


def test_the_fake_instagram_refuses_fetched_feed_images_outside_4_5_to_1_91(http: httpx.Client) -> None:
    with FakeMeta(fetch_media=True, container_polls=0).running() as meta:
        url = meta.serve_file("tall.jpg", _jpeg(90, 160), "image/jpeg")
        answer = httpx.post(f"{meta.url}/v21.0/{meta.page.ig_user_id}/media", timeout=5,
                            data={"image_url": url, "caption": "c", "access_token": meta.page_token()})
        assert answer.status_code == 400
        assert (answer.json()["error"]["code"], answer.json()["error"]["error_subcode"]) == (36003, 2207009)
        tall = MediaFile(asset_id=7, kind="image", content_type="image/jpeg", size=1, url=url,
                         read=lambda offset, length: b"", width=1080, height=1920)
        with pytest.raises(PlatformRejected, match=r"4:5 to 1\.91:1"):  # the client refuses it before any call
            make_client(InstagramClient, meta, http).validate(post("instagram", tall))


def test_lost_facebook_feed_answer_is_found_beyond_the_first_25_posts(meta: FakeMeta) -> None:
    with httpx.Client(timeout=0.3) as http:
        client = make_client(FacebookClient, meta, http)
        request = post("facebook", media_file("image"))
        state: dict[str, Any] = {}
        client.prepare(request, state, Saved())
        meta.inject("feed", Fault.lose_response(0.8))
        with pytest.raises(OutcomeUnknown):
            client.publish(request, state)
    [ours] = meta.feed()
    later = time.time() + 60
    for number in range(130):  # a busy Page: 130 newer posts, more than one page of the biggest size
        newer = PagePost(f"{meta.page.id}_9{number:05d}", meta.page.id, f"other {number}", [], later + number)
        meta.posts[newer.id] = newer
    with httpx.Client(timeout=5) as http:
        recovered = make_client(FacebookClient, meta, http).recover(request, state)
    assert recovered == Published(ours.id, ours.permalink_url)
    assert len(meta.calls_to("feed_list")) == 2  # 100, then the page holding ours
