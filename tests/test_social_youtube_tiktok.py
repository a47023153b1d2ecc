"""The YouTube Shorts and TikTok publishing clients against local fakes of Google's and TikTok's APIs.

Everything goes over real HTTP. The upload is each platform's final act, so a lost answer to its last
chunk must be recovered (never uploaded again), and an interrupted upload must resume where the
platform says it stands.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from core.config import Settings
from core.errors import TransientError
from core.infra.http_retry import OutcomeUnknown, RetryPolicy
from tests.fakes.google import FakeGoogle, google_error_body
from tests.fakes.server import Fault
from tests.fakes.tiktok import FakeTikTok, chunk_plan_error, tiktok_error_body
from workers.social.base import (
    Credentials,
    MediaFile,
    PlatformClient,
    PlatformRejected,
    PublishDeferred,
    PublishRequest,
    TokenExpired,
)
from workers.social.tiktok import (
    MAX_CHUNK,
    MAX_LAST_CHUNK,
    MIN_CHUNK,
    StillProcessing,
    TikTokClient,
    chunk_plan,
)
from workers.social.youtube import QuotaExceeded, YouTubeClient

pytestmark = pytest.mark.clock  # also run at awkward moments (tests/clock.py): token expiry and refresh

MB = 1_000_000
MIB = 1024 * 1024
REDIRECT_URI = "http://127.0.0.1:8501/oauth/callback"
SHORT_TIMEOUT_S = 1.0  # the client's wait where a test loses an answer
LOST_FOR_S = 2.0  # how long the fake holds a lost answer (longer than SHORT_TIMEOUT_S)


@pytest.fixture(scope="module")
def video() -> bytes:
    """16 MB of noise: with 5 MiB chunks, four on YouTube (the last 265 KiB) and three on TikTok (the last
    taking the trailing bytes)."""
    return os.urandom(16 * MB)


def media_of(data: bytes, *, kind: str = "video", content_type: str = "video/mp4") -> MediaFile:
    return MediaFile(asset_id=1, kind=kind, content_type=content_type, size=len(data), url="http://unused.invalid/",
                     read=lambda offset, length: data[offset:offset + length], width=1080, height=1920,
                     duration_s=12.0)


def publish_request(platform: str, data: bytes, **changes: Any) -> PublishRequest:
    fields: dict[str, Any] = {
        "post_id": 7, "platform": platform, "text": "Morning run by the sea #run #ai", "title": "Morning run",
        "hashtags": ["#run", "#ai"], "media": [media_of(data)], "ai_generated": True,
        # TikTok has no default privacy: the user picks one (here the one an unaudited app may post).
        "options": {"privacy_level": "SELF_ONLY"} if platform == "tiktok" else {},
    }
    return PublishRequest(**(fields | changes))


def settings_for(fake: FakeGoogle | FakeTikTok, **changes: Any) -> Settings:
    defaults = {"publish_chunk_mb": 5, "publish_status_poll_s": 0.01, "publish_status_timeout_s": 5}
    return Settings(_env_file=None, **(defaults | fake.settings() | changes))


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle(redirect_uris={REDIRECT_URI}).running() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def tiktok() -> Iterator[FakeTikTok]:
    with FakeTikTok(redirect_uris={REDIRECT_URI}, processing_polls=2).running() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def http_clients() -> Iterator[list[httpx.Client]]:
    clients: list[httpx.Client] = []
    yield clients
    for client in clients:
        client.close()


@pytest.fixture
def logs() -> list[str]:
    return []


MakeClient = Callable[..., Any]


@pytest.fixture
def youtube_client(google: FakeGoogle, http_clients: list[httpx.Client], logs: list[str]) -> MakeClient:
    def make(*, timeout: float = 10.0, access_token: str | None = None, **settings: Any) -> YouTubeClient:
        http = httpx.Client(timeout=timeout)
        http_clients.append(http)
        token = access_token or google.oauth.grant().access_token
        client = YouTubeClient(http, settings_for(google, **settings),
                               Credentials(account_id=1, external_id=google.oauth.subject, access_token=token),
                               log=logs.append)
        client.policy = RetryPolicy(max_retries=3, backoff_s=0.01, backoff_max_s=0.05)
        return client

    return make


@pytest.fixture
def tiktok_client(tiktok: FakeTikTok, http_clients: list[httpx.Client], logs: list[str]) -> MakeClient:
    def make(*, timeout: float = 10.0, access_token: str | None = None, **settings: Any) -> TikTokClient:
        http = httpx.Client(timeout=timeout)
        http_clients.append(http)
        token = access_token or tiktok.oauth.grant().access_token
        client = TikTokClient(http, settings_for(tiktok, **settings),
                              Credentials(account_id=2, external_id=tiktok.oauth.subject, access_token=token,
                                          meta={"username": "fake.creator"}),
                              log=logs.append)
        client.policy = RetryPolicy(max_retries=3, backoff_s=0.01, backoff_max_s=0.05)
        return client

    return make


def prepare(client: PlatformClient, request: PublishRequest, state: dict[str, Any]) -> list[dict[str, Any]]:
    """validate + prepare as the publish handler runs them; returns the states saved."""
    saved: list[dict[str, Any]] = []
    client.validate(request)
    client.prepare(request, state, lambda s: saved.append(dict(s)))
    return saved


def assert_no_token(token: str, *things: Any) -> None:
    for thing in things:
        assert token not in repr(thing)


def pkce_pair(*, hex_challenge: bool = False) -> tuple[str, str]:
    """RFC 7636 S256 (base64url), or TikTok Desktop's hex-encoded variant."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, digest.hex() if hex_challenge else base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def code_from(redirect: httpx.Response, state: str) -> str:
    assert redirect.status_code == 302
    query = parse_qs(urlsplit(redirect.headers["location"]).query)
    assert query["state"] == [state]
    return query["code"][0]


