"""Subtitle cues for the voice-over, and SRT files. Pure Python: shared by the worker that renders a
video, the video page (to show and edit cues) and the tests.

Two ways to make cues:

* ``cues_from_sentences`` — for a voice-over the studio spoke from a script: the text is always the
  script's own words (punctuation and casing kept), in order, each once. The TTS engine's exact sentence
  spans place the sentences; inside a sentence the line breaks follow the words heard in the audio (the
  TTS engine's word timings, or whisper's word timestamps aligned to the script by ``align_words``) and
  fall back to sharing the span by characters where nothing matched. Transcribing our own TTS could only
  add errors (names, brands, hashtags; a random test model hears garbage), so what whisper heard never
  becomes text.
* ``cues_from_words`` — whisper's own words, for audio without a script (any words: real models
  sometimes put words past the end of the audio).

Either way a cue is one line of at most ``max_words_per_line`` words, cues never overlap and never
run past the audio.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Sequence

from core.errors import InvalidInput
from core.video.options import Cue, Word

DEFAULT_MAX_GAP_S = 0.6
"""A pause between two words longer than this starts a new cue."""
DEFAULT_MIN_CUE_S = 0.4
"""Cues shorter than this are held longer, when the next cue and the audio end leave room."""
_TOLERANCE_S = 0.0015  # SRT keeps milliseconds; rounding may move a time by half of one
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")
_WORD_CHARACTERS = re.compile(r"\w+")
_MIN_LINE_SHARE = 0.25
"""A heard word may move a line break, but never leave a line less than this share of its even time."""


def _clean(text: str) -> str:
    return " ".join(str(text).split())


def cues_from_words(
    words: Sequence[Word],
    *,
    max_words_per_line: int,
    max_gap: float = DEFAULT_MAX_GAP_S,
    min_duration: float = DEFAULT_MIN_CUE_S,
    audio_end: float | None = None,
) -> list[Cue]:
    """Group timed words into cues of at most ``max_words_per_line`` words.

    A new cue starts after ``max_words_per_line`` words, after a pause longer than ``max_gap`` and
    after a word that ends a sentence. Cues are sorted, do not overlap, and end by ``audio_end``
    (words at or after it are shown at the very end if there is room, else dropped: nobody hears
    them). A cue shorter than ``min_duration`` is extended into the silence after it.
    """
    if max_words_per_line < 1:
        raise InvalidInput("max words per line must be at least 1")
    if audio_end is not None and audio_end <= 0:
        return []
    cleaned: list[Word] = []
    for word in words:
        text = _clean(word.text)
        if not text:
            continue
        start = max(0.0, float(word.start))
        end = max(start, float(word.end))
        if audio_end is not None:
            start, end = min(start, audio_end), min(end, audio_end)
        cleaned.append(Word(text=text, start=start, end=end))
    cleaned.sort(key=lambda w: (w.start, w.end))

    groups: list[list[Word]] = []
    for word in cleaned:
        current = groups[-1] if groups else None
        if (
            current is None
            or len(current) >= max_words_per_line
            or word.start - current[-1].end > max_gap
            or _SENTENCE_END.search(current[-1].text)
        ):
            groups.append([word])
        else:
            current.append(word)

    limit = math.inf if audio_end is None else audio_end
    cues: list[Cue] = []
    for index, group in enumerate(groups):
        text = " ".join(w.text for w in group)
        previous_end = cues[-1].end if cues else 0.0
        start = max(group[0].start, previous_end)
        end = max(max(w.end for w in group), start)
        if end - start < min_duration:
            following = groups[index + 1][0].start if index + 1 < len(groups) else math.inf
            end = max(end, min(start + min_duration, following))
            if end - start < min_duration / 4:  # words stacked on one instant: give them time anyway
                end = start + min_duration
        end = min(end, limit)
        if end - start <= 0:
            # No time left before the audio ends: squeeze in just before the end if the previous cue
            # leaves room, else join the previous cue when the line has room, else drop the words.
            if limit - previous_end > 0:
                start, end = max(previous_end, limit - min_duration), limit
            elif cues and len(cues[-1].text.split()) + len(group) <= max_words_per_line:
                cues[-1] = Cue(start=cues[-1].start, end=cues[-1].end, text=f"{cues[-1].text} {text}")
                continue
            else:
                continue
        cues.append(Cue(start=start, end=end, text=text))
    return cues


def _lines(words: list[str], max_words_per_line: int) -> list[list[str]]:
    """Split words into the fewest lines of at most ``max_words_per_line``, as even as possible
    (at 4 per line: 5 words → 3 + 2, not 4 + 1; 9 → 3 + 3 + 3, not 4 + 4 + 1)."""
    count = math.ceil(len(words) / max_words_per_line)
    size, extra = divmod(len(words), count)
    lines, position = [], 0
    for index in range(count):
        take = size + (1 if index < extra else 0)
        lines.append(words[position : position + take])
        position += take
    return lines


def _comparable(word: str) -> str:
    """A word as whisper and the script can agree on it: letters and digits only, case folded."""
    return "".join(_WORD_CHARACTERS.findall(word.casefold()))


def align_words(script_words: Sequence[str], heard: Sequence[Word]) -> dict[int, Word]:
    """The heard word that matches each script word, by index into ``script_words``.

    The longest common runs of the two sequences (compared without punctuation or case) are matched, in
    order; script words the audio model misheard, skipped or split are simply left out.
    """
    script = [_comparable(word) for word in script_words]
    spoken = sorted((w for w in heard if _comparable(w.text)), key=lambda w: (w.start, w.end))
    matcher = difflib.SequenceMatcher(None, script, [_comparable(w.text) for w in spoken], autojunk=False)
    matched: dict[int, Word] = {}
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            matched[block.a + offset] = spoken[block.b + offset]
    return matched


def _interpolate(x: float, knots: list[tuple[float, float]]) -> float:
    """Piecewise-linear y at ``x`` through ``knots`` (sorted by x, first and last bracketing x)."""
    for (x0, y0), (x1, y1) in itertools.pairwise(knots):
        if x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return knots[-1][1]


def _knots(offsets: list[int], total: int, span: tuple[float, float],
           heard_starts: dict[int, float]) -> list[tuple[float, float]]:
    """(characters spoken so far, seconds) through the sentence's start, the words heard and its end."""
    start, end = span
    knots = [(0.0, start)]
    for index in sorted(heard_starts):
        at = min(max(heard_starts[index], start), end)
        if 0 < offsets[index] and at >= knots[-1][1]:
            knots.append((float(offsets[index]), at))
    knots.append((float(total), end))
    return knots


