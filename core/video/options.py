"""The choices a short video is rendered with: aspect presets, fit, motion, transitions, subtitle
style, voice and loudness. Shared by the video page, the API, the ``video`` job and the media code,
so each choice is defined once."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Aspect preset → (width, height) of the output.
ASPECTS: dict[str, tuple[int, int]] = {"9:16": (1080, 1920), "1:1": (1080, 1080), "16:9": (1920, 1080)}
ASPECT_LABELS = {"9:16": "9:16 · 1080×1920 (Reels, Shorts, TikTok)", "1:1": "1:1 · 1080×1080 (feed)",
                 "16:9": "16:9 · 1920×1080 (YouTube)"}
Aspect = Literal["9:16", "1:1", "16:9"]
Fit = Literal["crop", "blur"]  # crop to fill, or fit inside a blurred copy of the image
Motion = Literal["ken_burns", "none"]
Transition = Literal["crossfade", "cut"]
SubtitlePosition = Literal["bottom", "middle", "top"]
# lines: the cue's line as it is spoken; highlight: the line with the spoken word in ``highlight_colour``;
# pop: one word at a time, popping in.
CaptionMode = Literal["lines", "highlight", "pop"]
CAPTION_MODE_LABELS = {"lines": "Lines", "highlight": "Word by word: the spoken word highlighted",
                       "pop": "Word by word: one word at a time"}
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


class SubtitleStyle(BaseModel):
    """How burnt-in subtitles look. ``size`` is in output pixels (cap height ≈ 0.7 × size)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    font: str = Field(default="DejaVu Sans", min_length=1, max_length=80)
    size: int = Field(default=64, ge=12, le=200)
    colour: str = "#FFFFFF"
    outline_colour: str = "#000000"
    outline: int = Field(default=4, ge=0, le=20, description="outline width in output pixels")
    bold: bool = True
    position: SubtitlePosition = "bottom"
    margin: int = Field(default=160, ge=0, le=800, description="distance from the edge in output pixels")
    max_words_per_line: int = Field(default=4, ge=1, le=12)
    mode: CaptionMode = "lines"
    highlight_colour: str = "#FFE14D"
    safe_area: bool = Field(default=True, description="keep captions out of the checked platforms' UI zones")

    @field_validator("colour", "outline_colour", "highlight_colour")
    @classmethod
    def _hex_colour(cls, value: str) -> str:
        if not _COLOUR.match(value):
            raise ValueError(f"{value!r} is not a colour like #FFFFFF")
        return value.upper()


class LoudnessTarget(BaseModel):
    """EBU R128 target: integrated loudness and the true-peak ceiling."""

    model_config = ConfigDict(extra="forbid")

    integrated_lufs: float = Field(default=-14.0, ge=-31.0, le=-5.0)
    true_peak_dbtp: float = Field(default=-1.0, ge=-9.0, le=0.0)
    lra: float = Field(default=11.0, ge=1.0, le=20.0, description="loudness range target (LU)")


class Word(BaseModel):
    """A spoken word with its time span (whisper word timestamps, or TTS sentence timing)."""

    text: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)


class Cue(BaseModel):
    """One subtitle: text shown from ``start`` to ``end`` seconds. ``words`` (when known) time each word of
    ``text`` in order (for CJK text, each character), for word-by-word captions; SRT does not keep them."""

    start: float = Field(ge=0)
    end: float = Field(ge=0)
    text: str
    words: list[Word] = Field(default_factory=list)
