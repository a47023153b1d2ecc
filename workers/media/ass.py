"""Captions as an ASS (Advanced SubStation Alpha) document for libass, the renderer's subtitle engine.

SRT can only show a line; ASS styles every character, which word-by-word captions need. Each word becomes
its own event, from the moment it is spoken until the next word is (the cue's ``words``, timed by
``core.video.subtitles``): in ``highlight`` mode the event shows the whole line with that word in the
highlight colour, in ``pop`` mode the word alone, popping in. Per-word events rather than karaoke ``\\k``
tags, because ``\\k`` only sweeps the secondary→primary colour left to right (wrong for Arabic, which
libass lays out right to left, and no "pop") and counts in centiseconds from the event start, so the
rounding would add up over a line; here every change lands on its own timestamp.

The text is the cue's own (line breaks kept); each line is drawn in the font for its script (fonts.py), and
libass shapes and orders right-to-left text itself (HarfBuzz, FriBidi). The style comes from the same
fields as the SRT's ``force_style`` (sizes in output pixels, margins outside the platforms' UI zones).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from core.video.options import Cue, SubtitleStyle, Word
from core.video.platform_specs import SafeZone
from workers.media.fonts import caption_font

POP_SCALE = 125  # a popped word starts at 125 % of its size …
POP_MS = 120  # … and settles to 100 % in this many milliseconds

_STYLE_FORMAT = ("Name", "Fontname", "Fontsize", "PrimaryColour", "SecondaryColour", "OutlineColour", "BackColour",
                 "Bold", "Italic", "Underline", "StrikeOut", "ScaleX", "ScaleY", "Spacing", "Angle", "BorderStyle",
                 "Outline", "Shadow", "Alignment", "MarginL", "MarginR", "MarginV", "Encoding")


def ass_colour(hex_colour: str, alpha: int = 0) -> str:
    """#RRGGBB → &HAABBGGRR (ASS colours are blue-green-red, alpha 0 = opaque)."""
    red, green, blue = hex_colour[1:3], hex_colour[3:5], hex_colour[5:7]
    return f"&H{alpha:02X}{blue}{green}{red}".upper()


