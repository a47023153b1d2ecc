"""What each platform accepts for a short video, and a check of a rendered file against it.

Pure Python: the media worker probes a file with ffprobe and fills :class:`MediaFacts`; the check
runs anywhere (the video page, the posting job, tests). Numbers come from the platforms' published
pages, named next to each spec; when a page does not give a number the field is ``None`` (no check).

    report = check_video(facts, ["youtube_shorts", "tiktok"])
    report.ok                  # every platform accepts it
    report.failures            # ["YouTube Shorts: 16:9 is not a Shorts aspect (needs square or taller: 9:16 or 1:1)"]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from core.errors import InvalidInput

MB = 1024 * 1024
GB = 1024 * MB


@dataclass(frozen=True)
class MediaFacts:
    """The measurable facts of a video file that platform rules are about."""

    width: int
    height: int
    fps: float
    duration: float  # seconds
    video_codec: str | None = None  # ffprobe codec_name: h264, hevc, vp9…
    audio_codec: str | None = None  # None: no audio track
    sample_rate: int | None = None
    channels: int | None = None
    pix_fmt: str | None = None  # yuv420p…
    size_bytes: int | None = None
    faststart: bool | None = None  # MP4 moov box before mdat

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> MediaFacts:
        """From a dict (e.g. a job result); unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass(frozen=True)
class VideoSpec:
    """One platform's rules for a short video. Aspect ratios are width / height."""

    platform: str
    label: str  # "YouTube Shorts"
    kind: str  # what the platform calls the format: "Shorts"
    min_duration: float
    max_duration: float
    min_aspect: float
    max_aspect: float
    aspect_rule: str  # the rule in words, for messages
    recommended_aspects: tuple[str, ...]
    min_width: int | None
    min_height: int | None
    max_width: int | None
    max_height: int | None
    min_fps: float | None
    max_fps: float | None
    video_codecs: tuple[str, ...]
    audio_codecs: tuple[str, ...] | None  # None: the page names none
    max_sample_rate: int | None
    max_channels: int | None
    requires_420: bool  # 4:2:0 chroma subsampling
    max_size_bytes: int | None
    faststart_required: bool  # False: only recommended (a warning)
    long_warning_after: float | None = None  # longer than this: allowed, but not for every account
    source: str = ""


# Instagram Reels through the Graph API (the way the studio posts):
# https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/media#reel-specifications
# MOV/MP4 with the moov atom at the front; AAC ≤ 48 kHz, 1 or 2 channels; HEVC or H.264, progressive, closed GOP,
# 4:2:0; 23–60 fps; at most 1920 columns; aspect 0.01:1 to 10:1 (9:16 recommended); 3 s – 15 min; 300 MB.
# (Uploads in the app's Reels tab used to be capped at 90 s; the API allows 15 min.)
INSTAGRAM_REELS = VideoSpec(
    platform="instagram_reels", label="Instagram Reels", kind="Reels",
    min_duration=3.0, max_duration=15 * 60.0,
    min_aspect=0.01, max_aspect=10.0, aspect_rule="between 1:100 and 10:1; 9:16 recommended",
    recommended_aspects=("9:16",),
    min_width=None, min_height=None, max_width=1920, max_height=None,
    min_fps=23.0, max_fps=60.0,
    video_codecs=("h264", "hevc"), audio_codecs=("aac",), max_sample_rate=48_000, max_channels=2,
    requires_420=True, max_size_bytes=300 * MB, faststart_required=True,
    long_warning_after=90.0,
    source="developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/media",
)

# Facebook Reels through the Reels Publishing API:
# https://developers.facebook.com/docs/video-api/guides/reels-publishing
# .mp4 recommended; 9:16; 1080×1920 recommended, at least 540×960; 24–60 fps; 3–90 s; 4:2:0, closed GOP 2–5 s,
# H.264/H.265/VP9/AV1; audio AAC-LC 48 kHz stereo. The page gives no file size limit.
FACEBOOK_REELS = VideoSpec(
    platform="facebook_reels", label="Facebook Reels", kind="Reels",
    min_duration=3.0, max_duration=90.0,
    min_aspect=9 / 16 * 0.99, max_aspect=9 / 16 * 1.01, aspect_rule="9:16",
    recommended_aspects=("9:16",),
    min_width=540, min_height=960, max_width=None, max_height=None,
    min_fps=24.0, max_fps=60.0,
    video_codecs=("h264", "hevc", "vp9", "av1"), audio_codecs=("aac",), max_sample_rate=48_000, max_channels=2,
    requires_420=True, max_size_bytes=None, faststart_required=False,
    source="developers.facebook.com/docs/video-api/guides/reels-publishing",
)

