"""What a post will look like on each platform, and what stops it from being scheduled.

The limits are the platforms' published ones (Instagram: 2,200-character captions and 30
hashtags, feed images between 4:5 and 1.91:1; YouTube: 100-character titles, 5,000-byte
descriptions, hashtags ignored beyond 60; TikTok: 2,200-character captions; Facebook: 63,206
characters). The "preview" length is roughly where each app cuts a caption behind "… more".
Videos are checked with :mod:`core.video.platform_specs` (duration, aspect, size, codecs), from the
measurements the video job stored, so a preview never has to read the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.models import Asset, AssetKind, Platform
from core.publishing.tiktok_creator import app_audited, unaudited_problem
from core.video.platform_specs import aspect_name, check_video

HASHTAG = re.compile(r"^\w{1,100}$")
AI_DISCLOSURE = "AI-generated content."


@dataclass(frozen=True)
class PlatformRules:
    caption_max: int
    preview_chars: int  # about where the app shows "… more"
    hashtags_max: int | None
    media: tuple[str, ...]  # accepted asset kinds
    video_spec: str  # core.video.platform_specs name
    needs_title: bool = False
    title_max: int = 0
    disclosure_in_text: bool = False  # no API flag for AI content: say it in the caption
    image_aspect: tuple[float, float] | None = None  # min, max width/height for images


RULES: dict[str, PlatformRules] = {
    Platform.INSTAGRAM: PlatformRules(2200, 125, 30, (AssetKind.IMAGE, AssetKind.VIDEO), "instagram_reels",
                                      disclosure_in_text=True, image_aspect=(0.8, 1.91)),
    Platform.FACEBOOK: PlatformRules(63_206, 477, None, (AssetKind.IMAGE, AssetKind.VIDEO), "facebook_reels",
                                     disclosure_in_text=True),
    Platform.YOUTUBE: PlatformRules(5000, 100, 60, (AssetKind.VIDEO,), "youtube_shorts", needs_title=True,
                                    title_max=100),
    Platform.TIKTOK: PlatformRules(2200, 150, None, (AssetKind.VIDEO,), "tiktok"),
}

VIDEO_PLATFORMS = frozenset({Platform.YOUTUBE, Platform.TIKTOK})


def normalize_hashtags(values: Sequence[str] | str) -> list[str]:
    """'#Fitness, morning #run' or ['#a', 'b'] → ['Fitness', 'morning', 'run'] (duplicates dropped, order kept)."""
    pieces = [values] if isinstance(values, str) else list(values)
    parts = [part for piece in pieces for part in re.split(r"[\s,]+", piece)]
    tags: list[str] = []
    for part in parts:
        tag = part.strip().lstrip("#")
        if tag and tag.lower() not in {t.lower() for t in tags}:
            tags.append(tag)
    return tags


def compose_text(platform: str, caption: str, hashtags: Sequence[str], *, ai_generated: bool) -> str:
    """The text as posted: caption, then hashtags, then the AI disclosure where the platform has no flag."""
    parts = [caption.strip()]
    if hashtags:
        parts.append(" ".join(f"#{tag}" for tag in hashtags))
    if ai_generated and RULES[platform].disclosure_in_text and AI_DISCLOSURE not in caption:
        parts.append(AI_DISCLOSURE)
    return "\n\n".join(p for p in parts if p)


@dataclass(frozen=True)
class MediaSummary:
    asset_id: int
    kind: str
    width: int | None
    height: int | None
    aspect: str | None
    duration: float | None = None


@dataclass
class PostPreview:
    platform: str
    text: str  # exactly what will be posted
    shown: str  # what followers see before "… more"
    truncated: bool
    hashtag_count: int
    title: str
    media: list[MediaSummary]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _media_checks(platform: str, rules: PlatformRules, assets: Sequence[Asset], preview: PostPreview) -> None:
    label = Platform(platform).label
    if not assets:
        kinds = " or ".join(rules.media)
        preview.errors.append(f"{label} needs media: attach one {kinds}")
        return
    if len(assets) > 1:
        preview.errors.append(f"{label}: attach one file per post (carousels are not supported yet)")
    for asset in assets:
        if asset.deleted_at is not None:
            preview.errors.append(f"asset {asset.id} is in the trash; restore it or pick another file")
        if asset.kind not in rules.media:
            preview.errors.append(f"{label} does not take a {asset.kind} (accepts: {', '.join(rules.media)})")
            continue
        if asset.kind == AssetKind.IMAGE and rules.image_aspect and asset.width and asset.height:
            ratio = asset.width / asset.height
            low, high = rules.image_aspect
            if not low <= ratio <= high:
                preview.errors.append(
                    # The API refuses them (error 36003, "aspect ratio not supported"):
                    # https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/media
                    f"{label} takes feed images from 4:5 to 1.91:1 only; this one is "
                    f"{aspect_name(asset.width, asset.height)}: crop it first")
        if asset.kind == AssetKind.VIDEO:
            _video_checks(rules, asset, preview)


def _video_checks(rules: PlatformRules, asset: Asset, preview: PostPreview) -> None:
    stored = (asset.meta or {}).get("spec_report", {})
    if rules.video_spec in stored:  # measured by the video job from the finished file
        preview.errors.extend(stored[rules.video_spec])
        return
    if asset.width and asset.height and (asset.meta or {}).get("duration"):
        report = check_video({"width": asset.width, "height": asset.height, "fps": 30,
                              "duration": float(asset.meta["duration"]), "size_bytes": asset.size_bytes},
                             [rules.video_spec])
        check = report.checks[rules.video_spec]
        preview.errors.extend(check.failures)
        preview.warnings.extend(check.warnings)
    else:
        preview.warnings.append(f"video {asset.id} has no stored measurements; its specs are checked when posting")


def preview_post(*, platform: str, caption: str, hashtags: Sequence[str], title: str = "",
                 assets: Sequence[Asset] = (), ai_generated: bool = True,
                 options: Mapping[str, Any] | None = None) -> PostPreview:
    rules = RULES[platform]
    label = Platform(platform).label
    text = compose_text(platform, caption, hashtags, ai_generated=ai_generated)
    shown = text if len(text) <= rules.preview_chars else text[: rules.preview_chars].rstrip() + "… more"
    preview = PostPreview(
        platform=platform, text=text, shown=shown, truncated=len(text) > rules.preview_chars,
        hashtag_count=len(hashtags), title=title,
        media=[MediaSummary(a.id or 0, a.kind, a.width, a.height,
                            aspect_name(a.width, a.height) if a.width and a.height else None,
                            (a.meta or {}).get("duration")) for a in assets],
    )
    size = len(text.encode()) if platform == Platform.YOUTUBE else len(text)
    unit = "bytes" if platform == Platform.YOUTUBE else "characters"
    if not caption.strip() and platform != Platform.YOUTUBE:
        preview.errors.append("the caption is empty")
    if size > rules.caption_max:
        preview.errors.append(f"{label}: the text is {size:,} {unit}; the limit is {rules.caption_max:,}")
    if rules.hashtags_max is not None and len(hashtags) > rules.hashtags_max:
        what = "ignores every hashtag beyond" if platform == Platform.YOUTUBE else "allows at most"
        preview.errors.append(f"{label} {what} {rules.hashtags_max} hashtags; this post has {len(hashtags)}")
    bad = [t for t in hashtags if not HASHTAG.match(t)]
    if bad:
        preview.errors.append(f"hashtags may only hold letters, digits and '_': {', '.join('#' + t for t in bad[:5])}")
    if rules.needs_title:
        if not title.strip():
            preview.errors.append(f"{label} needs a title")
        elif len(title) > rules.title_max:
            preview.errors.append(f"{label}: the title is {len(title)} characters; the limit is {rules.title_max}")
        elif "<" in title or ">" in title:
            preview.errors.append(f"{label} titles cannot contain '<' or '>'")
    if platform == Platform.YOUTUBE and ("<" in text or ">" in text):
        # snippet.description "may contain all valid UTF-8 characters except < and >" (invalidDescription):
        # https://developers.google.com/youtube/v3/docs/videos#snippet.description
        preview.errors.append(f"{label} descriptions cannot contain '<' or '>' (as in \"<3\" or \"->\"); "
                              "reword the caption or hashtags")
    if platform == Platform.TIKTOK and not (options or {}).get("privacy_level"):
        # TikTok's UX rules: the user picks who sees the post, with no default
        # (https://developers.tiktok.com/doc/content-sharing-guidelines).
        preview.errors.append(f"{label}: choose who can see this post (TikTok does not allow a default)")
    if platform == Platform.TIKTOK and (
            unaudited := unaudited_problem((options or {}).get("privacy_level"), audited=app_audited())):
        preview.errors.append(f"{label}: {unaudited}")
    _media_checks(platform, rules, assets, preview)
    return preview
