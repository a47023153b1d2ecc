"""Voices for the voice-over, and the script → sentences split the voice-over and subtitles share.

A voice id names an engine and a voice within it:

* ``espeak:<voice>[+<variant>]`` — espeak-ng, offline (``espeak:en-us``, ``espeak:en-gb+f3``): a voice
  from ``espeak-ng --voices`` and optionally a variant from ``espeak-ng --voices=variant``.
* ``vits:<model>`` — a transformers ``VitsModel`` (hub id such as ``facebook/mms-tts-eng`` or a local
  folder); ``vits:`` alone means ``settings.tts_vits_model``.
* ``csm:<clip asset id>`` — Sesame CSM (``settings.tts_csm_model``: ``sesame/csm-1b`` or a local folder),
  a modern TTS that clones the voice of a reference clip (``core.video.voice_clips``: 3–30 s, stored as
  an asset); ``csm:`` alone speaks in the model's own voice.

Validation runs when a video job is created, in the UI/API process, so it only asks espeak-ng for its
voice list (one subprocess, cached per process), or the database for a reference clip, and never loads
a model.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.config import get_settings
from core.errors import InvalidInput
from core.video.voice_clips import get_reference_clip

Engine = Literal["espeak", "vits", "csm"]
ENGINES: tuple[Engine, ...] = ("espeak", "vits", "csm")
CLONING_ENGINES: tuple[Engine, ...] = ("csm",)

MIN_RATE_WPM = 80
MAX_RATE_WPM = 400
DEFAULT_RATE_WPM = 165

ESPEAK_TIMEOUT_S = 15.0

# English variants offered in the voice picker next to espeak-ng's own (male) defaults.
_ENGLISH_VARIANTS: tuple[tuple[str, str, str], ...] = (
    ("en-us", "f3", "female"),
    ("en-us", "f5", "female, lower"),
    ("en-us", "m3", "male, deeper"),
    ("en-gb", "f2", "female"),
    ("en-gb", "m7", "male, deeper"),
)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Voice:
    id: str
    label: str
    engine: Engine
    language: str


@dataclass(frozen=True)
class _EspeakVoice:
    language: str
    name: str
    gender: str


@dataclass(frozen=True)
class _EspeakCatalogue:
    voices: dict[str, _EspeakVoice]  # language code (lower case) → voice
    aliases: dict[str, _EspeakVoice]  # other codes espeak-ng accepts ("en") → the voice it picks
    variants: dict[str, str]  # lower-case variant → its file name (as espeak-ng wants it)


_catalogue: _EspeakCatalogue | None = None
_catalogue_lock = threading.Lock()


def _run_espeak_list(argument: str) -> str:
    try:
        result = subprocess.run(
            ["espeak-ng", argument], capture_output=True, text=True, timeout=ESPEAK_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise InvalidInput(
            "espeak voices are unavailable: espeak-ng is not installed on this machine (apt-get install espeak-ng)"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise InvalidInput(f"espeak voices are unavailable: 'espeak-ng {argument}' did not answer") from exc
    if result.returncode != 0:
        raise InvalidInput(f"espeak voices are unavailable: 'espeak-ng {argument}' failed: {result.stderr.strip()}")
    return result.stdout


# " 2  en-gb           --/M      English_(Great_Britain) gmw/en               (en 2)"
_VOICE_LINE = re.compile(r"^\s*(?P<priority>\d+)\s+(?P<lang>\S+)\s+(?P<age>\S+)/(?P<gender>[MF-])\s+(?P<name>\S+)"
                         r"\s+(?P<file>.+?)\s*(?P<others>\(.*)?$")
_OTHER_LANGUAGE = re.compile(r"\((\S+)\s+(\d+)\)")


def parse_espeak_voices(listing: str) -> tuple[dict[str, _EspeakVoice], dict[str, _EspeakVoice]]:
    """``espeak-ng --voices`` output → (language code → voice, other language code → its preferred voice).

    MBROLA voices need extra packages and are left out. The second map holds codes that espeak-ng
    resolves itself (``en`` → the voice that lists ``(en 2)`` with the best priority).
    """
    voices: dict[str, _EspeakVoice] = {}
    aliases: dict[str, tuple[int, _EspeakVoice]] = {}
    for line in listing.splitlines()[1:]:
        match = _VOICE_LINE.match(line)
        if not match or match["lang"] == "variant" or match["file"].startswith("mb/"):
            continue
        code = match["lang"].lower()
        gender = {"M": "male", "F": "female"}.get(match["gender"], "")
        voice = voices.setdefault(code, _EspeakVoice(code, match["name"].replace("_", " "), gender))
        for other, priority in _OTHER_LANGUAGE.findall(match["others"] or ""):
            if other.lower() not in aliases or int(priority) < aliases[other.lower()][0]:
                aliases[other.lower()] = (int(priority), voice)
    return voices, {code: voice for code, (_, voice) in aliases.items() if code not in voices}


def parse_espeak_variants(listing: str) -> dict[str, str]:
    """``espeak-ng --voices=variant`` output → lower-case variant → file name (``f3``, ``Alicia``)."""
    variants: dict[str, str] = {}
    for line in listing.splitlines()[1:]:
        match = _VOICE_LINE.match(line)
        if not match or not match["file"].startswith("!v/"):
            continue
        name = match["file"].removeprefix("!v/")
        if name and not any(c.isspace() for c in name):  # "Mr serious" cannot be named in a voice id
            variants.setdefault(name.lower(), name)
    return variants


def _espeak_catalogue() -> _EspeakCatalogue:
    global _catalogue
    with _catalogue_lock:
        if _catalogue is None:
            voices, aliases = parse_espeak_voices(_run_espeak_list("--voices"))
            variants = parse_espeak_variants(_run_espeak_list("--voices=variant"))
            if not voices:
                raise InvalidInput("espeak voices are unavailable: espeak-ng listed no voices")
            _catalogue = _EspeakCatalogue(voices, aliases, variants)
        return _catalogue


def clear_voice_cache() -> None:
    """Forget the espeak-ng voice list (tests; after installing voices)."""
    global _catalogue
    with _catalogue_lock:
        _catalogue = None


def _default_vits_model() -> str:
    return get_settings().tts_vits_model


def _vits_language(model: str) -> str:
    # facebook/mms-tts-<ISO 639-3>
    match = re.search(r"mms-tts-([a-z]{3})\b", model)
    return match[1] if match else ""


def _vits_voice(model: str) -> Voice:
    return Voice(id=f"vits:{model}", label=f"VITS · {model}", engine="vits", language=_vits_language(model))


def _espeak_voice(voice: _EspeakVoice, variant: str = "", variant_label: str = "", *, code: str = "") -> Voice:
    voice_id = f"espeak:{code or voice.language}" + (f"+{variant}" if variant else "")
    detail = variant_label or (f"variant {variant}" if variant else voice.gender)
    label = f"{voice.name} · {voice.language}" + (f" ({detail})" if detail else "")
    return Voice(id=voice_id, label=label, engine="espeak", language=voice.language)


def _csm_voice(clip_id: int | None, label: str = "") -> Voice:
    if clip_id is None:
        return Voice(id="csm:", label="CSM · the model's own voice", engine="csm", language="en")
    return Voice(id=f"csm:{clip_id}", label=f"CSM · cloned from {label or f'clip #{clip_id}'}", engine="csm",
                 language="en")


def cloned_voice(clip_id: int) -> Voice:
    """The cloned voice that speaks like reference clip ``clip_id`` (checked: it must be one)."""
    clip = get_reference_clip(clip_id)
    return _csm_voice(clip_id, str((clip.meta or {}).get("filename") or ""))


def list_voices() -> list[Voice]:
    """Every espeak-ng voice, a few English female/male variants, and the configured VITS and CSM voices
    (cloned voices are listed per character: ``core.video.voice_clips.list_reference_clips``)."""
    catalogue = _espeak_catalogue()
    voices = [_espeak_voice(v) for v in sorted(catalogue.voices.values(), key=lambda v: v.language)]
    for language, variant, label in _ENGLISH_VARIANTS:
        if language in catalogue.voices and variant in catalogue.variants:
            voices.append(_espeak_voice(catalogue.voices[language], catalogue.variants[variant], label))
    voices.append(_vits_voice(_default_vits_model()))
    voices.append(_csm_voice(None))
    return voices


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or Path(model).exists()


def parse_voice_id(voice_id: str) -> tuple[Engine, str]:
    """``"espeak:en-us+f3"`` → ``("espeak", "en-us+f3")``; only the syntax is checked here."""
    if not isinstance(voice_id, str) or ":" not in voice_id:
        raise InvalidInput(f"invalid voice {voice_id!r}; use 'espeak:<voice>' (e.g. 'espeak:en-us'), 'vits:<model>' "
                           "or 'csm:<reference clip id>'")
    engine, _, name = voice_id.strip().partition(":")
    engine = engine.strip().lower()
    if engine not in ENGINES:
        raise InvalidInput(f"unknown voice engine {engine!r} in {voice_id!r}; use 'espeak:<voice>', 'vits:<model>' "
                           "or 'csm:<reference clip id>'")
    return engine, name.strip()


def validate_voice(voice_id: str) -> Voice:
    """The voice ``voice_id`` names, in canonical form; raises ``InvalidInput`` saying what is wrong.

    Loads no model: an espeak voice is checked against espeak-ng's list, a VITS model only for its
    shape (a hub id ``owner/name``) or, for a local path, for a folder with a ``config.json``, a cloned
    voice for its reference clip (a stored ``voice-reference`` asset, not in the trash).
    """
    engine, name = parse_voice_id(voice_id)
    if engine == "csm":
        if not name:
            return _csm_voice(None)
        if not name.isdigit() or len(name) > 18:
            raise InvalidInput(f"unknown voice {voice_id!r}; a cloned voice is 'csm:<reference clip id>' ('csm:12')")
        return cloned_voice(int(name))
    if engine == "vits":
        model = name or _default_vits_model()
        if _looks_like_path(model):
            folder = Path(model).expanduser()
            if not (folder / "config.json").is_file():
                raise InvalidInput(f"unknown voice {voice_id!r}; {model!r} is not a folder with a VITS model")
        elif not _HUB_ID.match(model):
            raise InvalidInput(f"unknown voice {voice_id!r}; a VITS voice is 'vits:<hub id or model folder>'")
        return _vits_voice(model)

    base, plus, variant = name.partition("+")
    base = base.strip().lower()
    variant = variant.strip()
    if not base:
        raise InvalidInput(f"unknown voice {voice_id!r}; name an espeak-ng voice, e.g. 'espeak:en-us'")
    catalogue = _espeak_catalogue()
    voice = catalogue.voices.get(base) or catalogue.aliases.get(base)
    if voice is None:
        close = difflib.get_close_matches(base, list(catalogue.voices), n=4, cutoff=0.5)
        hint = f"did you mean {', '.join(repr('espeak:' + c) for c in close)}?" if close else "see the voice list"
        raise InvalidInput(f"unknown voice 'espeak:{base}'; espeak-ng has no voice {base!r} ({hint})")
    if plus:
        canonical = catalogue.variants.get(variant.lower())
        if canonical is None:
            close = difflib.get_close_matches(variant.lower(), list(catalogue.variants), n=4, cutoff=0.5)
            hint = f"did you mean {', '.join(catalogue.variants[c] for c in close)}?" if close else "e.g. f3 or m3"
            raise InvalidInput(f"unknown voice {voice_id!r}; espeak-ng has no variant {variant!r} ({hint})")
        return _espeak_voice(voice, canonical, code=base)
    return _espeak_voice(voice, code=base)


def validate_rate(rate_wpm: float) -> int:
    """A speaking rate in words per minute within [MIN_RATE_WPM, MAX_RATE_WPM]."""
    if isinstance(rate_wpm, bool) or not isinstance(rate_wpm, int | float) or rate_wpm != rate_wpm:
        raise InvalidInput(f"speaking rate must be a number of words per minute, not {rate_wpm!r}")
    if not MIN_RATE_WPM <= rate_wpm <= MAX_RATE_WPM:
        raise InvalidInput(
            f"speaking rate {rate_wpm:g} words per minute is out of range ({MIN_RATE_WPM}–{MAX_RATE_WPM})"
        )
    return round(rate_wpm)


# --- script → sentences -------------------------------------------------------------------------

# Abbreviations after which a full stop never ends a sentence (they precede a name or a number).
_TITLES = frozenset(
    "mr mrs ms mx dr prof sr st mt ft vs no nos fig figs approx dept gen col capt lt sgt rev hon gov pres "
    "e.g i.e cf al jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
# Abbreviations that may also end a sentence: a full stop after them ends one if a capital follows.
_MAYBE_END = frozenset("etc inc ltd co corp jr bros assn ave blvd rd est".split())

_END = re.compile(r"(?:\.{2,}|…|[.!?])[.!?…]*[\"'”’»)\]]*(?=\s|$)")
_BULLET = re.compile(r"^\s*(?:[-*•·–—]|\d+[.)])\s+")
_SPOKEN = re.compile(r"\w")


def _ends_sentence(line: str, start: int, match: re.Match[str]) -> bool:
    mark = match[0].rstrip("\"'”’»)]")
    rest = line[match.end() :].lstrip()
    following = rest[:1]
    if not following:
        return True
    if any(c in mark for c in "!?"):
        return True
    if mark.startswith("..") or mark.startswith("…"):
        # An ellipsis mid-sentence ("I was thinking... maybe") is a pause; before a capital, an end.
        return not following.islower()
    word = line[start : match.start()].split()[-1:] or [""]
    token = word[0].lstrip("\"'“‘«([").lower()
    if token in _TITLES:
        return False
    if len(token) == 1 and token.isalpha():  # an initial: "J. K. Rowling"
        return False
    if token in _MAYBE_END or ("." in token and any(c.isalpha() for c in token)):  # "etc.", "U.S.", "a.m."
        return following.isupper() or following in "\"'“‘«("
    return True


def split_sentences(script: str) -> list[str]:
    """Split a voice-over script into the sentences spoken (and subtitled) one by one.

    Sentences end at ``.``, ``!``, ``?``, ``…`` (with any closing quotes) and at line breaks; a full
    stop after a title (``Dr.``), an initial or inside a number (``3.5``) does not end one. List bullets
    are dropped, whitespace is collapsed, and fragments with nothing to say (``...``, ``—``) are left out.
    """
    if not isinstance(script, str) or not script.strip():
        raise InvalidInput("the script is empty; write what the voice-over should say")
    sentences: list[str] = []
    for raw_line in script.splitlines():
        line = " ".join(_BULLET.sub("", raw_line).split())
        start = 0
        for match in _END.finditer(line):
            if _ends_sentence(line, start, match):
                sentences.append(line[start : match.end()].strip())
                start = match.end()
        sentences.append(line[start:].strip())
    result = [s for s in sentences if _SPOKEN.search(s)]
    if not result:
        raise InvalidInput("the script has no words to speak")
    return result