# YouTube Shorts: square or vertical, up to 3 minutes for uploads since 15 October 2024
# (https://support.google.com/youtube/answer/15424877). Encoding (https://support.google.com/youtube/answer/1722171):
# MP4 with moov at the front ("Fast Start"), H.264 High profile 4:2:0, AAC-LC stereo 48 kHz recommended; 24–60 fps.
# Upload limit 256 GB (https://support.google.com/youtube/answer/71673).
YOUTUBE_SHORTS = VideoSpec(
    platform="youtube_shorts", label="YouTube Shorts", kind="Shorts",
    min_duration=0.0, max_duration=180.0,
    min_aspect=0.0, max_aspect=1.0 * 1.01, aspect_rule="square or taller: 9:16 or 1:1",
    recommended_aspects=("9:16", "1:1"),
    min_width=None, min_height=None, max_width=None, max_height=None,
    min_fps=None, max_fps=60.0,
    video_codecs=("h264", "hevc", "vp9", "av1"), audio_codecs=("aac", "opus", "mp3"),
    max_sample_rate=96_000, max_channels=6,
    requires_420=False, max_size_bytes=256 * GB, faststart_required=False,
    source="support.google.com/youtube/answer/15424877, /1722171, /71673",
)

# TikTok Content Posting API, media transfer guide:
# https://developers.tiktok.com/doc/content-posting-api-media-transfer-guide
# MP4 (recommended), WebM, MOV; H.264 (recommended), H.265, VP8, VP9; 23–60 fps; 360–4096 px both ways;
# up to 10 minutes through the API (every creator can post 3 minutes, some 5 or 10); at most 4 GB.
# The guide names no minimum duration and no audio codec; 3 s is the minimum TikTok's uploader enforces
# (as reported by posting services, e.g. ayrshare.com/docs/media-guidelines/tiktok).
TIKTOK = VideoSpec(
    platform="tiktok", label="TikTok", kind="TikTok",
    min_duration=3.0, max_duration=600.0,
    min_aspect=0.0, max_aspect=float("inf"), aspect_rule="any; 9:16 recommended",
    recommended_aspects=("9:16",),
    min_width=360, min_height=360, max_width=4096, max_height=4096,
    min_fps=23.0, max_fps=60.0,
    video_codecs=("h264", "hevc", "vp8", "vp9"), audio_codecs=None, max_sample_rate=None, max_channels=None,
    requires_420=False, max_size_bytes=4 * GB, faststart_required=False,
    long_warning_after=180.0,
    source="developers.tiktok.com/doc/content-posting-api-media-transfer-guide",
)

VIDEO_SPECS: dict[str, VideoSpec] = {
    spec.platform: spec for spec in (INSTAGRAM_REELS, FACEBOOK_REELS, YOUTUBE_SHORTS, TIKTOK)
}

# Named aspect ratios, for messages ("16:9" rather than "1920×1080").
_NAMED_ASPECTS = {"9:16": 9 / 16, "1:1": 1.0, "16:9": 16 / 9, "4:5": 4 / 5, "5:4": 5 / 4, "4:3": 4 / 3,
                  "3:4": 3 / 4, "2:3": 2 / 3, "3:2": 3 / 2, "1.91:1": 1.91, "21:9": 21 / 9}


def aspect_name(width: int, height: int) -> str:
    """"9:16" when the size is within 1 % of a common ratio, else "W×H"."""
    if width <= 0 or height <= 0:
        return f"{width}×{height}"
    ratio = width / height
    for name, value in _NAMED_ASPECTS.items():
        if abs(ratio / value - 1) <= 0.01:
            return name
    return f"{width}×{height}"