# --- YouTube -----------------------------------------------------------------------------------------------


def test_youtube_upload_sends_the_metadata_and_the_exact_bytes_and_makes_one_video(
        google: FakeGoogle, youtube_client: MakeClient, video: bytes, logs: list[str]) -> None:
    client = youtube_client()
    request = publish_request("youtube", video, options={"privacy": "unlisted", "made_for_kids": False})
    state: dict[str, Any] = {}
    saved = prepare(client, request, state)
    published = client.publish(request, state)

    start = google.calls_to("upload_start")[0]
    assert start.query == {"uploadType": "resumable", "part": "snippet,status"}
    assert start.headers["x-upload-content-length"] == str(len(video))
    assert start.headers["x-upload-content-type"] == "video/mp4"
    assert start.json() == {
        "snippet": {"title": "Morning run", "description": "Morning run by the sea #run #ai", "tags": ["run", "ai"],
                    "categoryId": "22"},
        "status": {"privacyStatus": "unlisted", "selfDeclaredMadeForKids": False, "containsSyntheticMedia": True},
    }
    [made] = google.videos(google.oauth.subject)
    assert made.data == video
    assert made.status["containsSyntheticMedia"] is True
    assert published.external_id == made.id
    assert published.permalink == f"https://youtube.com/shorts/{made.id}"
    assert google.chunk_ranges() == [(0, 5 * MIB - 1), (5 * MIB, 10 * MIB - 1), (10 * MIB, 15 * MIB - 1),
                                     (15 * MIB, len(video) - 1)]
    assert saved and saved[0]["session_uri"].startswith(google.url)
    assert_no_token(client.credentials.access_token, saved, state, logs)


def test_youtube_session_start_is_retried_after_a_429_and_a_500(
        google: FakeGoogle, youtube_client: MakeClient, video: bytes) -> None:
    google.inject("upload_start",
                  Fault.rate_limited(0, google_error_body(429, "rateLimitExceeded", "Slow down.")),
                  Fault.server_error(500, google_error_body(500, "backendError", "Backend Error")))
    client = youtube_client()
    request = publish_request("youtube", video)
    state: dict[str, Any] = {}
    prepare(client, request, state)
    client.publish(request, state)

    assert [call.status for call in google.calls_to("upload_start")] == [429, 500, 200]
    assert len(google.videos()) == 1


def test_youtube_lost_answer_to_the_final_chunk_is_recovered_without_a_second_video(
        google: FakeGoogle, youtube_client: MakeClient, video: bytes) -> None:
    client = youtube_client(timeout=SHORT_TIMEOUT_S)
    request = publish_request("youtube", video)
    state: dict[str, Any] = {}
    prepare(client, request, state)
    google.inject("upload", Fault.stall(0), Fault.stall(0), Fault.stall(0), Fault.lose_response(LOST_FOR_S))

    with pytest.raises(OutcomeUnknown):
        client.publish(request, state)
    recovered = client.recover(request, state)

    [made] = google.videos()
    assert recovered is not None and recovered.external_id == made.id
    assert made.data == video
    assert google.calls_to("upload")[-1].headers["content-range"] == f"bytes */{len(video)}"


def test_youtube_interrupted_upload_resumes_from_the_servers_range_not_from_zero(
        google: FakeGoogle, youtube_client: MakeClient, video: bytes) -> None:
    client = youtube_client()
    request = publish_request("youtube", video)
    state: dict[str, Any] = {}
    prepare(client, request, state)
    google.inject("upload", Fault.stall(0), Fault.server_error(503))

    with pytest.raises(OutcomeUnknown):
        client.publish(request, state)
    assert client.recover(request, state) is None
    assert state["upload_offset"] == 5 * MIB
    saved = prepare(client, request, state)  # the handler prepares again: same session, offset kept
    published = client.publish(request, state)

    assert len(google.calls_to("upload_start")) == 1
    assert saved[-1]["upload_offset"] == 5 * MIB
    assert google.chunk_ranges() == [(0, 5 * MIB - 1), (5 * MIB, 10 * MIB - 1),  # the second one failed
                                     (5 * MIB, 10 * MIB - 1), (10 * MIB, 15 * MIB - 1), (15 * MIB, len(video) - 1)]
    [made] = google.videos()
    assert made.data == video and published.external_id == made.id


