"""What the one-command demo holds: its prompts, video, caption and post (``core.automation.demo`` runs it).

A leaf under the pipelines: the ``demo`` pipeline's last stage drafts the post described here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.models import Post
from core.publishing import posts

DEMO_PROMPTS = ["smiling on a sunny beach", "hiking a forest trail", "stretching after a run", "city rooftop at dusk"]
DEMO_CAPTION = "Four places I trained this week. Which one would you pick? #fitness #outdoors"
DEMO_PLATFORM = "tiktok"
DEMO_VIDEO_SECONDS = 8
DEMO_JOB_KINDS = ("caption", "train", "generate", "video")


def demo_request(dataset_id: int) -> dict[str, Any]:
    """The ``demo`` pipeline's body for a dataset (camelCase, as pipelines take it)."""
    return {"datasetId": dataset_id, "trainingName": "demo", "testPrompts": DEMO_PROMPTS,
            "videoConfig": {"durationSec": DEMO_VIDEO_SECONDS, "aspect": "9:16",
                            "script": DEMO_CAPTION.split("#")[0].strip()}}


def demo_post_time(now: datetime | None = None) -> datetime:
    """Tomorrow at 19:00 UTC: a believable slot, always in the future."""
    now = now or datetime.now(UTC)
    return (now + timedelta(days=1)).replace(hour=19, minute=0, second=0, microsecond=0)


def draft_demo_post(*, video_asset_id: int) -> Post:
    """The demo's last stage (called by the pipeline's ``post`` stage): a draft TikTok post with the video."""
    return posts.create_post(platform=DEMO_PLATFORM, scheduled_at=demo_post_time(), caption=DEMO_CAPTION,
                             asset_ids=[video_asset_id])