def style_fields(style: SubtitleStyle, width: int, height: int, zone: SafeZone) -> dict[str, Any]:
    """The caption style in output pixels (PlayRes = the output size), its margins clear of ``zone``."""
    alignment = {"bottom": 2, "middle": 5, "top": 8}[style.position]
    side_margin = max(40, width // 16)
    vertical = {"bottom": max(style.margin, zone.bottom), "top": max(style.margin, zone.top)}.get(style.position,
                                                                                                 style.margin)
    return {
        "PlayResX": width, "PlayResY": height,
        "FontName": style.font.replace(",", " ").replace("=", " "),  # "," and "=" would split the overrides
        "FontSize": style.size, "Bold": -1 if style.bold else 0,
        "PrimaryColour": ass_colour(style.colour), "OutlineColour": ass_colour(style.outline_colour),
        "BackColour": ass_colour(style.outline_colour, alpha=0x80),
        "BorderStyle": 1, "Outline": style.outline, "Shadow": 0,
        "Alignment": alignment, "MarginV": vertical,
        "MarginL": max(side_margin, zone.left), "MarginR": max(side_margin, zone.right),
    }


def _time(seconds: float) -> str:
    centis = round(seconds * 100)
    hours, rest = divmod(centis, 360_000)
    minutes, rest = divmod(rest, 6000)
    secs, centis = divmod(rest, 100)
    return f"{hours}:{minutes:02d}:{secs:02d}.{centis:02d}"


def _escape(text: str) -> str:
    """Text libass draws as written: a backslash is kept from starting ``\\N`` by a word joiner after it, and
    braces (which would open an override block) are drawn as their full-width forms."""
    return text.replace("\\", "\\\u2060").replace("{", "\uff5b").replace("}", "\uff5d")


def _font_tag(text: str, preferred: str) -> str:
    font = caption_font(text, preferred)
    return "" if font == preferred else "{\\fn" + font.replace("}", "").replace("\\", "") + "}"


def _spans(cue: Cue) -> list[tuple[int, int]] | None:
    """Where each of the cue's timed words sits in its text; None when they do not spell it in order."""
    spans, cursor = [], 0
    for word in cue.words:
        at = cue.text.find(word.text, cursor)
        if at < 0 or not word.text:
            return None
        spans.append((at, at + len(word.text)))
        cursor = at + len(word.text)
    return spans


def _right_to_left(line: str) -> bool:
    """Whether the line's first strongly directional character is right-to-left (Arabic, Hebrew…)."""
    kinds = (unicodedata.bidirectional(c) for c in line)
    return next((kind in ("R", "AL") for kind in kinds if kind in ("L", "R", "AL")), False)


def _right_to_left_runs(line: str, highlight: tuple[int, int], colours: tuple[str, str]) -> str:
    """A right-to-left line with one word highlighted, written in visual order, one glyph run per word.

    libass (like VSFilter, which it emulates by default; ffmpeg cannot turn on its whole-text bidi) runs bidi
    on each glyph run on its own and lays the runs out left to right, and a colour change starts a new run:
    ``A {colour}B{reset} C`` would show the three pieces left to right. So every word and space becomes its
    own run (a change of the unused secondary colour forces the split even where the primary colour stays),
    in reverse order; a run of one word or one space looks the same whatever its base direction. (The
    libass maintainers' advice: github.com/libass/JavascriptSubtitlesOctopus/issues/163.)"""
    pieces = [(match.start(), match.group()) for match in re.finditer(r"\S+|\s+", line)]
    runs = []
    for number, (start, piece) in enumerate(reversed(pieces)):
        lit = highlight[0] <= start and start + len(piece) <= highlight[1] and not piece.isspace()
        runs.append(f"{{\\2c&H00000{number % 2}&\\1c{colours[0] if lit else colours[1]}}}{_escape(piece)}")
    return "".join(runs)


def _line_text(text: str, preferred: str, highlight: tuple[int, int] | None, colours: tuple[str, str]) -> str:
    """The cue's lines, each in its script's font, with the characters in ``highlight`` in the highlight colour."""
    on, off = "{\\1c" + colours[0] + "}", "{\\1c" + colours[1] + "}"
    out, position = [], 0
    for line in text.split("\n"):
        a, b = (highlight[0] - position, highlight[1] - position) if highlight else (-1, -1)
        if highlight and _right_to_left(line):
            body = _right_to_left_runs(line, (a, b), colours)
        elif 0 <= a < b <= len(line):
            body = _escape(line[:a]) + on + _escape(line[a:b]) + off + _escape(line[b:])
        else:
            body = _escape(line)
        out.append(_font_tag(line, preferred) + body)
        position += len(line) + 1
    return "\\N".join(out)


def _events(cue: Cue, style: SubtitleStyle) -> list[tuple[float, float, str]]:
    preferred = style.font
    spans = _spans(cue) if style.mode != "lines" and cue.words else None
    if spans is None:
        return [(cue.start, cue.end, _line_text(cue.text, preferred, None, ("", "")))]
    colours = (ass_colour(style.highlight_colour), ass_colour(style.colour))
    events = []
    for word, span in zip(cue.words, spans, strict=True):
        if style.mode == "pop":
            pop = f"{{\\fscx{POP_SCALE}\\fscy{POP_SCALE}\\t(0,{POP_MS},\\fscx100\\fscy100)}}"
            text = _font_tag(word.text, preferred) + pop + _escape(word.text)
        else:
            text = _line_text(cue.text, preferred, span, colours)
        events.append((word.start, word.end, text))
    return events


def word_events(cues: Sequence[Cue], style: SubtitleStyle) -> list[tuple[float, float, str]]:
    """(start, end, ASS text) of every event, in order; events too short to last a centisecond are left out."""
    return [(start, end, text) for cue in cues for start, end, text in _events(cue, style)
            if round(end * 100) > round(start * 100)]


def to_ass(cues: Sequence[Cue], style: SubtitleStyle, width: int, height: int, zone: SafeZone) -> str:
    """The whole ASS document for ``cues`` rendered at ``width``×``height``."""
    fields = style_fields(style, width, height, zone)
    values = {"Name": "Default", "Fontname": fields["FontName"], "Fontsize": fields["FontSize"],
              "PrimaryColour": fields["PrimaryColour"], "SecondaryColour": fields["PrimaryColour"],
              "OutlineColour": fields["OutlineColour"], "BackColour": fields["BackColour"], "Bold": fields["Bold"],
              "Italic": 0, "Underline": 0, "StrikeOut": 0, "ScaleX": 100, "ScaleY": 100, "Spacing": 0, "Angle": 0,
              "BorderStyle": 1, "Outline": fields["Outline"], "Shadow": 0, "Alignment": fields["Alignment"],
              "MarginL": fields["MarginL"], "MarginR": fields["MarginR"], "MarginV": fields["MarginV"],
              "Encoding": 1}
    lines = ["[Script Info]", "ScriptType: v4.00+", f"PlayResX: {width}", f"PlayResY: {height}", "WrapStyle: 0",
             "ScaledBorderAndShadow: yes", "", "[V4+ Styles]", "Format: " + ", ".join(_STYLE_FORMAT),
             "Style: " + ",".join(str(values[name]) for name in _STYLE_FORMAT), "", "[Events]",
             "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text"]
    lines += [f"Dialogue: 0,{_time(start)},{_time(end)},Default,,0,0,0,,{text}"
              for start, end, text in word_events(cues, style)]
    return "\n".join(lines) + "\n"


def words_of(cues: Sequence[Cue]) -> list[Word]:
    """Every timed word of the cues, in order (what a word-by-word caption steps through)."""
    return [word for cue in cues for word in cue.words]