def _line_breaks(
    lines: list[list[str]], span: tuple[float, float], heard_starts: dict[int, float]
) -> tuple[list[float], list[tuple[float, float]]]:
    """Where each line of one sentence starts and the last one ends, inside ``span``, and the knots used.

    Each word's start is placed on a line through the sentence's start, the words heard (``heard_starts``:
    word index → start) and its end, the x axis being the characters spoken so far (a word and the space
    after it); with nothing heard that is the span shared by characters. A break that would leave a line
    under ``_MIN_LINE_SHARE`` of its even share is not trusted: that sentence is shared by characters.
    """
    start, end = span
    weights = [len(word) + 1 for line in lines for word in line]  # +1: the space after it takes time too
    total = sum(weights)
    offsets = [sum(weights[:index]) for index in range(len(weights))]
    knots = _knots(offsets, total, span, heard_starts)
    firsts = list(itertools.accumulate((len(line) for line in lines[:-1]), initial=0))
    breaks = [start, *(_interpolate(offsets[first], knots) for first in firsts[1:]), end]
    shortest = _MIN_LINE_SHARE * (end - start) / len(lines)
    if len(knots) > 2 and any(b - a < shortest for a, b in itertools.pairwise(breaks)):
        return _line_breaks(lines, span, {})
    return breaks, knots


# Scripts written without spaces between words: each character is timed (and highlighted) on its own.
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(f"[{_UNSPACED}][^\\w\\s]*|(?:(?![{_UNSPACED}]).)+")


def word_tokens(word: str) -> list[str]:
    """The pieces of one space-separated word shown one at a time: the word itself, or for Chinese and
    Japanese each character (with the punctuation after it). Joined, they give the word back."""
    return _TOKEN.findall(word) or [word]


def _timed_words(words: list[str], first_offset: int, knots: list[tuple[float, float]],
                 span: tuple[float, float]) -> list[Word]:
    """Each token of a line's ``words`` with its time: starts on the sentence's knots (so a heard word starts
    where it was heard), kept inside the line's ``span`` and in order; each ends where the next starts."""
    line_start, line_end = span
    tokens: list[tuple[str, float]] = []
    offset = first_offset
    for word in words:
        inside = 0
        for token in word_tokens(word):
            tokens.append((token, _interpolate(float(offset + inside), knots)))
            inside += len(token)
        offset += len(word) + 1
    starts = [line_start]
    for _token, at in tokens[1:]:
        starts.append(min(max(at, starts[-1]), line_end))
    ends = [*starts[1:], line_end]
    return [Word(text=token, start=start, end=end)
            for (token, _at), start, end in zip(tokens, starts, ends, strict=True)]


