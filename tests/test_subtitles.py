"""Subtitle cues from word timestamps and TTS sentence spans, and SRT files (pure Python)."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.video.options import Cue, Word
from core.video.subtitles import (
    align_words,
    check_cues,
    cues_from_sentences,
    cues_from_words,
    format_timestamp,
    parse_srt,
    to_srt,
)
from tests.captions import assert_cues_follow_script


def words_every(texts: list[str], *, step: float = 0.3, length: float = 0.25, start: float = 0.0) -> list[Word]:
    return [Word(text=t, start=start + i * step, end=start + i * step + length) for i, t in enumerate(texts)]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "00:00:00,000"), (3661.5, "01:01:01,500"), (59.9996, "00:01:00,000"), (1.0004, "00:00:01,000"),
     (36000.123, "10:00:00,123"), (0.001, "00:00:00,001")],
)
def test_srt_timestamps_are_hours_minutes_seconds_comma_milliseconds(seconds: float, expected: str) -> None:
    assert format_timestamp(seconds) == expected


def test_srt_is_numbered_from_one_with_blank_lines_between_cues() -> None:
    srt = to_srt([Cue(start=0, end=1.25, text="Hello there"), Cue(start=1.5, end=3661.5, text="two\n\nlines")])

    assert srt == (
        "1\n00:00:00,000 --> 00:00:01,250\nHello there\n"
        "\n"
        "2\n00:00:01,500 --> 01:01:01,500\ntwo\nlines\n"
    )


def test_srt_round_trips_through_parse_srt() -> None:
    cues = [Cue(start=0.0, end=1.234, text="first line"), Cue(start=1.5, end=2.75, text="second\nhas two lines"),
            Cue(start=3600.001, end=3601.999, text="an hour in")]

    parsed = parse_srt(to_srt(cues))

    assert [(c.start, c.end, c.text) for c in parsed] == [(c.start, c.end, c.text) for c in cues]


def test_parse_srt_accepts_crlf_bom_dots_and_missing_numbers() -> None:
    text = "\ufeff1\r\n00:00:01.5 --> 00:00:02,000\r\nHi\r\n\r\n\r\n00:00:03,000 --> 00:00:04,000 X1:0\r\nBye\r\n"

    parsed = parse_srt(text)

    assert [(c.start, c.end, c.text) for c in parsed] == [(1.5, 2.0, "Hi"), (3.0, 4.0, "Bye")]


def test_parse_srt_rejects_a_block_without_timing() -> None:
    with pytest.raises(InvalidInput, match="not an SRT cue"):
        parse_srt("1\nhello\n")


def test_word_cues_respect_max_words_per_line() -> None:
    words = words_every("one two three four five six seven eight nine ten".split())

    cues = cues_from_words(words, max_words_per_line=3, audio_end=3.0)

    assert [c.text for c in cues] == ["one two three", "four five six", "seven eight nine", "ten"]
    assert all(len(c.text.split()) <= 3 for c in cues)
    check_cues(cues, 3.0)


def test_word_cues_break_at_long_pauses_and_sentence_ends() -> None:
    words = [*words_every(["Hello", "world."]), *words_every(["New", "one"], start=0.6),
             *words_every(["after", "pause"], start=3.0)]

    cues = cues_from_words(words, max_words_per_line=6, max_gap=0.6)

    assert [c.text for c in cues] == ["Hello world.", "New one", "after pause"]
    assert cues[1].end < 3.0, "a cue does not stretch across a long pause"


def test_word_cues_never_run_past_the_audio_end() -> None:
    # Garbage timings as a random model gives them: past the end, stacked, reversed.
    words = [Word(text="a", start=0.0, end=0.0), Word(text="b", start=0.0, end=0.0), Word(text="c", start=1.9, end=5.0),
             Word(text="d", start=7.0, end=8.0), Word(text="e", start=1.0, end=0.5), Word(text="  ", start=0, end=1)]

    cues = cues_from_words(words, max_words_per_line=1, audio_end=2.0)

    assert cues, "words inside the audio make cues"
    assert max(c.end for c in cues) <= 2.0
    check_cues(cues, 2.0)
    assert "a" in [c.text for c in cues]


def test_word_cues_hold_short_words_for_the_minimum_duration() -> None:
    cues = cues_from_words([Word(text="Hi", start=1.0, end=1.05)], max_words_per_line=4, min_duration=0.5,
                           audio_end=10)

    assert cues == [Cue(start=1.0, end=1.5, text="Hi")]


def test_sentence_cues_split_each_span_by_characters() -> None:
    sentences = ["One two three four five.", "Short."]
    timings = [(0.0, 2.0), (2.3, 3.0)]

    cues = cues_from_sentences(sentences, timings, max_words_per_line=3)

    assert [c.text for c in cues] == ["One two three", "four five.", "Short."]
    # "One two three " is 14 characters, "four five. " 11: the span is shared 14:11.
    assert cues[0].start == 0.0 and cues[0].end == pytest.approx(2.0 * 14 / 25)
    assert cues[1].start == cues[0].end and cues[1].end == 2.0
    assert (cues[2].start, cues[2].end) == (2.3, 3.0)
    check_cues(cues, 3.0)


SCRIPT = "Meet Zoë at #BeachDay, 9 a.m. sharp! Sunscreen comes first."
SENTENCES = ["Meet Zoë at #BeachDay, 9 a.m. sharp!", "Sunscreen comes first."]
TIMINGS = [(0.0, 3.0), (3.3, 4.5)]


def test_sentence_cues_show_the_script_words_whatever_the_audio_model_heard() -> None:
    # What a random whisper hears in our own TTS, and what a real one makes of names and hashtags.
    garbage = words_every(["去去去去去去"] * 6, step=0.7)
    misheard = words_every(["Meet", "Zoe", "at", "beach", "day", "nine", "am", "sharp", "Sun", "screen", "comes",
                            "first"], step=0.35)

    plain = cues_from_sentences(SENTENCES, TIMINGS, max_words_per_line=3)
    for heard in (garbage, misheard):
        cues = cues_from_sentences(SENTENCES, TIMINGS, max_words_per_line=3, heard=heard)

        assert [c.text for c in cues] == [c.text for c in plain]
        assert_cues_follow_script(cues, SCRIPT)
        check_cues(cues, 4.5)
    assert [c.text for c in plain] == ["Meet Zoë at", "#BeachDay, 9", "a.m. sharp!", "Sunscreen comes first."]
    garbled = cues_from_sentences(SENTENCES, TIMINGS, max_words_per_line=3, heard=garbage)
    assert garbled == plain, "nothing heard matches: the spans are shared by characters"


def test_heard_words_move_the_line_breaks_to_where_they_were_spoken() -> None:
    sentences = ["One two three four five."]
    heard = [Word(text="one", start=0.05, end=0.3), Word(text="to", start=0.35, end=0.5),
             Word(text="three", start=0.55, end=0.9), Word(text="Four,", start=1.5, end=1.7),
             Word(text="five", start=1.75, end=1.95)]

    cues = cues_from_sentences(sentences, [(0.0, 2.0)], max_words_per_line=3, heard=heard)

    assert [(c.start, c.end, c.text) for c in cues] == [(0.0, 1.5, "One two three"), (1.5, 2.0, "four five.")]


def test_a_heard_word_never_squeezes_a_line_to_nothing() -> None:
    # whisper puts "four" at the very start: the break it implies would leave the first line no time.
    heard = [Word(text="four", start=0.01, end=0.02)]

    cues = cues_from_sentences(["One two three four five."], [(0.0, 2.0)], max_words_per_line=3, heard=heard)

    assert cues == cues_from_sentences(["One two three four five."], [(0.0, 2.0)], max_words_per_line=3)


def test_script_words_align_to_heard_words_ignoring_case_and_punctuation() -> None:
    heard = words_every(["meet", "zoey", "at", "beach", "day,", "sharp"])

    matched = align_words(["Meet", "Zoë", "at", "#BeachDay,", "sharp!"], heard)

    assert {index: word.text for index, word in matched.items()} == {0: "meet", 2: "at", 4: "sharp"}


def test_sentence_cues_need_one_timing_per_sentence() -> None:
    with pytest.raises(InvalidInput, match="2 sentences but 1 timings"):
        cues_from_sentences(["a.", "b."], [(0, 1)], max_words_per_line=3)


def test_check_cues_lists_every_problem() -> None:
    cues = [Cue(start=0, end=1, text="ok"), Cue(start=0.5, end=0.5, text=" "), Cue(start=2, end=9, text="late")]

    with pytest.raises(InvalidInput) as error:
        check_cues(cues, 5.0)

    message = str(error.value)
    assert "subtitle 2" in message and "no text" in message and "does not end after it starts" in message
    assert "overlaps" in message
    assert "subtitle 3" in message and "past the end of the audio" in message
