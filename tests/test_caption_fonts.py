"""Burned-in captions in any script: each caption drawn in the font made for its script (read back with real
OCR in English, Chinese and Arabic, the Arabic shaped right to left by libass), and a caption with a character
no installed font has refused before rendering, the characters named. Needs Debian's fonts-noto-core,
fonts-noto-cjk and tesseract-ocr with its chi-sim and ara data (scripts/setup with STUDIO_DEV=1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.video.options import Cue, SubtitleStyle
from tests.captions import frame_at, read_caption, similarity
from workers.media import MediaError, RenderRequest, render_video
from workers.media.fonts import Charset, caption_font, check_caption_text, missing_glyphs, parse_fc_list

ENGLISH = "Four places I trained this week"
CHINESE = "这周我训练了四个地方"
ARABIC = "أربعة أماكن تدربت فيها"
NO_FONT_HAS_IT = "\U0010fffd"  # a private-use code point of the last plane: no font draws it


def test_fontconfig_charsets_are_read_per_family() -> None:
    listing = ("DejaVu Sans,DejaVu Sans Condensed\t20-7e a0-17f\n"
               "DejaVu Sans\t370-3ff\n"
               "Noto Sans CJK SC\t20-7e 4e00-9fff\n"
               "\t20\n")

    fonts = parse_fc_list(listing)

    assert set(fonts) == {"DejaVu Sans", "DejaVu Sans Condensed", "Noto Sans CJK SC"}
    assert "é" in fonts["DejaVu Sans"] and "λ" in fonts["DejaVu Sans"], "the faces of a family are pooled"
    assert "λ" not in fonts["DejaVu Sans Condensed"] and "这" not in fonts["DejaVu Sans"]
    assert fonts["DejaVu Sans"] == Charset.of([(0x20, 0x7E), (0xA0, 0x17F), (0x370, 0x3FF)])


@pytest.mark.parametrize(("text", "style_font", "font"), [
    (ENGLISH, "DejaVu Sans", "DejaVu Sans"),
    ("Ça coûte 5 €, naïve Ελλάδα", "DejaVu Sans", "DejaVu Sans"),
    (CHINESE, "DejaVu Sans", "Noto Sans CJK SC"),
    ("今週はトレーニングした", "DejaVu Sans", "Noto Sans CJK JP"),
    ("이번 주에 네 곳에서 운동했어요", "DejaVu Sans", "Noto Sans CJK KR"),
    (ARABIC, "DejaVu Sans", "DejaVu Sans"),  # DejaVu Sans has Arabic letters (HarfBuzz shapes them)
    (ARABIC, "Noto Sans", "Noto Sans Arabic"),
    (f"{ARABIC} #fitness", "Noto Sans", "Noto Sans Arabic"),
    ("השבוע התאמנתי", "Noto Sans", "Noto Sans Hebrew"),
    ("इस हफ़्ते चार जगह", "DejaVu Sans", "Noto Sans Devanagari"),
])
def test_a_caption_keeps_the_style_font_when_it_can_else_takes_its_scripts_font(text: str, style_font: str,
                                                                                  font: str) -> None:
    assert caption_font(text, style_font) == font


def test_a_character_no_installed_font_has_is_named() -> None:
    text = f"Hello {NO_FONT_HAS_IT} world {NO_FONT_HAS_IT}\u200d"

    assert missing_glyphs([text, CHINESE, ARABIC]) == [NO_FONT_HAS_IT]
    with pytest.raises(MediaError, match=r"1 character\(s\).*U\+10FFFD.*fonts-noto-core"):
        check_caption_text([text])
    check_caption_text([ENGLISH, CHINESE, ARABIC])


def _render_caption(tmp_path: Path, text: str, font: str = "DejaVu Sans") -> Path:
    """One second of a dark still with ``text`` as its only caption, at 9:16."""
    image = tmp_path / "dark.png"
    Image.fromarray(np.full((1920, 1080, 3), 40, dtype=np.uint8)).save(image)
    output = tmp_path / "caption.mp4"
    render_video(RenderRequest(images=[image], durations=[1.0], output=output, fps=10, motion="none",
                               transition="cut", preset="ultrafast", subtitles=[Cue(start=0, end=1, text=text)],
                               subtitle_style=SubtitleStyle(font=font)))
    return output


@pytest.mark.parametrize(("text", "language", "style_font"), [
    (ENGLISH, "eng", "DejaVu Sans"), (CHINESE, "chi_sim", "DejaVu Sans"), (ARABIC, "ara", "DejaVu Sans"),
    (ARABIC, "ara", "Noto Sans"),  # drawn in Noto Sans Arabic, which the style font lacks
])
def test_captions_in_each_script_read_back_with_ocr(tmp_path: Path, text: str, language: str,
                                                    style_font: str) -> None:
    video = _render_caption(tmp_path, text, style_font)

    read = read_caption(frame_at(video, 0.5, tmp_path / "frame.png"), language)

    # Tesseract misreads a letter or two (I → |, 方 → 万); boxes ("tofu") or unshaped Arabic read as nothing alike.
    assert similarity(text, read) >= 0.8, read


def test_a_caption_no_installed_font_can_draw_is_refused_before_rendering(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"no installed font can draw 1 character\(s\).*U\+10FFFD"):
        _render_caption(tmp_path, f"Brand {NO_FONT_HAS_IT} new")
    assert not (tmp_path / "caption.mp4").exists()
