"""What every platform client implements, and the errors they raise.

Publishing is split in three so a post is never published twice:

1. :meth:`PlatformClient.prepare`: everything before the final call (uploads, media containers,
   waiting for processing). Safe to repeat: it saves the ids it creates in ``state`` at once
   (through ``save_state``), and a retry reuses them.
2. :meth:`PlatformClient.publish`: the one call that makes the post public. Before it runs, the
   publish handler marks the post's ``PublishRecord`` as *committing*.
3. :meth:`PlatformClient.recover`: a retry that finds the record *committing* asks the platform
   whether that call took effect (by the ids in ``state``) instead of calling it again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from core.config import Settings
from core.errors import PermanentJobError, TransientError
from core.infra.http_retry import RetryPolicy, Sent, send_with_retries
from core.publishing.caps import QuotaReading


class TokenExpired(TransientError):
    """The platform says the access token expired or was revoked: refresh it and retry once."""


class PlatformRejected(PermanentJobError):
    """A permanent refusal (bad media, policy, permissions): the job fails with the platform's message."""

    def __init__(self, platform: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{platform} refused the post: {message}")
        self.platform = platform
        self.platform_message = message
        self.status = status


@dataclass(frozen=True)
class MediaFile:
    """One file of a post, as the platform needs it: by URL (Meta fetches it) or by bytes (YouTube, TikTok)."""

    asset_id: int
    kind: str  # image | video
    content_type: str
    size: int
    url: str  # presigned (S3) or signed (local store) link the platform can fetch
    read: Callable[[int, int], bytes]  # (offset, length) → bytes, for chunked uploads
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class PublishRequest:
    post_id: int
    platform: str
    text: str  # the caption as posted: caption, hashtags and (where a platform has no flag) the AI disclosure
    title: str  # YouTube's title (others ignore it)
    hashtags: list[str]
    media: list[MediaFile]
    ai_generated: bool
    # privacy ("public" | "unlisted" | "private" on YouTube; TikTok's privacy_level), made_for_kids, …
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Credentials:
    account_id: int  # SocialAccount.id
    external_id: str  # Instagram user id, Page id, channel id, TikTok open_id
    access_token: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Published:
    external_id: str
    permalink: str | None = None
    # What the platform did differently from what was asked, recorded on the post (e.g. YouTube locking
    # an unaudited project's upload to private).
    notice: str | None = None


class PublishDeferred(Exception):
    """The platform's cap for this account is reached: the post waits until ``until`` instead of failing.

    Raised before the final call took effect (a cap read before any container, or the final call
    refused for the cap), so publishing later cannot post twice.
    """

    def __init__(self, platform: str, reason: str, *, until: datetime) -> None:
        super().__init__(f"{platform}: {reason}")
        self.platform = platform
        self.reason = reason
        self.until = until


@dataclass(frozen=True)
class PlannedCall:
    """One HTTP call a dry run would make (tokens left out)."""

    method: str
    url: str
    fields: dict[str, Any] = field(default_factory=dict)


class PlatformClient(ABC):
    platform: str

    def __init__(self, http: httpx.Client, settings: Settings, credentials: Credentials,
                 log: Callable[[str], None] = lambda _line: None) -> None:
        self.http = http
        self.settings = settings
        self.credentials = credentials
        self.log = log
        self.policy = RetryPolicy(max_retries=settings.publish_max_retries)
        # The account's quota as the platform reported it while publishing; the publish job records it.
        self.quota: QuotaReading | None = None

    def send(self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any) -> httpx.Response:
        """One HTTP call with the shared retry policy; the platform's error format is read by ``check``."""
        sent: Sent = send_with_retries(
            lambda: self.http.request(method, url, **kwargs), policy=self.policy, idempotent=idempotent,
            on_retry=lambda attempt, reason, delay: self.log(
                f"{self.platform}: retry {attempt} in {delay:.1f} s after {reason}"),
        )
        self.check(sent.response)
        return sent.response

    @abstractmethod
    def check(self, response: httpx.Response) -> None:
        """Raise TokenExpired / PlatformRejected for the platform's error responses."""

    @abstractmethod
    def validate(self, request: PublishRequest) -> None:
        """Refuse (PlatformRejected) what this client cannot post, before any call."""

    @abstractmethod
    def plan(self, request: PublishRequest) -> list[PlannedCall]:
        """The calls a publish would make, for dry runs."""

    @abstractmethod
    def prepare(self, request: PublishRequest, state: dict[str, Any],
                save_state: Callable[[dict[str, Any]], None]) -> None:
        """Everything before the final call; repeatable thanks to the ids kept in ``state``."""

    @abstractmethod
    def publish(self, request: PublishRequest, state: dict[str, Any]) -> Published:
        """The final call that makes the post public (called with idempotent=False)."""

    @abstractmethod
    def recover(self, request: PublishRequest, state: dict[str, Any]) -> Published | None:
        """After a lost answer to ``publish``: what the platform published, or None if it did not."""
