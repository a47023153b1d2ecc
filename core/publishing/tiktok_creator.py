"""TikTok's creator info: what one creator may post right now, asked before every Direct Post.

TikTok's Direct Post flow starts with ``POST /v2/post/publish/creator_info/query/``
(https://developers.tiktok.com/doc/content-posting-api-reference-query-creator-info/): the privacy
levels this creator may use (``privacy_level_options``), whether comments, duets and stitches are
turned off on the account, and the longest video it may post (``max_video_post_duration_sec``).
TikTok's UX guidelines (https://developers.tiktok.com/doc/content-sharing-guidelines) add that the
user picks the privacy level (no default), and that commercial content is disclosed with
``brand_content_toggle`` (a paid partnership; it cannot be private) or ``brand_organic_toggle``
(the creator's own business).

The post editor shows this (:func:`creator_info_for_account`); the publish job's TikTok client asks
again before each post and checks the post with :func:`post_problems`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from core.config import get_settings
from core.errors import InvalidInput
from core.infra.http_retry import RetryPolicy, send_with_retries
from core.publishing import social_accounts

PRIVACY_LABELS = {
    "PUBLIC_TO_EVERYONE": "Everyone", "MUTUAL_FOLLOW_FRIENDS": "Friends (followers you follow back)",
    "FOLLOWER_OF_CREATOR": "Followers", "SELF_ONLY": "Only me",
}
INTERACTIONS = ("comment", "duet", "stitch")
PRIVATE = "SELF_ONLY"
# TikTok's Direct Post guidelines for an API client that has not passed its audit: "Unaudited API Clients can
# only post contents in SELF_ONLY viewership", "can allow up to 5 users to post in a 24 hour window", and "All
# user accounts using the API client to post must be set to private at the time of posting".
UNAUDITED_DOC = "https://developers.tiktok.com/doc/content-sharing-guidelines"
UNAUDITED_WHY = ("the studio's TikTok app has not passed TikTok's audit (STUDIO_TIKTOK_APP_AUDITED=false), so TikTok "
                 "takes only 'Only me' (SELF_ONLY) posts, from accounts set to private, by at most 5 users in 24 "
                 f"hours: {UNAUDITED_DOC}")


def app_audited() -> bool:
    return get_settings().tiktok_app_audited


def privacy_choices(options: tuple[str, ...] | None, *, audited: bool) -> list[str]:
    """The privacy levels the editor offers: the creator's (all of TikTok's when unknown), and for an
    unaudited app only SELF_ONLY."""
    levels = list(options) if options else list(PRIVACY_LABELS)
    if not audited:
        return [PRIVATE] if PRIVATE in levels or not options else []
    return levels


def unaudited_problem(privacy: str | None, *, audited: bool) -> str | None:
    """Why an unaudited app cannot post with this privacy level (None when it can, or nothing was chosen)."""
    if audited or not privacy or privacy == PRIVATE:
        return None
    return f"{PRIVACY_LABELS.get(privacy, privacy)!r} is not allowed: {UNAUDITED_WHY}"


@dataclass(frozen=True)
class CreatorInfo:
    username: str
    nickname: str
    privacy_level_options: tuple[str, ...]
    comment_disabled: bool
    duet_disabled: bool
    stitch_disabled: bool
    max_video_post_duration_sec: int

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> CreatorInfo:
        return cls(
            username=str(data.get("creator_username") or ""), nickname=str(data.get("creator_nickname") or ""),
            privacy_level_options=tuple(str(o) for o in data.get("privacy_level_options") or ()),
            comment_disabled=bool(data.get("comment_disabled")), duet_disabled=bool(data.get("duet_disabled")),
            stitch_disabled=bool(data.get("stitch_disabled")),
            max_video_post_duration_sec=int(data.get("max_video_post_duration_sec") or 0),
        )

    def disabled(self, interaction: str) -> bool:
        return bool(getattr(self, f"{interaction}_disabled"))


def post_problems(info: CreatorInfo, options: dict[str, Any], duration_s: float | None, *,
                  audited: bool = True) -> list[str]:
    """Why this creator cannot post this video with these choices (empty when it can)."""
    problems = []
    privacy = options.get("privacy_level")
    if unaudited := unaudited_problem(privacy, audited=audited):
        problems.append(unaudited)
    if not privacy:
        problems.append("choose who can see this TikTok post (TikTok's rules forbid a default)")
    elif privacy not in info.privacy_level_options:
        allowed = ", ".join(PRIVACY_LABELS.get(o, o) for o in info.privacy_level_options) or "none"
        problems.append(f"this TikTok account cannot post to {PRIVACY_LABELS.get(privacy, privacy)!r} "
                        f"(it allows: {allowed})")
    if options.get("brand_content_toggle") and privacy == "SELF_ONLY":
        problems.append("branded content (a paid partnership) cannot be posted as 'Only me' on TikTok")
    limit = info.max_video_post_duration_sec
    if duration_s is not None and limit and duration_s > limit:
        problems.append(f"the video is {duration_s:.0f} s; this TikTok account may post at most {limit} s")
    return problems


def interaction_flags(info: CreatorInfo, options: dict[str, Any]) -> dict[str, bool]:
    """``disable_comment`` / ``disable_duet`` / ``disable_stitch``: off where the creator turned it off,
    else as the user chose (allowed unless they said otherwise)."""
    return {f"disable_{name}": info.disabled(name) or bool(options.get(f"disable_{name}", False))
            for name in INTERACTIONS}


def query_creator_info(http: httpx.Client, *, api_url: str, access_token: str) -> dict[str, Any]:
    """The raw ``data`` of a creator_info query (TikTok answers errors with HTTP 200 and an error code)."""
    settings = get_settings()
    response = send_with_retries(
        lambda: http.post(f"{api_url}/post/publish/creator_info/query/", json={},
                          headers={"Authorization": f"Bearer {access_token}"}),
        policy=RetryPolicy(max_retries=settings.publish_max_retries)).response
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if response.status_code >= 400 or (code not in (None, "ok")):
        message = error.get("message") if isinstance(error, dict) else response.text[:200]
        raise InvalidInput(f"TikTok did not return the creator's posting options: {message} ({code})")
    data = body.get("data")
    return data if isinstance(data, dict) else {}


def creator_info_for_account(account_id: int) -> CreatorInfo:
    """What the post editor shows: asked live from TikTok with the account's token."""
    settings = get_settings()
    creds = social_accounts.credentials(account_id)
    with httpx.Client(timeout=settings.publish_http_timeout_s) as http:
        data = query_creator_info(http, api_url=settings.tiktok_api_url, access_token=creds.access_token)
    return CreatorInfo.from_api(data)
