"""Word-by-word captions: the spoken word highlighted (or popped) at the moment it is spoken, read back from the
rendered frames with ffmpeg on a real espeak-ng voice-over; Chinese and Arabic word-by-word captions read back by
OCR; caption margins clear of the platforms' UI zones."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.video.options import Cue, SubtitleStyle
from core.video.platform_specs import caption_safe_zone
from core.video.subtitles import cues_from_sentences, word_tokens
from tests.captions import frame_at, read_caption, similarity
from workers.media import RenderRequest, render_video
from workers.media.ass import to_ass
from workers.ml.tts import synthesize_script

FPS = 25
BAND_TOP, BAND_HEIGHT = 1920 - 520, 520  # the bottom caption band (default margin 160 px)
CHINESE = "这周我训练了四个地方"
ARABIC = "أربعة أماكن تدربت فيها"


def _still(tmp_path: Path) -> Path:
    image = tmp_path / "dark.png"
    Image.fromarray(np.full((1920, 1080, 3), 40, dtype=np.uint8)).save(image)
    return image


def _render(tmp_path: Path, cues: list[Cue], seconds: float, style: SubtitleStyle, **extra: object) -> Path:
    output = tmp_path / "words.mp4"
    render_video(RenderRequest(images=[_still(tmp_path)], durations=[seconds], output=output, fps=FPS,
                               motion="none", transition="cut", preset="ultrafast", subtitles=cues,
                               subtitle_style=style, **extra))
    return output


def _caption_bands(video: Path) -> np.ndarray:
    """Every frame's caption band, RGB, at half size (nearest neighbour keeps the colours pure)."""
    width, height = 540, BAND_HEIGHT // 2
    raw = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(video), "-vf",
                          f"crop=1080:{BAND_HEIGHT}:0:{BAND_TOP},scale={width}:{height}:flags=neighbor",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True, timeout=120)
    return np.frombuffer(raw.stdout, np.uint8).reshape(-1, height, width, 3)


def _highlight(band: np.ndarray) -> tuple[int, int] | None:
    """Where the yellow (highlighted) pixels are: their centre (x, y), or None when there are none."""
    red, green, blue = (band[:, :, i].astype(int) for i in range(3))
    ys, xs = np.nonzero((red > 200) & (green > 170) & (blue < 150))
    return None if len(xs) < 20 else (int(xs.mean()), int(ys.mean()))


def _changes(highlights: list[tuple[int, int] | None]) -> list[int]:
    """Frames where the highlight moves to another word, appears or disappears."""
    def moved(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
        if a is None or b is None:
            return (a is None) != (b is None)
        return abs(a[0] - b[0]) > 6 or abs(a[1] - b[1]) > 6

    return [i for i in range(1, len(highlights)) if moved(highlights[i - 1], highlights[i])]


def test_the_highlight_moves_to_each_word_as_it_is_spoken_in_a_real_espeak_voice_over(tmp_path: Path) -> None:
    script = "Four places I trained this week. Then I rested."
    speech = synthesize_script(script, "espeak:en-us", rate_wpm=170, output=tmp_path / "voice.wav")
    cues = cues_from_sentences(speech.sentences, speech.timings, heard=speech.words, max_words_per_line=4)
    words = [word for cue in cues for word in cue.words]
    assert [w.text for w in words] == script.split()
    seconds = round(speech.duration + 0.4, 2)

    video = _render(tmp_path, cues, seconds, SubtitleStyle(mode="highlight"), voice=speech.path)
    highlights = [_highlight(band) for band in _caption_bands(video)]

    # Where libass must switch: each word's start, and a word's end where no word follows at once (a pause).
    # (Frame 0 has no frame before it to differ from.)
    boundaries = sorted({round(w.start, 2) for w in words} | {round(w.end, 2) for w in words})
    expected = [frame for t in boundaries if 0 < (frame := int(np.ceil(t * FPS - 1e-6))) < len(highlights)]
    actual = _changes(highlights)
    assert len(actual) == len(expected), (actual, expected)
    assert all(abs(a - e) <= 1 for a, e in zip(actual, expected, strict=True)), (actual, expected)
    # Within a line the highlight steps left to right, word by word.
    first_line = [highlights[int(np.ceil(w.start * FPS)) + 1] for w in cues[0].words]
    assert all(a is not None and b is not None and a[0] < b[0] for a, b in itertools.pairwise(first_line))


def test_lines_mode_has_no_highlight(tmp_path: Path) -> None:
    cues = cues_from_sentences(["Four places I trained."], [(0.0, 1.0)], max_words_per_line=4)
    video = _render(tmp_path, cues, 1.0, SubtitleStyle(mode="lines"))
    assert all(_highlight(band) is None for band in _caption_bands(video))


@pytest.mark.parametrize(("text", "language", "font"), [(CHINESE, "chi_sim", "DejaVu Sans"),
                                                         (ARABIC, "ara", "Noto Sans")])
def test_word_by_word_captions_in_chinese_and_arabic_read_back_with_ocr(tmp_path: Path, text: str, language: str,
                                                                        font: str) -> None:
    cues = cues_from_sentences([text], [(0.0, 2.0)], max_words_per_line=4)
    assert len(cues[0].words) == (10 if language == "chi_sim" else 4)  # Chinese: each character is a "word"
    style = SubtitleStyle(mode="highlight", font=font)
    video = _render(tmp_path, cues, 2.0, style)
    frame = frame_at(video, cues[0].words[1].start + 0.1, tmp_path / "frame.png")  # the second word highlighted

    read = read_caption(frame, language, with_yellow=True)
    assert similarity(text, read) >= 0.8, read  # libass draws runs left to right: Arabic words came out reversed
    highlight = _highlight(np.asarray(Image.open(frame).convert("RGB"))[BAND_TOP:])
    assert highlight is not None
    # The second word is left of the centre in Chinese, right of it in Arabic (read right to left).
    assert (highlight[0] > 540) == (language == "ara"), highlight


def test_pop_mode_shows_one_word_at_a_time() -> None:
    cues = cues_from_sentences([f"Four places. {CHINESE}"], [(0.0, 2.0)], max_words_per_line=12)
    document = to_ass(cues, SubtitleStyle(mode="pop"), 1080, 1920, caption_safe_zone([], 1080, 1920))
    shown = [line.rsplit("}", 1)[-1] for line in document.splitlines() if line.startswith("Dialogue:")]
    assert shown == ["Four", "places.", *word_tokens(CHINESE)]


def test_captions_keep_out_of_each_platforms_ui_zone() -> None:
    tiktok = caption_safe_zone(["tiktok"], 1080, 1920)
    both = caption_safe_zone(["tiktok", "instagram_reels"], 1080, 1920)
    assert (tiktok.bottom, tiktok.right) == (350, 164)
    assert (both.bottom, both.right) == (450, 164), "the union of the zones"
    assert caption_safe_zone(["tiktok"], 1920, 1080).bottom == 0, "a landscape video is letterboxed"
    style_line = next(line for line in to_ass([], SubtitleStyle(), 1080, 1920, both).splitlines()
                      if line.startswith("Style:"))
    margin_l, margin_r, margin_v = (int(v) for v in style_line.split(",")[19:22])
    assert margin_r == 164 and margin_v == 450 and margin_l >= 60