def test_youtube_publish_that_lost_track_of_the_offset_continues_where_the_server_says(
        google: FakeGoogle, youtube_client: MakeClient, video: bytes) -> None:
    client = youtube_client()
    request = publish_request("youtube", video)
    state: dict[str, Any] = {}
    prepare(client, request, state)
    google.inject("upload", Fault.stall(0), Fault.server_error(503))
    with pytest.raises(OutcomeUnknown):
        client.publish(request, state)
    state["upload_offset"] = 0  # as if recover's note had not been kept

    client.publish(request, state)
    assert google.chunk_ranges()[2:] == [(0, 5 * MIB - 1), (5 * MIB, 10 * MIB - 1), (10 * MIB, 15 * MIB - 1),
                                         (15 * MIB, len(video) - 1)]  # the server kept nothing of the first
    [made] = google.videos()
    assert made.data == video


def test_the_fake_youtube_refuses_angle_brackets_in_a_description(google: FakeGoogle) -> None:
    # https://developers.google.com/youtube/v3/docs/videos#snippet.description: no < or >.
    answer = httpx.post(f"{google.url}/upload/youtube/v3/videos", timeout=10,
                        params={"uploadType": "resumable", "part": "snippet,status"},
                        json={"snippet": {"title": "Run", "description": "Love it <3"}, "status": {}},
                        headers={"Authorization": f"Bearer {google.oauth.grant().access_token}",
                                 "X-Upload-Content-Type": "video/mp4", "X-Upload-Content-Length": "10"})
    assert answer.status_code == 400 and answer.json()["error"]["errors"][0]["reason"] == "invalidDescription"


def test_youtube_upload_of_an_unaudited_project_is_recorded_as_locked_private(
        google: FakeGoogle, youtube_client: MakeClient, video: bytes) -> None:
    # videos.insert: uploads from unverified API projects are restricted to private viewing mode.
    client = youtube_client()
    request = publish_request("youtube", video, options={"privacy": "public"})
    state: dict[str, Any] = {}
    prepare(client, request, state)
    published = client.publish(request, state)
    [made] = google.videos()
    assert made.status["privacyStatus"] == "private"
    assert published.notice is not None and "private, not public" in published.notice

    google.audited = True
    state = {}
    prepare(client, request, state)
    assert client.publish(request, state).notice is None


def test_youtube_retry_a_week_later_finds_the_finished_upload_instead_of_uploading_again(
        google: FakeGoogle, youtube_client: MakeClient, video: bytes) -> None:
    # Resumable sessions last a week, finished ones included: afterwards the session URI answers 404.
    google.audited = True
    client = youtube_client()
    request = publish_request("youtube", video)
    state: dict[str, Any] = {}
    prepare(client, request, state)
    published = client.publish(request, state)
    google.expire_sessions()

    recovered = client.recover(request, dict(state, video_id=None))
    assert recovered is not None and recovered.external_id == published.external_id
    assert len(google.videos()) == 1 and len(google.calls_to("upload_start")) == 1


def test_youtube_expired_session_recovers_as_not_published_and_a_new_session_is_started(
        google: FakeGoogle, youtube_client: MakeClient, video: bytes) -> None:
    client = youtube_client()
    request = publish_request("youtube", video)
    state: dict[str, Any] = {}
    prepare(client, request, state)
    first_session = state["session_uri"]
    google.expire_sessions()

    assert client.recover(request, state) is None
    assert "session_uri" not in state
    prepare(client, request, state)
    client.publish(request, state)

    assert state["session_uri"] != first_session
    assert len(google.calls_to("upload_start")) == 2
    assert [v.data == video for v in google.videos()] == [True]