@dataclass
class PlatformCheck:
    platform: str
    label: str
    failures: list[str] = field(default_factory=list)  # the platform would refuse the file
    warnings: list[str] = field(default_factory=list)  # accepted, but not as recommended

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class SpecReport:
    checks: dict[str, PlatformCheck]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks.values())

    @property
    def failures(self) -> list[str]:
        return [line for check in self.checks.values() for line in check.failures]

    @property
    def warnings(self) -> list[str]:
        return [line for check in self.checks.values() for line in check.warnings]

    def accepted_by(self) -> list[str]:
        return [name for name, check in self.checks.items() if check.ok]

    def __getitem__(self, platform: str) -> PlatformCheck:
        return self.checks[platform]


def _seconds(value: float) -> str:
    if value >= 60 and value % 60 == 0:
        minutes = int(value // 60)
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{value:g} s"


def check_spec(facts: MediaFacts, spec: VideoSpec) -> PlatformCheck:
    """One platform's verdict on a file: failures (refused) and warnings (accepted, not recommended)."""
    out = PlatformCheck(spec.platform, spec.label)
    fail, warn = out.failures.append, out.warnings.append
    label = spec.label

    if facts.duration < spec.min_duration:
        fail(f"{label}: {facts.duration:.1f} s is too short (at least {_seconds(spec.min_duration)})")
    elif facts.duration > spec.max_duration:
        fail(f"{label}: {facts.duration:.1f} s is too long (at most {_seconds(spec.max_duration)})")
    elif spec.long_warning_after is not None and facts.duration > spec.long_warning_after:
        warn(f"{label}: {facts.duration:.0f} s is longer than {_seconds(spec.long_warning_after)}; "
             "not every account or surface shows it")

    name = aspect_name(facts.width, facts.height)
    ratio = facts.width / facts.height if facts.height else 0.0
    if not (spec.min_aspect <= ratio <= spec.max_aspect):
        fail(f"{label}: {name} is not a {spec.kind} aspect (needs {spec.aspect_rule})")
    elif name not in spec.recommended_aspects:
        warn(f"{label}: {name} is accepted, but {' or '.join(spec.recommended_aspects)} fills the screen")

    for value, limit, words in (
        (facts.width, spec.min_width, "wide"), (facts.height, spec.min_height, "tall"),
    ):
        if limit is not None and value < limit:
            fail(f"{label}: {facts.width}×{facts.height} is too small (at least {limit} px {words})")
    for value, limit, words in (
        (facts.width, spec.max_width, "wide"), (facts.height, spec.max_height, "tall"),
    ):
        if limit is not None and value > limit:
            fail(f"{label}: {facts.width}×{facts.height} is too large (at most {limit} px {words})")

    if spec.min_fps is not None and facts.fps < spec.min_fps:
        fail(f"{label}: {facts.fps:g} fps is too low (at least {spec.min_fps:g} fps)")
    if spec.max_fps is not None and facts.fps > spec.max_fps:
        fail(f"{label}: {facts.fps:g} fps is too high (at most {spec.max_fps:g} fps)")

    if facts.video_codec is None:
        fail(f"{label}: the file has no video stream")
    elif facts.video_codec not in spec.video_codecs:
        fail(f"{label}: video codec {facts.video_codec} is not accepted (use {'/'.join(spec.video_codecs)})")
    if spec.requires_420 and facts.pix_fmt and "420" not in facts.pix_fmt and facts.pix_fmt != "nv12":
        fail(f"{label}: pixel format {facts.pix_fmt} is not 4:2:0 (use yuv420p)")

    if facts.audio_codec is None:
        warn(f"{label}: the file has no audio track (the feed expects sound)")
    else:
        if spec.audio_codecs is not None and facts.audio_codec not in spec.audio_codecs:
            fail(f"{label}: audio codec {facts.audio_codec} is not accepted (use {'/'.join(spec.audio_codecs)})")
        if spec.max_sample_rate and facts.sample_rate and facts.sample_rate > spec.max_sample_rate:
            fail(f"{label}: {facts.sample_rate} Hz audio is above {spec.max_sample_rate} Hz")
        if spec.max_channels and facts.channels and facts.channels > spec.max_channels:
            fail(f"{label}: {facts.channels} audio channels are too many (at most {spec.max_channels})")

    if spec.max_size_bytes is not None and facts.size_bytes is not None and facts.size_bytes > spec.max_size_bytes:
        fail(f"{label}: {facts.size_bytes / MB:.0f} MB is over the {_size(spec.max_size_bytes)} limit")

    if facts.faststart is False:
        message = f"{label}: the MP4 index (moov) is not at the front of the file (render with +faststart)"
        (fail if spec.faststart_required else warn)(message)
    return out


def _size(n: int) -> str:
    return f"{n // GB} GB" if n % GB == 0 else f"{n // MB} MB"


def check_video(facts: MediaFacts | Mapping[str, Any], platforms: Iterable[str] | None = None) -> SpecReport:
    """Check a file's facts against the named platforms (all of them by default)."""
    if not isinstance(facts, MediaFacts):
        facts = MediaFacts.from_mapping(facts)
    names = list(platforms) if platforms is not None else list(VIDEO_SPECS)
    unknown = [name for name in names if name not in VIDEO_SPECS]
    if unknown:
        raise InvalidInput(f"unknown platform(s): {', '.join(unknown)} (known: {', '.join(VIDEO_SPECS)})")
    return SpecReport({name: check_spec(facts, VIDEO_SPECS[name]) for name in names})


# --- where the platforms' own UI covers a full-screen vertical video -----------------------------------------


@dataclass(frozen=True)
class SafeZone:
    """Pixels a platform's UI covers at each edge of a 1080×1920 (9:16) video: captions keep out of them."""

    top: int
    bottom: int
    left: int
    right: int


# None of the three platforms publishes these numbers in its developer docs; they are the commonly published
# measurements of the apps' overlays (consulted 2026-12-07), the largest of each range taken:
# - blitzcutai.com/blog/best-caption-placement-short-form-video: TikTok top 130, bottom 320–350 (caption, audio
#   bar), right 120–164 (like/comment/share/playlist column), left 60; Reels top 108–220, bottom 310–450
#   (audio attribution grew late 2025), right ~120; Shorts top ~120, bottom ~300.
# - youraithumbnailgenerator.com/guides/youtube-shorts-safe-zones-complete-guide: Shorts' bottom ~25 %
#   (~480 px: title, channel, subscribe button); the like/comment column sits bottom-right.
# - shortsfire.com/blog/shorts-safe-zones-keep-your-text-visible: a universal rule of the centre 80 % width.
# Facebook Reels shares Instagram's player, so it takes Instagram's zone.
SAFE_ZONES: dict[str, SafeZone] = {
    "tiktok": SafeZone(top=130, bottom=350, left=60, right=164),
    "instagram_reels": SafeZone(top=220, bottom=450, left=60, right=120),
    "facebook_reels": SafeZone(top=220, bottom=450, left=60, right=120),
    "youtube_shorts": SafeZone(top=120, bottom=480, left=60, right=120),
}
_ZONE_WIDTH, _ZONE_HEIGHT = 1080, 1920


def caption_safe_zone(platforms: Iterable[str], width: int, height: int) -> SafeZone:
    """What the named platforms' UI covers of a ``width``×``height`` video, in its pixels: the union of their
    zones, scaled from 1080×1920. Only vertical videos fill the phone screen under the UI; a square or
    landscape video is letterboxed and the UI sits mostly on the bars, so nothing is reserved there."""
    zones = [SAFE_ZONES[name] for name in platforms if name in SAFE_ZONES]
    if not zones or height <= width:
        return SafeZone(0, 0, 0, 0)
    sx, sy = width / _ZONE_WIDTH, height / _ZONE_HEIGHT
    return SafeZone(top=round(max(z.top for z in zones) * sy), bottom=round(max(z.bottom for z in zones) * sy),
                    left=round(max(z.left for z in zones) * sx), right=round(max(z.right for z in zones) * sx))
