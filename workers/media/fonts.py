"""Fonts for burned-in captions: the font each caption is drawn in, and refusing a caption that no
installed font can draw (libass would draw it as boxes, "tofu").

libass finds fonts through fontconfig and, glyph by glyph, falls back to any installed font that has a
character, so coverage is asked of fontconfig as well: the charset of every installed font, read once
per process from ``fc-list``, is exactly the set of faces libass can reach. (fontTools could read the
font files' cmaps, but it is not a dependency here and would still need fontconfig to know which files
libass sees.)

The font is still chosen per caption rather than left to that fallback, because fontconfig's fallback
is not what a reader expects: for Chinese it picks ``Noto Sans CJK JP`` (Japanese glyph forms), and for
Arabic whichever Arabic face sorts first. A caption the style's font draws entirely keeps it; otherwise
the caption takes the Noto face made for its script (``Noto Sans CJK SC`` for Han, ``… JP`` when it
has kana, ``… KR`` for Hangul, ``Noto Sans Arabic``, ``Noto Sans Hebrew``, ``Noto Sans Devanagari``…),
and any character that face lacks (a Latin brand name in an Arabic line) still falls back glyph by
glyph. Right-to-left text needs nothing here: libass shapes it with HarfBuzz and orders it with
FriBidi.
"""

from __future__ import annotations

import bisect
import subprocess
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from workers.media.ffmpeg import MediaError

FC_LIST_TIMEOUT_S = 30.0
FONT_PACKAGES_HINT = "Debian's fonts-noto-core and fonts-noto-cjk cover every script in use"

# A script (the first word of a character's Unicode name) → the faces to try, in order. Scripts not
# listed try "Noto Sans <Script>", which is how the Noto families are named.
_SCRIPT_FACES: dict[str, tuple[str, ...]] = {
    "CJK": ("Noto Sans CJK SC",),
    "IDEOGRAPHIC": ("Noto Sans CJK SC",),
    "FULLWIDTH": ("Noto Sans CJK SC",),
    "HALFWIDTH": ("Noto Sans CJK SC",),
    "HIRAGANA": ("Noto Sans CJK JP",),
    "KATAKANA": ("Noto Sans CJK JP",),
    "HANGUL": ("Noto Sans CJK KR",),
    "ARABIC": ("Noto Sans Arabic", "Noto Naskh Arabic"),
}
# When a caption mixes Han with kana or Hangul, the kana or Hangul decides (Japanese, Korean text).
_SCRIPT_PRIORITY = ("HIRAGANA", "KATAKANA", "HANGUL")


@dataclass(frozen=True)
class Charset:
    """The characters a font family has, as sorted, disjoint code point ranges (inclusive)."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]

    @classmethod
    def parse(cls, ranges: Iterable[str]) -> Charset:
        """fontconfig's charset notation (``"20-7e a0 4e00-9fff"``, hexadecimal) → a Charset."""
        spans = []
        for item in ranges:
            low, _, high = item.partition("-")
            spans.append((int(low, 16), int(high or low, 16)))
        return cls.of(spans)

    @classmethod
    def of(cls, spans: Iterable[tuple[int, int]]) -> Charset:
        merged: list[tuple[int, int]] = []
        for low, high in sorted(spans):
            if merged and low <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        return cls(tuple(low for low, _ in merged), tuple(high for _, high in merged))

    def union(self, other: Charset) -> Charset:
        return Charset.of([*zip(self.starts, self.ends, strict=True), *zip(other.starts, other.ends, strict=True)])

    def __contains__(self, character: object) -> bool:
        if not isinstance(character, str) or len(character) != 1:
            return False
        point = ord(character)
        index = bisect.bisect_right(self.starts, point) - 1
        return index >= 0 and point <= self.ends[index]


_fonts: dict[str, Charset] | None = None
_fonts_lock = threading.Lock()


def parse_fc_list(listing: str) -> dict[str, Charset]:
    """``fc-list --format '%{family}\\t%{charset}\\n'`` → family name → the characters its faces have.

    A font lists every name it answers to (``DejaVu Sans,DejaVu Sans Condensed``); each of them is a
    family libass can be asked for, and the faces of one family (bold, italic…) are pooled."""
    families: dict[str, Charset] = {}
    for line in listing.splitlines():
        names, _, charset = line.partition("\t")
        if not names.strip():
            continue
        characters = Charset.parse(charset.split())
        for name in (n.strip() for n in names.replace("\\,", "\0").split(",")):
            name = name.replace("\0", ",")
            if name:
                families[name] = families[name].union(characters) if name in families else characters
    return families


