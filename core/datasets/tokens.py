"""CLIP token counts for captions, as the text encoder of a Stable Diffusion model sees them.

Training truncates a caption to the text encoder's 77 positions, two of which are the start and end
markers, so a caption longer than ``TOKEN_LIMIT`` (75) tokens loses its tail. The caption editor
shows the count next to each caption.

The default tokenizer is the real CLIP vocabulary bundled in ``core/data`` (no download needed);
a setting may name another one: a hub id, or a folder holding vocab.json + merges.txt (a Stable
Diffusion model folder with a ``tokenizer/`` subfolder works too). This module runs in the UI
process: it imports the ``tokenizers``-backed ``CLIPTokenizer`` only, never torch.

Counts are those of transformers' ``CLIPTokenizer``, which training uses: the same vocabulary and
merges as OpenAI's ``SimpleTokenizer``, but without its ftfy/HTML-unescape clean-up, so e.g. "&amp;"
or curly quotes can count a token or two more than in OpenAI's own code.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import InvalidInput

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

TOKEN_LIMIT = 75
BUNDLED_BPE = Path(__file__).parent / "data" / "clip_bpe_simple_vocab_16e6.txt.gz"
# CLIP keeps the first 49152 - 256 - 2 merges of the BPE file (line 0 is a version header).
_MERGE_COUNT = 49152 - 256 - 2


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map from the 256 byte values to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))


def clip_vocab_and_merges(bpe_file: Path = BUNDLED_BPE) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary and merges exactly as CLIP's ``SimpleTokenizer`` builds them from its BPE file."""
    lines = gzip.decompress(bpe_file.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : _MERGE_COUNT + 1]]
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [char + "</w>" for char in byte_chars]
    tokens += ["".join(merge) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges  # type: ignore[return-value]


def _resolve_folder(folder: Path) -> Path:
    # A whole Stable Diffusion model folder keeps its tokenizer in a subfolder.
    if not (folder / "vocab.json").exists() and (folder / "tokenizer" / "vocab.json").exists():
        return folder / "tokenizer"
    return folder


def _is_real(tokenizer: CLIPTokenizer) -> bool:
    # transformers v5 returns an empty tokenizer (just the special tokens) instead of raising when it
    # finds no vocabulary files, e.g. for a hub id while offline; a byte-level BPE has >= 256 tokens.
    return len(tokenizer.get_vocab()) > 256


# Streamlit's fast reruns run a page in a second thread while the first is still finishing, and
# transformers' lazy imports are not safe to start in two threads at once (one of them gets "cannot
# import name 'CLIPTokenizer'"): the first load happens under this lock.
_LOADING = threading.Lock()


@lru_cache(maxsize=8)
def load_tokenizer(source: str | None = None) -> CLIPTokenizer:
    """The CLIP tokenizer for ``source`` (None: the bundled vocabulary), loaded once per process."""
    with _LOADING:
        return _load_tokenizer(source)


def _load_tokenizer(source: str | None) -> CLIPTokenizer:
    from transformers import CLIPTokenizer

    if source is None:
        vocab, merges = clip_vocab_and_merges()
        # transformers annotates merges as list[str]; the tokenizers BPE it builds takes (left, right) pairs
        return CLIPTokenizer(vocab=vocab, merges=merges)  # type: ignore[arg-type]
    folder = Path(source).expanduser()
    try:
        if folder.is_dir():
            tokenizer = CLIPTokenizer.from_pretrained(str(_resolve_folder(folder)))
        elif source.startswith(("/", ".", "~")):
            raise OSError("no such folder")
        else:
            tokenizer = CLIPTokenizer.from_pretrained(source)
            if not _is_real(tokenizer):
                # A Stable Diffusion repository on the hub keeps its tokenizer in a subfolder.
                tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"could not load CLIP tokenizer {source!r}: {exc}") from exc
    if not _is_real(tokenizer):
        raise InvalidInput(
            f"could not load CLIP tokenizer {source!r}: no vocab.json + merges.txt found (or not downloadable)"
        )
    return tokenizer


def count_tokens_many(texts: Iterable[str], *, tokenizer: str | None = None) -> list[int]:
    """Token counts of ``texts`` without the start/end markers, so ``TOKEN_LIMIT`` applies directly."""
    texts = list(texts)
    if not texts:
        return []
    encoded = load_tokenizer(tokenizer)(texts, add_special_tokens=False, verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]


def count_tokens(text: str, *, tokenizer: str | None = None) -> int:
    """Token count of one caption without the start/end markers (compare with ``TOKEN_LIMIT``)."""
    return count_tokens_many([text], tokenizer=tokenizer)[0]