def cues_from_sentences(
    sentences: Sequence[str],
    timings: Sequence[tuple[float, float]],
    *,
    max_words_per_line: int,
    heard: Sequence[Word] = (),
) -> list[Cue]:
    """Cues from the TTS sentence spans: each sentence's words in balanced lines of at most
    ``max_words_per_line``, the lines together filling its span exactly.

    The text is the script's, always. ``heard`` (the TTS engine's word timings, or whisper's word
    timestamps) only moves the breaks between a sentence's lines to where its words were heard; without
    it, or where none of its words matched, the span is shared among the lines in proportion to their
    characters. Each cue's ``words`` time its words (CJK: characters) the same way, for word-by-word
    captions: a heard word starts where it was heard, the others share the time between by characters."""
    if max_words_per_line < 1:
        raise InvalidInput("max words per line must be at least 1")
    if len(sentences) != len(timings):
        raise InvalidInput(f"{len(sentences)} sentences but {len(timings)} timings")
    words_by_sentence = [_clean(sentence).split() for sentence in sentences]
    script_words = [word for words in words_by_sentence for word in words]
    matched = align_words(script_words, heard) if heard else {}
    cues: list[Cue] = []
    previous_end = 0.0
    first_word = 0
    for words, (raw_start, raw_end) in zip(words_by_sentence, timings, strict=True):
        heard_starts = {index - first_word: word.start for index, word in matched.items()
                        if first_word <= index < first_word + len(words)}
        first_word += len(words)
        start, end = max(float(raw_start), previous_end, 0.0), float(raw_end)
        if not words or end <= start:
            continue
        lines = _lines(words, max_words_per_line)
        breaks, knots = _line_breaks(lines, (start, end), heard_starts)
        offset = 0
        for line, (line_start, line_end) in zip(lines, itertools.pairwise(breaks), strict=True):
            timed = _timed_words(line, offset, knots, (line_start, line_end))
            cues.append(Cue(start=line_start, end=line_end, text=" ".join(line), words=timed))
            offset += sum(len(word) + 1 for word in line)
        previous_end = end
    return cues


def format_timestamp(seconds: float) -> str:
    """Seconds → SRT ``HH:MM:SS,mmm`` (3661.5 → ``01:01:01,500``)."""
    if seconds < 0 or seconds != seconds:
        raise InvalidInput(f"subtitle times must be 0 or more seconds, not {seconds!r}")
    total_ms = round(seconds * 1000)
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    """An SRT document: numbered from 1, ``start --> end``, the text, a blank line between cues."""
    blocks = []
    for number, cue in enumerate(cues, start=1):
        # A blank line would end the cue early: keep line breaks, drop empty lines.
        text = "\n".join(line.strip() for line in cue.text.splitlines() if line.strip())
        if not text:
            raise InvalidInput(f"subtitle {number} has no text")
        blocks.append(f"{number}\n{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}\n{text}\n")
    return "\n".join(blocks)


_TIME = r"(\d+):([0-5]?\d):([0-5]?\d)(?:[,.](\d{1,3}))?"
_TIMING_LINE = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s+.*)?$")


def _seconds(hours: str, minutes: str, secs: str, millis: str | None) -> float:
    fraction = int((millis or "0").ljust(3, "0")) / 1000
    return int(hours) * 3600 + int(minutes) * 60 + int(secs) + fraction


def parse_srt(text: str) -> list[Cue]:
    """Cues from an SRT document (BOM, CRLF, ``.`` for ``,`` and missing numbers tolerated)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    cues: list[Cue] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.split("\n")
        if not any(line.strip() for line in lines):
            continue
        if lines and lines[0].strip().isdigit() and len(lines) > 1:
            lines = lines[1:]
        match = _TIMING_LINE.match(lines[0]) if lines else None
        if match is None:
            raise InvalidInput(f"not an SRT cue (expected 'HH:MM:SS,mmm --> HH:MM:SS,mmm'): {block[:80]!r}")
        start, end = _seconds(*match.groups()[:4]), _seconds(*match.groups()[4:])
        if end < start:
            raise InvalidInput(f"SRT cue ends before it starts: {lines[0].strip()!r}")
        cue_text = "\n".join(line.strip() for line in lines[1:] if line.strip())
        cues.append(Cue(start=start, end=end, text=cue_text))
    return cues


def check_cues(cues: Sequence[Cue], duration: float) -> None:
    """Raise ``InvalidInput`` listing every problem: empty text, a cue that does not end after it
    starts, cues out of order or overlapping, a cue past ``duration``."""
    problems: list[str] = []
    previous_end = 0.0
    for number, cue in enumerate(cues, start=1):
        where = f"subtitle {number} ({cue.start:.3f}–{cue.end:.3f} s)"
        if not cue.text.strip():
            problems.append(f"{where} has no text")
        if cue.end <= cue.start:
            problems.append(f"{where} does not end after it starts")
        if cue.start < previous_end - _TOLERANCE_S:
            problems.append(f"{where} overlaps the one before")
        if cue.end > duration + _TOLERANCE_S:
            problems.append(f"{where} runs past the end of the audio ({duration:.3f} s)")
        previous_end = max(previous_end, cue.end)
    if problems:
        raise InvalidInput("; ".join(problems))