def installed_fonts() -> dict[str, Charset]:
    """Every font family fontconfig (and so libass) can use, with its characters; read once per process."""
    global _fonts
    with _fonts_lock:
        if _fonts is None:
            try:
                result = subprocess.run(["fc-list", "--format", "%{family}\t%{charset}\n"], capture_output=True,
                                        text=True, timeout=FC_LIST_TIMEOUT_S, check=False)
            except FileNotFoundError as exc:
                raise MediaError("fontconfig is not installed on this worker (apt-get install fontconfig)") from exc
            except subprocess.TimeoutExpired as exc:
                raise MediaError(f"fc-list did not list the fonts within {FC_LIST_TIMEOUT_S:.0f} s") from exc
            if result.returncode != 0:
                raise MediaError(f"fc-list could not list the fonts: {result.stderr.strip()}")
            _fonts = parse_fc_list(result.stdout)
        return _fonts


def clear_font_cache() -> None:
    """Forget the installed fonts (tests; after installing fonts)."""
    global _fonts
    with _fonts_lock:
        _fonts = None


def _drawn(text: str) -> list[str]:
    """The characters of ``text`` that need a glyph: not spaces, line breaks or invisible format marks
    (zero-width joiners, direction marks, variation selectors are handled by the shaper)."""
    return [c for c in text if not c.isspace() and unicodedata.category(c) not in ("Cc", "Cf", "Zs", "Zl", "Zp")
            and not 0xFE00 <= ord(c) <= 0xFE0F]


def _script(character: str) -> str:
    """A character's script as the first word of its Unicode name ("ARABIC", "CJK", "HIRAGANA"…)."""
    return unicodedata.name(character, "UNKNOWN").split(" ")[0].split("-")[0]


def _describe(character: str) -> str:
    return f"{character!r} (U+{ord(character):04X} {unicodedata.name(character, 'no Unicode name')})"


def missing_glyphs(texts: Iterable[str], fonts: dict[str, Charset] | None = None) -> list[str]:
    """The characters in ``texts`` that no installed font has, each once, in order of appearance."""
    fonts = installed_fonts() if fonts is None else fonts
    missing: dict[str, None] = {}
    for text in texts:
        for character in _drawn(text):
            if character not in missing and not any(character in charset for charset in fonts.values()):
                missing[character] = None
    return list(missing)


def check_caption_text(texts: Iterable[str], fonts: dict[str, Charset] | None = None) -> None:
    """Raise ``MediaError`` naming every character of the captions that no installed font can draw."""
    missing = missing_glyphs(texts, fonts)
    if missing:
        shown = ", ".join(_describe(c) for c in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10
                                                                   else "")
        raise MediaError(f"no installed font can draw {len(missing)} character(s) of the captions: {shown}; "
                         f"change the text or install a font with them ({FONT_PACKAGES_HINT})")


def caption_font(text: str, preferred: str, fonts: dict[str, Charset] | None = None) -> str:
    """The family to draw ``text`` in: ``preferred`` when it has every character, else the face made for
    the script of the characters it lacks (when installed), else the installed family with most of them."""
    fonts = installed_fonts() if fonts is None else fonts
    own = fonts.get(preferred)
    lacking = [c for c in _drawn(text) if own is None or c not in own]
    if not lacking:
        return preferred
    scripts = Counter(_script(c) for c in lacking)
    script = next((s for s in _SCRIPT_PRIORITY if s in scripts), scripts.most_common(1)[0][0])
    for family in (*_SCRIPT_FACES.get(script, ()), f"Noto Sans {script.title()}"):
        if family in fonts and all(c in fonts[family] for c in lacking if _script(c) == script):
            return family
    best = max(sorted(fonts), key=lambda family: (sum(c in fonts[family] for c in lacking),
                                                  family.startswith("Noto Sans")), default=preferred)
    return best if any(c in fonts[best] for c in lacking) else preferred
