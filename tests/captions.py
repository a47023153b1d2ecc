"""Checks on burned-in captions: read them back from a video frame with real OCR (tesseract), and check that
the cues of a TTS voice-over are the script's own words.

OCR recipe (docs: FINDINGS, "OCR of burned-in captions"): crop the caption band, keep the near-white pixels
as black text on white, ``tesseract - - -l LANG --psm 6``. White areas of the picture itself (a bright block
of a test image) would read as garbage, so white regions wider than a letter's stroke are removed first.
"""

from __future__ import annotations

import difflib
import re
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from core.video.options import Cue
from core.video.voices import split_sentences

_WHITE = 200  # every channel above this: the caption's fill (white), not the picture behind it
_STROKE_PX = 25  # caption strokes are thinner than this; a white region wider in both directions is picture
_WORD = re.compile(r"\w+")


def frame_at(video: Path, seconds: float, output: Path) -> Path:
    """The video's frame at ``seconds`` as a PNG."""
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-ss", f"{seconds:.3f}",
                    "-i", str(video), "-frames:v", "1", str(output)], check=True, timeout=60)
    return output


def read_caption(frame: Path, language: str, *, band: float = 0.4, with_yellow: bool = False) -> str:
    """The caption text tesseract reads in the bottom ``band`` of a frame (``language``: eng, chi_sim, ara);
    0.4 holds two lines above the tallest platform UI zone (YouTube Shorts' bottom 25 %).
    ``with_yellow``: a highlighted (yellow: red and green high, blue low) word is read as text too."""
    with Image.open(frame) as image:
        picture = image.convert("RGB")
    width, height = picture.size
    pixels = np.asarray(picture.crop((0, round(height * (1 - band)), width, height)))
    if with_yellow:
        pixels = pixels[:, :, :2]
    white = Image.fromarray(((pixels.min(axis=2) > _WHITE) * 255).astype(np.uint8))
    large = white.filter(ImageFilter.MinFilter(_STROKE_PX)).filter(ImageFilter.MaxFilter(_STROKE_PX))
    text = np.asarray(white) > np.asarray(large)
    page = Image.fromarray(np.where(text, 0, 255).astype(np.uint8))
    page_path = frame.with_name(f"{frame.stem}-caption.png")
    page.save(page_path)
    result = subprocess.run(["tesseract", str(page_path), "-", "-l", language, "--psm", "6"], capture_output=True,
                            text=True, check=True, timeout=120)
    return result.stdout.strip()


def letters(text: str) -> str:
    """Letters and digits only, case folded: what OCR and the captions can be compared on."""
    return "".join(_WORD.findall(text.casefold()))


def similarity(expected: str, read: str) -> float:
    """How much of ``expected`` OCR read back (0–1), ignoring spaces, punctuation and case."""
    return difflib.SequenceMatcher(None, letters(expected), letters(read), autojunk=False).ratio()


def assert_cues_follow_script(cues: list[Cue], script: str) -> None:
    """Every cue is a contiguous run of the script's words (punctuation and casing as written), and
    together the cues hold each word once, in order."""
    words = " ".join(split_sentences(script)).split()
    position = 0
    for number, cue in enumerate(cues, start=1):
        shown = cue.text.split()
        assert shown == words[position : position + len(shown)], (
            f"cue {number} {cue.text!r} is not the script's next words {words[position:position + len(shown)]}")
        position += len(shown)
    assert position == len(words), f"the cues stop after {position} of the script's {len(words)} words"
