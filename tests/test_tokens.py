"""CLIP token counts for captions: the bundled real CLIP vocabulary, or a tokenizer named by a setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.datasets.tokens import (
    TOKEN_LIMIT,
    _bytes_to_unicode,
    clip_vocab_and_merges,
    count_tokens,
    count_tokens_many,
    load_tokenizer,
)
from core.errors import InvalidInput

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
    load_tokenizer.cache_clear()


def write_tokenizer_folder(folder: Path, merges: list[tuple[str, str]]) -> Path:
    """A minimal CLIP tokenizer folder: byte-level characters, the same with '</w>', merges, specials."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return folder


def test_the_bundled_vocabulary_is_clips() -> None:
    tokenizer = load_tokenizer()

    assert len(tokenizer) == 49408
    assert tokenizer.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"]) == [49406, 49407]
    assert len(clip_vocab_and_merges()[1]) == 49152 - 256 - 2


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("a photo of a cat", [320, 1125, 539, 320, 2368]),
        ("A  Photo of a CAT", [320, 1125, 539, 320, 2368]),
        ("hello world", [3306, 1002]),
    ],
)
def test_known_strings_get_clips_ids(text: str, ids: list[int]) -> None:
    assert load_tokenizer()(text, add_special_tokens=False)["input_ids"] == ids
    assert load_tokenizer()(text)["input_ids"] == [49406, *ids, 49407]
    assert count_tokens(text) == len(ids)


def test_counts_leave_out_the_start_and_end_markers() -> None:
    assert count_tokens("") == 0
    assert count_tokens("cat") == 1
    assert TOKEN_LIMIT == 75


def test_a_long_caption_counts_past_the_limit() -> None:
    phrase = "a portrait of a smiling woman in a red dress standing on a beach at sunset"  # 16 tokens
    caption = ", ".join([phrase] * 5)

    assert count_tokens(phrase) == 16
    assert count_tokens(caption) == 5 * 16 + 4 > TOKEN_LIMIT


def test_markup_and_unusual_text_count_without_crashing() -> None:
    texts = ["<script>alert('x')</script> &amp; <b>bold</b>", "emoji 😀🔥 and 日本語", "\x00\ttabs\nnewlines"]

    counts = count_tokens_many(texts)

    assert all(count > 0 for count in counts)
    assert counts == [count_tokens(text) for text in texts]


def test_count_tokens_many_counts_each_text() -> None:
    assert count_tokens_many(["a photo of a cat", "hello world", ""]) == [5, 2, 0]
    assert count_tokens_many([]) == []


def test_a_tokenizer_folder_from_the_settings_is_used(tmp_path: Path) -> None:
    folder = write_tokenizer_folder(tmp_path / "tok", merges=[("a", "t</w>")])

    # Only one merge: "cat" is "c" + "at</w>" here, one token with the real vocabulary.
    assert count_tokens("cat", tokenizer=str(folder)) == 2
    assert count_tokens("dog", tokenizer=str(folder)) == 3
    assert count_tokens("cat") == 1


def test_a_stable_diffusion_model_folder_uses_its_tokenizer_subfolder(tmp_path: Path) -> None:
    write_tokenizer_folder(tmp_path / "sd-model" / "tokenizer", merges=[])

    assert count_tokens("cat", tokenizer=str(tmp_path / "sd-model")) == 3


def test_a_tokenizer_that_cannot_be_loaded_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such folder"):
        count_tokens("cat", tokenizer=str(tmp_path / "missing"))
    # transformers v5 returns an empty tokenizer for a folder without vocabulary files; we refuse it.
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match=r"no vocab\.json"):
        count_tokens("cat", tokenizer=str(tmp_path / "empty"))


def test_counting_tokens_does_not_import_torch() -> None:
    code = ("import sys, core.datasets.tokens; n = core.datasets.tokens.count_tokens('hi'); "
            "print(n, 'torch' in sys.modules)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=True)

    assert result.stdout.split() == ["1", "False"]


def test_two_threads_counting_first_in_a_fresh_process_both_get_counts():
    # Streamlit's fast reruns run a page twice at once; transformers' first import raced and one thread
    # got "cannot import name 'CLIPTokenizer'" (seen in the browser tests' Captions page).
    code = (
        "import threading\n"
        "from core.datasets.tokens import count_tokens\n"
        "counts = []\n"
        "threads = [threading.Thread(target=lambda: counts.append(count_tokens('ohwx woman'))) for _ in range(2)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "print(counts)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.split("\n")[0] == str([count_tokens("ohwx woman")] * 2), result.stderr
