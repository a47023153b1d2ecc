"""Voice-over: voices, script splitting, espeak-ng and VITS synthesis, previews, and whisper word
timestamps on a real espeak track, with tiny models built locally (no downloads, no mocks)."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidInput, PermanentJobError
from core.video.subtitles import check_cues, cues_from_sentences, cues_from_words, parse_srt, to_srt
from core.video.voices import (
    DEFAULT_RATE_WPM,
    MAX_RATE_WPM,
    MIN_RATE_WPM,
    list_voices,
    split_sentences,
    validate_rate,
    validate_voice,
)
from workers.ml.transcribe import clean_words, clear_whisper_cache, load_whisper, transcribe_words
from workers.ml.tts import (
    OUTPUT_SAMPLE_RATE,
    EspeakSynthesizer,
    Speech,
    VitsSynthesizer,
    clear_tts_cache,
    get_synthesizer,
    preview,
    read_wav,
    synthesize_script,
)

SCRIPT = "Hi everyone! Today Dr. Lee shows you 3 quick tips. Ready? Let's go."


@pytest.fixture(scope="module", autouse=True)
def offline(offline_hub) -> Iterator[None]:
    yield
    clear_tts_cache()
    clear_whisper_cache()


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voice-models")


@pytest.fixture(scope="module")
def tiny_vits(models_root: Path) -> Path:
    from workers.ml.tiny_models import build_tiny_vits

    return build_tiny_vits(models_root / "tiny-vits")


@pytest.fixture(scope="module")
def tiny_whisper(models_root: Path) -> Path:
    from workers.ml.tiny_models import build_tiny_whisper

    return build_tiny_whisper(models_root / "tiny-whisper")


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    """The script spoken by espeak-ng at the default rate."""
    folder = tmp_path_factory.mktemp("speech")
    return synthesize_script(SCRIPT, "espeak:en-us", rate_wpm=DEFAULT_RATE_WPM, output=folder / "voice.wav")


def wav_info(data: bytes | Path) -> tuple[int, int, float]:
    with wave.open(io.BytesIO(data) if isinstance(data, bytes) else str(data), "rb") as wav:
        return wav.getnchannels(), wav.getframerate(), wav.getnframes() / wav.getframerate()


# --- voices -----------------------------------------------------------------------------------------


def test_espeak_voices_are_listed_including_american_english() -> None:
    voices = list_voices()
    espeak = [v for v in voices if v.engine == "espeak"]

    assert len(espeak) > 10
    assert "espeak:en-us" in {v.id for v in espeak}
    assert len({v.id for v in voices}) == len(voices), "no duplicate voice ids"
    us = next(v for v in espeak if v.id == "espeak:en-us")
    assert us.language == "en-us" and "English" in us.label


def test_voice_list_offers_english_female_variants_and_the_vits_voice() -> None:
    ids = {v.id for v in list_voices()}

    assert {"espeak:en-us+f3", "espeak:en-gb+f2"} <= ids
    assert "vits:facebook/mms-tts-eng" in ids
    for voice_id in ids:  # every listed voice passes validation
        assert validate_voice(voice_id).id == voice_id


def test_unknown_voice_is_refused_with_a_clear_message() -> None:
    with pytest.raises(InvalidInput, match=r"unknown voice 'espeak:xx-yy'; espeak-ng has no voice 'xx-yy'"):
        validate_voice("espeak:xx-yy")
    with pytest.raises(InvalidInput, match=r"no variant 'nosuch'"):
        validate_voice("espeak:en-us+nosuch")
    with pytest.raises(InvalidInput, match=r"unknown voice engine 'polly'"):
        validate_voice("polly:joanna")
    with pytest.raises(InvalidInput, match=r"use 'espeak:<voice>'"):
        validate_voice("en-us")
    with pytest.raises(InvalidInput, match="not a folder with a VITS model"):
        validate_voice("vits:/no/such/model")


def test_voice_ids_are_validated_into_canonical_form(tiny_vits: Path) -> None:
    assert validate_voice(" espeak:EN-GB+F3 ").id == "espeak:en-gb+f3"
    assert validate_voice("vits:").id == "vits:facebook/mms-tts-eng"
    assert validate_voice(f"vits:{tiny_vits}").engine == "vits"


def test_speaking_rate_is_bounded() -> None:
    assert validate_rate(MIN_RATE_WPM) == 80 and validate_rate(MAX_RATE_WPM) == 400
    for bad in (79, 401, float("nan"), True):
        with pytest.raises(InvalidInput, match="rate"):
            validate_rate(bad)


@pytest.mark.parametrize("script", ["", "   \n\t ", "... — !"])
def test_empty_script_is_refused(script: str) -> None:
    with pytest.raises(InvalidInput, match="script"):
        split_sentences(script)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("Hello world", ["Hello world"]),
        ("Dr. Smith paid $3.50 for 3.5 kg. Cheap!", ["Dr. Smith paid $3.50 for 3.5 kg.", "Cheap!"]),
        ("Really?! Yes... I mean it. Wait... what?", ["Really?!", "Yes...", "I mean it.", "Wait... what?"]),
        ("Line one\nLine two.\n\n  Line   three  ", ["Line one", "Line two.", "Line three"]),
        ('She said "go." Then we left.', ['She said "go."', "Then we left."]),
        ("- first tip\n- second tip", ["first tip", "second tip"]),
        ("I live in the U.S. It is big. Mr. J. Doe, e.g. here.", ["I live in the U.S.", "It is big.",
                                                                  "Mr. J. Doe, e.g. here."]),
        ("omg! this is great.", ["omg!", "this is great."]),
    ],
)
def test_scripts_split_into_sentences(script: str, expected: list[str]) -> None:
    assert split_sentences(script) == expected


# --- espeak-ng -----------------------------------------------------------------------------------


def test_espeak_speaks_each_sentence_into_one_48k_track_with_exact_timings(speech: Speech) -> None:
    channels, rate, duration = wav_info(speech.path)

    assert (channels, rate) == (1, OUTPUT_SAMPLE_RATE) and speech.sample_rate == OUTPUT_SAMPLE_RATE
    assert duration == pytest.approx(speech.duration) and duration > 1.0
    assert speech.sentences == tuple(split_sentences(SCRIPT)) and len(speech.timings) == 4
    for (start, end), (next_start, _) in zip(speech.timings, speech.timings[1:], strict=False):
        assert start < end < next_start, "sentences are in order, with a pause between them"
    assert speech.timings[0][0] == pytest.approx(0.0, abs=0.05)
    assert speech.timings[-1][1] == pytest.approx(duration, abs=0.05)
    samples, _ = read_wav(speech.path)
    for start, end in speech.timings:  # each span holds speech, each pause is silence
        assert np.abs(samples[int(start * rate) : int(end * rate)]).max() > 0.1
    gap = speech.timings[0][1], speech.timings[1][0]
    assert np.abs(samples[int(gap[0] * rate) + 10 : int(gap[1] * rate) - 10]).max() < 0.01


def test_a_faster_rate_gives_a_shorter_track(tmp_path: Path) -> None:
    voice = get_synthesizer("espeak:en-gb+f3")
    sentences = split_sentences(SCRIPT)

    slow = voice.synthesize(sentences, rate_wpm=120, output=tmp_path / "slow.wav")
    fast = voice.synthesize(sentences, rate_wpm=300, output=tmp_path / "fast.wav")

    assert isinstance(voice, EspeakSynthesizer)
    assert fast.duration < 0.7 * slow.duration


def test_pause_between_sentences_is_configurable(tmp_path: Path) -> None:
    voice = get_synthesizer("espeak:en-us")
    sentences = ["One.", "Two."]

    short = voice.synthesize(sentences, pause_s=0.1, output=tmp_path / "short.wav")
    long = voice.synthesize(sentences, pause_s=1.1, output=tmp_path / "long.wav")

    assert long.duration - short.duration == pytest.approx(1.0, abs=0.01)
    assert long.timings[1][0] - long.timings[0][1] == pytest.approx(1.1, abs=0.001)


def test_synthesis_refuses_a_bad_rate_or_no_sentences(tmp_path: Path) -> None:
    voice = get_synthesizer("espeak:en-us")
    with pytest.raises(InvalidInput, match="out of range"):
        voice.synthesize(["Hello."], rate_wpm=500, output=tmp_path / "x.wav")
    with pytest.raises(InvalidInput, match="nothing to speak"):
        voice.synthesize([], output=tmp_path / "x.wav")


def test_preview_is_a_short_wav(tmp_path: Path) -> None:
    data = preview("espeak:en-us+f3", 165)
    long = preview("espeak:en-us", 80, text="This preview text is far too long to be spoken in five seconds. " * 3)

    channels, rate, seconds = wav_info(data)
    assert data[:4] == b"RIFF" and channels == 1 and rate == OUTPUT_SAMPLE_RATE
    assert 0.5 < seconds <= 5.0
    assert wav_info(long)[2] == pytest.approx(5.0, abs=0.001), "a long preview is cut at five seconds"
    with pytest.raises(InvalidInput, match="unknown voice"):
        preview("espeak:xx-yy", 165)


def test_sentence_subtitles_follow_the_tts_timings(speech: Speech) -> None:
    cues = cues_from_sentences(speech.sentences, speech.timings, max_words_per_line=3)

    check_cues(cues, speech.duration)
    assert all(len(c.text.split()) <= 3 for c in cues)
    assert " ".join(c.text for c in cues) == " ".join(speech.sentences)
    assert cues[0].start == speech.timings[0][0] and cues[-1].end == speech.timings[-1][1]


# --- VITS ------------------------------------------------------------------------------------------


def test_vits_on_the_tiny_model_speaks_through_the_same_interface(tiny_vits: Path, tmp_path: Path) -> None:
    voice = get_synthesizer(f"vits:{tiny_vits}", device="cpu")
    sentences = ["Hello there.", "This is a tiny voice."]

    first = voice.synthesize(sentences, output=tmp_path / "a.wav")
    again = voice.synthesize(sentences, output=tmp_path / "b.wav")
    faster = voice.synthesize(sentences, rate_wpm=330, output=tmp_path / "c.wav")

    assert isinstance(voice, VitsSynthesizer) and voice.sample_rate == 16_000
    assert wav_info(first.path)[:2] == (1, OUTPUT_SAMPLE_RATE) and first.duration > 0.2
    assert first.timings[0][0] == 0.0 and first.timings[0][1] < first.timings[1][0]
    assert first.timings[-1][1] == pytest.approx(first.duration, abs=0.05)
    assert first.path.read_bytes() == again.path.read_bytes(), "seeded: the same text sounds the same"
    assert faster.duration < first.duration
    assert get_synthesizer(f"vits:{tiny_vits}", device="cpu") is voice, "loaded once per process"


def test_vits_preview_and_unpronounceable_text(tiny_vits: Path) -> None:
    assert 0 < wav_info(preview(f"vits:{tiny_vits}", 165, device="cpu"))[2] <= 5.0
    with pytest.raises(PermanentJobError, match="cannot pronounce"):
        get_synthesizer(f"vits:{tiny_vits}", device="cpu").synthesize(["¿¡ ¢ ¤ !"])


def test_a_model_folder_that_is_not_vits_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(PermanentJobError, match="could not load VITS model"):
        VitsSynthesizer(str(tmp_path), device="cpu")


# --- whisper -----------------------------------------------------------------------------------------


def test_tiny_whisper_loads_with_whisper_load_model(tiny_whisper: Path) -> None:
    import whisper

    model = whisper.load_model(str(tiny_whisper), device="cpu")

    assert tiny_whisper.name == "whisper-tiny-random.pt"
    assert (model.dims.n_audio_ctx, model.dims.n_vocab, model.dims.n_text_state) == (1500, 51865, 64)
    assert load_whisper(str(tiny_whisper), "cpu").is_toy


def test_tiny_whisper_times_words_of_a_real_espeak_track(tiny_whisper: Path, speech: Speech) -> None:
    words = transcribe_words(speech.path, str(tiny_whisper), device="cpu")

    # Random weights hear garbage, but it is timed garbage, inside the track and in order.
    assert words, "the seeded tiny model emits some words"
    assert all(w.text.strip() and 0 <= w.start <= w.end <= speech.duration for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)

    cues = cues_from_words(words, max_words_per_line=2, audio_end=speech.duration)
    check_cues(cues, speech.duration)
    assert cues and all(len(c.text.split()) <= 2 for c in cues)
    parsed = parse_srt(to_srt(cues))
    assert [c.text for c in parsed] == [c.text for c in cues]
    assert all(abs(p.start - c.start) <= 0.0005 and abs(p.end - c.end) <= 0.0005 for p, c in zip(parsed, cues,
                                                                                                   strict=True))


def test_whisper_words_are_cleaned_clamped_and_sorted() -> None:
    raw = [{"word": " late", "start": 4.0, "end": 9.0}, {"word": " ,", "start": 0.1, "end": 0.2},
           {"word": " early", "start": -0.5, "end": 0.3}, {"word": "", "start": 1, "end": 2},
           {"word": " odd", "start": 1.0, "end": 0.5}]

    words = clean_words(raw, duration=5.0)

    assert [(w.text, w.start, w.end) for w in words] == [("early", 0.0, 0.3), ("odd", 1.0, 1.0), ("late", 4.0, 5.0)]


def test_unknown_whisper_model_is_a_clear_job_error(speech: Speech) -> None:
    with pytest.raises(PermanentJobError, match="could not load whisper model 'nope'"):
        transcribe_words(speech.path, "nope", device="cpu")


def test_ensure_tiny_models_includes_the_speech_models(tiny_models: dict[str, Path]) -> None:
    import whisper
    from transformers import AutoTokenizer, VitsModel

    assert tiny_models["whisper"].is_file() and tiny_models["whisper"].suffix == ".pt"
    assert whisper.load_model(str(tiny_models["whisper"]), device="cpu").dims.n_text_layer == 1
    assert VitsModel.from_pretrained(tiny_models["vits"]).config.sampling_rate == 16_000
    assert len(AutoTokenizer.from_pretrained(tiny_models["vits"])) == 41