def test_youtube_expired_token_raises_token_expired_and_the_refresh_grant_gives_a_working_token(
        google: FakeGoogle, youtube_client: MakeClient, video: bytes) -> None:
    verifier, challenge = pkce_pair()
    with httpx.Client(base_url=google.url, timeout=10) as http:
        redirect = http.get("/o/oauth2/v2/auth", params={
            "client_id": google.oauth.client_id, "redirect_uri": REDIRECT_URI, "response_type": "code",
            "scope": "https://www.googleapis.com/auth/youtube.upload", "state": "s1", "code_challenge": challenge,
            "code_challenge_method": "S256", "access_type": "offline", "prompt": "consent"})
        tokens = http.post("/token", data={
            "grant_type": "authorization_code", "code": code_from(redirect, "s1"), "redirect_uri": REDIRECT_URI,
            "client_id": google.oauth.client_id, "client_secret": google.oauth.client_secret,
            "code_verifier": verifier}).json()
        assert tokens["token_type"] == "Bearer" and tokens["refresh_token"]
        channels = http.get("/youtube/v3/channels", params={"part": "snippet", "mine": "true"},
                            headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
        assert channels["items"][0]["id"] == google.oauth.subject

        google.oauth.expire_access_tokens()
        request = publish_request("youtube", video)
        with pytest.raises(TokenExpired):
            prepare(youtube_client(access_token=tokens["access_token"]), request, {})

        refreshed = http.post("/token", data={
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
            "client_id": google.oauth.client_id, "client_secret": google.oauth.client_secret}).json()
    assert "refresh_token" not in refreshed and refreshed["access_token"] != tokens["access_token"]
    client = youtube_client(access_token=refreshed["access_token"])
    state: dict[str, Any] = {}
    prepare(client, request, state)
    client.publish(request, state)
    assert len(google.videos()) == 1


@pytest.mark.parametrize(("status", "reason", "message"), [
    (403, "uploadLimitExceeded", "The user has exceeded the number of videos they may upload."),
    (400, "invalidTitle", "The request metadata specifies an invalid video title."),
    (403, "forbidden", "Access forbidden. The request may not be properly authorized."),
])
def test_youtube_permanent_refusals_raise_platform_rejected_with_googles_message(
        google: FakeGoogle, youtube_client: MakeClient, video: bytes, status: int, reason: str,
        message: str) -> None:
    google.inject("upload_start", Fault.respond(status, google_error_body(status, reason, message)))
    with pytest.raises(PlatformRejected) as refused:
        prepare(youtube_client(), publish_request("youtube", video), {})
    assert refused.value.platform_message == f"{message} ({reason})"
    assert refused.value.status == status


def test_youtube_quota_exceeded_is_a_transient_error_not_a_refusal(
        google: FakeGoogle, youtube_client: MakeClient, video: bytes) -> None:
    google.inject("upload_start", Fault.respond(403, google_error_body(
        403, "quotaExceeded", "The request cannot be completed because you have exceeded your quota.",
        domain="youtube.quota")))
    with pytest.raises(QuotaExceeded) as failed:
        prepare(youtube_client(), publish_request("youtube", video), {})
    assert isinstance(failed.value, TransientError) and not isinstance(failed.value, PlatformRejected)


@pytest.mark.parametrize(("changes", "complaint"), [
    ({"media": [media_of(b"\x89PNG....", kind="image", content_type="image/png")]}, "exactly one video"),
    ({"title": "x" * 101}, "1 to 100 characters"),
    ({"title": "  "}, "1 to 100 characters"),
    ({"title": "Best <video> ever"}, "< or >"),
    ({"text": "é" * 2501}, "5000 bytes"),
    ({"hashtags": [f"#tag number {i}" for i in range(40)]}, "500 characters"),
    ({"options": {"privacy": "friends"}}, "privacy must be"),
    ({"text": "Love this run <3"}, "description may not contain < or >"),  # snippet.description's rule
    ({"text": "Warm-up -> run"}, "description may not contain < or >"),
])
def test_youtube_refuses_what_it_cannot_post_before_any_call(
        google: FakeGoogle, youtube_client: MakeClient, video: bytes, changes: dict[str, Any],
        complaint: str) -> None:
    with pytest.raises(PlatformRejected, match=complaint):
        youtube_client().validate(publish_request("youtube", video, **changes))
    assert google.calls == []


def test_youtube_plan_lists_the_session_start_and_every_chunk_without_the_token(
        youtube_client: MakeClient, video: bytes) -> None:
    client = youtube_client()
    plan = client.plan(publish_request("youtube", video))
    assert [(call.method, call.fields.get("Content-Range")) for call in plan] == [
        ("POST", None), ("PUT", f"bytes 0-{5 * MIB - 1}/{len(video)}"),
        ("PUT", f"bytes {5 * MIB}-{10 * MIB - 1}/{len(video)}"),
        ("PUT", f"bytes {10 * MIB}-{15 * MIB - 1}/{len(video)}"),
        ("PUT", f"bytes {15 * MIB}-{len(video) - 1}/{len(video)}")]
    assert plan[0].fields["status"]["containsSyntheticMedia"] is True
    assert_no_token(client.credentials.access_token, plan)


# --- TikTok ------------------------------------------------------------------------------------------------


def test_tiktok_direct_post_follows_the_chunk_rules_and_makes_one_private_post_with_the_ai_label(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes, logs: list[str]) -> None:
    client = tiktok_client()
    request = publish_request("tiktok", video)
    state: dict[str, Any] = {}
    saved = prepare(client, request, state)
    published = client.publish(request, state)

    init = tiktok.calls_to("init")[0].json()
    assert init["post_info"] == {"title": request.text, "privacy_level": "SELF_ONLY", "disable_comment": False,
                                 "disable_duet": False, "disable_stitch": False, "is_aigc": True}
    assert [c.route for c in tiktok.calls][:2] == ["creator_info", "init"]  # creator info first, every post
    source = init["source_info"]
    assert source == {"source": "FILE_UPLOAD", "video_size": len(video), "chunk_size": 5 * MIB,
                      "total_chunk_count": 3}
    assert chunk_plan_error(source["video_size"], source["chunk_size"], source["total_chunk_count"]) is None
    uploads = tiktok.calls_to("upload")
    assert [(c.status, c.headers["content-type"], c.headers["content-length"]) for c in uploads] == [
        (206, "video/mp4", str(5 * MIB)), (206, "video/mp4", str(5 * MIB)),
        (201, "video/mp4", str(len(video) - 10 * MIB))]
    [post] = tiktok.posts(tiktok.oauth.subject)
    assert post.data == video and post.is_aigc and post.privacy_level == "SELF_ONLY"
    assert len(tiktok.calls_to("status")) == 3  # two PROCESSING_UPLOAD answers, then PUBLISH_COMPLETE
    assert published.external_id == state["publish_id"] == saved[0]["publish_id"]
    assert published.permalink is None  # a private post has no public id
    assert_no_token(client.credentials.access_token, saved, state, logs)


def test_tiktok_public_post_of_an_audited_app_gets_its_post_id_and_permalink(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    tiktok.audited = True
    client = tiktok_client()
    request = publish_request("tiktok", video, options={"privacy_level": "PUBLIC_TO_EVERYONE"})
    state: dict[str, Any] = {}
    prepare(client, request, state)
    published = client.publish(request, state)

    [post] = tiktok.posts()
    assert published.external_id == post.id
    assert published.permalink == f"https://www.tiktok.com/@fake.creator/video/{post.id}"


def test_tiktok_init_and_status_fetch_are_retried_after_a_429_and_a_500(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    tiktok.inject("init", Fault.rate_limited(0, tiktok_error_body("rate_limit_exceeded", "Too many requests.")),
                  Fault.server_error(500, tiktok_error_body("internal_error", "Something went wrong.")))
    tiktok.inject("status", Fault.server_error(502))
    client = tiktok_client()
    request = publish_request("tiktok", video)
    state: dict[str, Any] = {}
    prepare(client, request, state)
    client.publish(request, state)

    assert [call.status for call in tiktok.calls_to("init")] == [429, 500, 200]
    assert tiktok.calls_to("status")[0].status == 502
    assert len(tiktok.posts()) == 1 and len(tiktok.tasks()) == 1


def test_tiktok_lost_answer_to_the_final_chunk_is_recovered_without_a_second_post(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    client = tiktok_client(timeout=SHORT_TIMEOUT_S)
    request = publish_request("tiktok", video)
    state: dict[str, Any] = {}
    prepare(client, request, state)
    tiktok.inject("upload", Fault.stall(0), Fault.stall(0), Fault.lose_response(LOST_FOR_S))

    with pytest.raises(OutcomeUnknown):
        client.publish(request, state)
    recovered = client.recover(request, state)

    assert recovered is not None and recovered.external_id == state["publish_id"]
    [post] = tiktok.posts()
    assert post.data == video
    assert len(tiktok.calls_to("upload")) == 3 and len(tiktok.calls_to("init")) == 1


def test_tiktok_interrupted_upload_resumes_after_the_chunks_tiktok_has(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    client = tiktok_client()
    request = publish_request("tiktok", video)
    state: dict[str, Any] = {}
    prepare(client, request, state)
    tiktok.inject("upload", Fault.stall(0), Fault.server_error(500))

    with pytest.raises(OutcomeUnknown):
        client.publish(request, state)
    assert client.recover(request, state) is None
    assert state["upload_offset"] == 5 * MIB
    prepare(client, request, state)
    published = client.publish(request, state)

    assert len(tiktok.calls_to("init")) == 1
    assert tiktok.chunk_ranges() == [(0, 5 * MIB - 1), (5 * MIB, 10 * MIB - 1),  # the second one failed
                                     (5 * MIB, 10 * MIB - 1), (10 * MIB, len(video) - 1)]
    [post] = tiktok.posts()
    assert post.data == video and published.external_id == post.publish_id


def test_tiktok_publish_that_lost_track_of_the_offset_asks_tiktok_where_to_continue(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    client = tiktok_client()
    request = publish_request("tiktok", video)
    state: dict[str, Any] = {}
    prepare(client, request, state)
    tiktok.inject("upload", Fault.stall(0), Fault.server_error(500))
    with pytest.raises(OutcomeUnknown):
        client.publish(request, state)
    state["upload_offset"] = 0  # as if recover's note had not been kept

    client.publish(request, state)
    assert [c.status for c in tiktok.calls_to("upload")][2:] == [416, 206, 201]
    assert tiktok.chunk_ranges()[2:] == [(0, 5 * MIB - 1), (5 * MIB, 10 * MIB - 1), (10 * MIB, len(video) - 1)]
    [post] = tiktok.posts()
    assert post.data == video


def test_tiktok_upload_that_lapsed_recovers_as_not_posted_and_a_new_init_is_made(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    client = tiktok_client()
    request = publish_request("tiktok", video)
    state: dict[str, Any] = {}
    prepare(client, request, state)
    tiktok.inject("upload", Fault.server_error(500))
    with pytest.raises(OutcomeUnknown):
        client.publish(request, state)
    tiktok.expire_uploads()

    assert client.recover(request, state) is None
    assert "publish_id" not in state and "upload_url" not in state
    prepare(client, request, state)
    client.publish(request, state)
    assert len(tiktok.calls_to("init")) == 2
    assert [post.data == video for post in tiktok.posts()] == [True]


def test_tiktok_unknown_publish_id_recovers_as_not_posted(tiktok_client: MakeClient, video: bytes) -> None:
    state: dict[str, Any] = {"publish_id": "v_pub_file~v2-1.0", "upload_url": "http://127.0.0.1:9/x",
                             "chunk_size": 5 * MIB, "total_chunk_count": 3}
    assert tiktok_client().recover(publish_request("tiktok", video), state) is None
    assert "publish_id" not in state


def test_tiktok_post_still_processing_at_the_timeout_is_found_by_recover(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    tiktok.processing_polls = 30
    client = tiktok_client(publish_status_timeout_s=0.05, publish_status_poll_s=0.01)
    request = publish_request("tiktok", video)
    state: dict[str, Any] = {}
    prepare(client, request, state)
    with pytest.raises(StillProcessing):
        client.publish(request, state)

    recovered = tiktok_client(publish_status_timeout_s=5, publish_status_poll_s=0).recover(request, state)
    assert recovered is not None and recovered.external_id == state["publish_id"]
    assert len(tiktok.posts()) == 1 and len(tiktok.calls_to("upload")) == 3


def test_tiktok_expired_token_raises_token_expired_and_the_refresh_grant_gives_a_working_token(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    verifier, challenge = pkce_pair(hex_challenge=True)  # the fake is a Desktop app
    with httpx.Client(base_url=tiktok.url, timeout=10) as http:
        redirect = http.get("/v2/auth/authorize/", params={
            "client_key": tiktok.oauth.client_id, "scope": "user.info.basic,user.info.profile,video.publish",
            "response_type": "code",
            "redirect_uri": REDIRECT_URI, "state": "s2", "code_challenge": challenge,
            "code_challenge_method": "S256"})
        tokens = http.post("/v2/oauth/token/", data={
            "client_key": tiktok.oauth.client_id, "client_secret": tiktok.oauth.client_secret,
            "code": code_from(redirect, "s2"), "grant_type": "authorization_code", "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier}).json()
        assert tokens["open_id"] == tiktok.oauth.subject and tokens["refresh_token"]
        user = http.get("/v2/user/info/", params={"fields": "open_id,display_name,username"},
                        headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
        assert user["data"]["user"]["username"] == "fake.creator" and user["error"]["code"] == "ok"

        tiktok.oauth.expire_access_tokens()
        request = publish_request("tiktok", video)
        with pytest.raises(TokenExpired):
            prepare(tiktok_client(access_token=tokens["access_token"]), request, {})

        refreshed = http.post("/v2/oauth/token/", data={
            "client_key": tiktok.oauth.client_id, "client_secret": tiktok.oauth.client_secret,
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}).json()
    assert refreshed["access_token"] != tokens["access_token"]
    client = tiktok_client(access_token=refreshed["access_token"])
    state: dict[str, Any] = {}
    prepare(client, request, state)
    client.publish(request, state)
    assert len(tiktok.posts()) == 1


def test_tiktok_privacy_outside_the_creators_options_is_refused_before_any_init(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    # https://developers.tiktok.com/doc/content-posting-api-reference-query-creator-info/: a private
    # account offers fewer privacy levels; init answers privacy_level_option_mismatch for the others.
    tiktok.audited = True
    tiktok.creator["privacy_level_options"] = ["FOLLOWER_OF_CREATOR", "SELF_ONLY"]
    request = publish_request("tiktok", video, options={"privacy_level": "PUBLIC_TO_EVERYONE"})
    with pytest.raises(PlatformRejected, match=r"cannot post to 'Everyone'.*Followers, Only me"):
        prepare(tiktok_client(), request, {})
    assert tiktok.calls_to("init") == [] and len(tiktok.calls_to("creator_info")) == 1


def test_the_fake_tiktok_refuses_what_init_refuses_after_creator_info(tiktok: FakeTikTok, video: bytes) -> None:
    # The stricter fake: privacy outside the creator's options, and private branded content, are refused.
    tiktok.creator["privacy_level_options"] = ["SELF_ONLY"]
    token = tiktok.oauth.grant().access_token
    source = {"source": "FILE_UPLOAD", "video_size": 1000, "chunk_size": 1000, "total_chunk_count": 1}

    def init(post_info: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{tiktok.url}/v2/post/publish/video/init/", timeout=10,
                          json={"post_info": {"title": "t", **post_info}, "source_info": source},
                          headers={"Authorization": f"Bearer {token}"})

    assert init({"privacy_level": "FOLLOWER_OF_CREATOR"}).json()["error"]["code"] == "privacy_level_option_mismatch"
    branded = init({"privacy_level": "SELF_ONLY", "brand_content_toggle": True})
    assert branded.status_code == 400 and "branded content" in branded.json()["error"]["message"]
    assert init({"privacy_level": "SELF_ONLY"}).status_code == 200


def test_tiktok_honours_the_creators_disabled_interactions_duration_and_commercial_disclosure(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    tiktok.creator.update(comment_disabled=True, stitch_disabled=True)
    request = publish_request("tiktok", video, options={"privacy_level": "SELF_ONLY", "disable_duet": True,
                                                        "brand_organic_toggle": True})
    prepare(tiktok_client(), request, {})
    post_info = tiktok.calls_to("init")[0].json()["post_info"]
    assert (post_info["disable_comment"], post_info["disable_duet"], post_info["disable_stitch"]) == (True, True, True)
    assert post_info["brand_organic_toggle"] is True and "brand_content_toggle" not in post_info
    tiktok.creator["max_video_post_duration_sec"] = 10  # the test video lasts 12 s
    with pytest.raises(PlatformRejected, match="at most 10 s"):
        prepare(tiktok_client(), request, {})
    assert len(tiktok.calls_to("init")) == 1


def test_tiktok_unaudited_app_posting_publicly_is_refused_with_tiktoks_message(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    # The setting wrongly says the app passed TikTok's audit: TikTok itself refuses.
    request = publish_request("tiktok", video, options={"privacy_level": "PUBLIC_TO_EVERYONE"})
    with pytest.raises(PlatformRejected, match="Unaudited clients can only post to private accounts") as refused:
        prepare(tiktok_client(tiktok_app_audited=True), request, {})
    assert refused.value.status == 403 and tiktok.tasks() == []


def test_an_unaudited_tiktok_app_refuses_anything_but_only_me_before_any_call_and_says_why(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    for privacy in ("PUBLIC_TO_EVERYONE", "FOLLOWER_OF_CREATOR"):
        request = publish_request("tiktok", video, options={"privacy_level": privacy})
        with pytest.raises(PlatformRejected, match="not passed TikTok's audit") as refused:
            prepare(tiktok_client(), request, {})
        assert "developers.tiktok.com/doc/content-sharing-guidelines" in str(refused.value)
        assert "5 users" in str(refused.value)
    assert tiktok.calls == []  # refused before creator_info or init


def test_the_fake_tiktok_holds_an_unaudited_client_to_private_accounts_and_five_users_a_day(
        tiktok: FakeTikTok) -> None:
    # https://developers.tiktok.com/doc/content-sharing-guidelines: unaudited clients post SELF_ONLY only,
    # from accounts set to private, for up to 5 users in 24 hours.
    source = {"source": "FILE_UPLOAD", "video_size": 1000, "chunk_size": 1000, "total_chunk_count": 1}

    def init(user: str, privacy: str = "SELF_ONLY") -> httpx.Response:
        token = tiktok.oauth.grant(subject=user).access_token
        return httpx.post(f"{tiktok.url}/v2/post/publish/video/init/", timeout=10,
                          json={"post_info": {"title": "t", "privacy_level": privacy}, "source_info": source},
                          headers={"Authorization": f"Bearer {token}"})

    assert init("user-1", "MUTUAL_FOLLOW_FRIENDS").json()["error"]["code"] == (
        "unaudited_client_can_only_post_to_private_accounts")
    assert [init(f"user-{n}").status_code for n in range(1, 6)] == [200] * 5
    sixth = init("user-6")
    assert sixth.status_code == 403 and sixth.json()["error"]["code"] == "reached_active_user_cap"
    assert init("user-1").status_code == 200  # one of the five posts again
    tiktok.private_account = False
    assert init("user-2").json()["error"]["code"] == "unaudited_client_can_only_post_to_private_accounts"
    tiktok.audited = True
    assert init("user-7", "PUBLIC_TO_EVERYONE").status_code == 200  # an audited client has none of these limits


def test_tiktok_daily_caps_defer_the_post_instead_of_failing_it(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    tiktok.inject("init", Fault.respond(403, tiktok_error_body(
        "spam_risk_too_many_posts", "The daily post cap from the API is reached for the current user.")))
    with pytest.raises(PublishDeferred, match="spam_risk_too_many_posts"):
        prepare(tiktok_client(), publish_request("tiktok", video), {})
    assert tiktok.tasks() == []


@pytest.mark.parametrize(("status", "code", "message"), [
    (400, "privacy_level_option_mismatch", "privacy_level is not one of the creator's options."),
    (400, "invalid_params", "The request parameters are invalid."),
])
def test_tiktok_permanent_refusals_raise_platform_rejected_with_tiktoks_message(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes, status: int, code: str, message: str) -> None:
    tiktok.inject("init", Fault.respond(status, tiktok_error_body(code, message)))
    with pytest.raises(PlatformRejected) as refused:
        prepare(tiktok_client(), publish_request("tiktok", video), {})
    assert refused.value.platform_message == f"{message} ({code})"


def test_tiktok_processing_failure_is_a_refusal_naming_the_fail_reason(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes) -> None:
    tiktok.processing_fail_reason = "file_format_check_failed"
    client = tiktok_client()
    request = publish_request("tiktok", video)
    state: dict[str, Any] = {}
    prepare(client, request, state)
    with pytest.raises(PlatformRejected, match="file_format_check_failed"):
        client.publish(request, state)
    with pytest.raises(PlatformRejected, match="file_format_check_failed"):  # recover says the same
        client.recover(request, state)
    assert tiktok.posts() == []


@pytest.mark.parametrize(("changes", "complaint"), [
    ({"media": [media_of(b"\xff\xd8....", kind="image", content_type="image/jpeg")]}, "exactly one video"),
    ({"media": [media_of(b"x" * 100, content_type="video/x-matroska")]}, "MP4, MOV or WebM"),
    ({"text": "a" * 2201}, "2200"),
    ({"text": "🏃" * 1101}, "2200"),  # 2202 UTF-16 units in 1101 characters
    ({"options": {"privacy_level": "EVERYONE"}}, "privacy_level"),
    ({"options": {}}, "choose who can see this TikTok post"),  # no default privacy (TikTok's UX rules)
    ({"options": {"privacy_level": "SELF_ONLY", "brand_content_toggle": True}}, "branded content"),
])
def test_tiktok_refuses_what_it_cannot_post_before_any_call(
        tiktok: FakeTikTok, tiktok_client: MakeClient, video: bytes, changes: dict[str, Any],
        complaint: str) -> None:
    with pytest.raises(PlatformRejected, match=complaint):
        tiktok_client().validate(publish_request("tiktok", video, **changes))
    assert tiktok.calls == []


def test_tiktok_caption_of_2200_utf16_units_is_accepted(tiktok_client: MakeClient, video: bytes) -> None:
    tiktok_client().validate(publish_request("tiktok", video, text="🏃" * 1100))


def test_tiktok_plan_lists_init_chunks_and_status_without_the_token(
        tiktok_client: MakeClient, video: bytes) -> None:
    client = tiktok_client()
    plan = client.plan(publish_request("tiktok", video))
    assert [call.method for call in plan] == ["POST", "POST", "PUT", "PUT", "PUT", "POST"]
    assert plan[0].url.endswith("/post/publish/creator_info/query/")
    assert plan[1].fields["post_info"]["is_aigc"] is True
    assert [call.fields["Content-Length"] for call in plan[2:5]] == [5 * MIB, 5 * MIB, len(video) - 10 * MIB]
    assert_no_token(client.credentials.access_token, plan)


@pytest.mark.parametrize(("video_size", "chunk_mb", "expected"), [
    (3 * MB, 10, (3 * MB, 1)),  # under 5 MB: whole
    (5 * MB, 10, (5 * MB, 1)),  # no bigger than one chunk: whole
    (5 * MB, 5, (5 * MB, 1)),
    (23 * MB, 10, (10 * MIB, 2)),  # the last chunk takes the trailing bytes
    (23 * MB, 5, (5 * MIB, 4)),
    (200 * MB, 10, (10 * MIB, 19)),
    (200 * MB, 64, (MAX_CHUNK, 3)),  # 64 MiB is over TikTok's "64 MB" read strictly
])
def test_tiktok_chunk_plan_follows_tiktoks_rules(video_size: int, chunk_mb: int, expected: tuple[int, int]) -> None:
    plan = chunk_plan(video_size, chunk_mb * MIB)
    assert (plan.chunk_size, plan.total_chunk_count) == expected
    assert plan.total_chunk_count == video_size // plan.chunk_size
    ranges = plan.ranges()
    assert ranges[0][0] == 0 and sum(length for _, length in ranges) == video_size
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(ranges))
    assert all(length == plan.chunk_size for _, length in ranges[:-1])
    if plan.total_chunk_count > 1:
        assert MIN_CHUNK <= plan.chunk_size <= MAX_CHUNK and ranges[-1][1] <= MAX_LAST_CHUNK
    assert chunk_plan_error(video_size, plan.chunk_size, plan.total_chunk_count) is None


def test_the_fake_tiktok_refuses_chunk_plans_tiktok_would_refuse() -> None:
    assert chunk_plan_error(3 * MB, 1 * MB, 3) is not None  # under 5 MB must go whole
    assert chunk_plan_error(23 * MB, 10 * MIB, 3) is not None  # count is rounded down, not up
    assert chunk_plan_error(200 * MB, 100 * MB, 2) is not None  # chunk over 64 MB
    assert chunk_plan_error(100 * MB, 100 * MB, 1) is not None  # over 64 MB must go in several chunks
    assert chunk_plan_error(23 * MB, 4 * MB, 5) is not None  # chunk under 5 MB
