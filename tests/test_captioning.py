"""Captioning with a tiny BLIP built locally: the same loading and batching code as a real model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import InvalidInput, PermanentJobError
from workers.ml.captioning import (
    Captioner,
    CaptionOptions,
    caption_in_batches,
    clear_captioner_cache,
    load_captioner,
)
from workers.ml.tiny_models import _WORDS, MARKER, ensure_tiny_models

FAST = CaptionOptions(max_length=12)


@pytest.fixture(scope="module", autouse=True)
def offline(offline_hub) -> Iterator[None]:
    yield
    clear_captioner_cache()


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory, offline: None) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def tiny_blip(models_root: Path) -> Path:
    return ensure_tiny_models(models_root)["blip"]


@pytest.fixture(scope="module")
def captioner(tiny_blip: Path) -> Captioner:
    return load_captioner(str(tiny_blip), device="cpu")


def make_images(count: int) -> list[Image.Image]:
    """Smooth colour gradients of assorted sizes and modes, as a dataset would have."""
    images = []
    for index in range(count):
        rng = np.random.default_rng(index)
        height, width = 48 + 8 * index, 80 - 4 * index
        ramp = np.linspace(0, 1, width)[None, :, None] * rng.uniform(0, 255, (1, 1, 3))
        pixels = np.broadcast_to(ramp + rng.uniform(0, 60, (1, 1, 3)), (height, width, 3)).clip(0, 255)
        image = Image.fromarray(pixels.astype(np.uint8))
        images.append(image.convert(["RGB", "L", "RGBA", "P", "RGB"][index % 5]))
    return images


def test_tiny_blip_loads_with_the_same_classes_as_a_hub_model(tiny_blip: Path) -> None:
    from transformers import AutoProcessor, BlipForConditionalGeneration, BlipProcessor

    model = BlipForConditionalGeneration.from_pretrained(tiny_blip)
    processor = BlipProcessor.from_pretrained(tiny_blip)
    assert model.config.text_config.bos_token_id == processor.tokenizer.convert_tokens_to_ids("[DEC]")
    assert model.config.text_config.sep_token_id == processor.tokenizer.sep_token_id
    assert type(AutoProcessor.from_pretrained(tiny_blip)) is BlipProcessor
    assert sum(p.numel() for p in model.parameters()) < 500_000


def test_a_batch_of_images_gets_one_word_like_caption_each(captioner: Captioner) -> None:
    captions = captioner.caption(make_images(5), FAST)

    assert len(captions) == 5
    assert all(isinstance(c, str) and c == c.strip() and c for c in captions)
    words = {word for caption in captions for word in caption.replace(",", " ").replace(".", " ").split()}
    assert words <= set(_WORDS) | {"'"}
    assert len(set(captions)) > 1, "distinct images should get distinct captions"


def test_batched_captions_equal_one_by_one_captions(captioner: Captioner) -> None:
    images = make_images(5)

    one_by_one = [captioner.caption([image], FAST)[0] for image in images]

    assert captioner.caption(images, FAST) == one_by_one


def test_caption_in_batches_reports_progress_after_each_batch(captioner: Captioner) -> None:
    images = make_images(5)
    progress: list[tuple[int, int]] = []

    captions = caption_in_batches(captioner, images, FAST, batch_size=2, on_batch=lambda d, t: progress.append((d, t)))

    assert progress == [(2, 5), (4, 5), (5, 5)]
    assert captions == captioner.caption(images, FAST)


def test_caption_in_batches_rejects_a_batch_size_below_one(captioner: Captioner) -> None:
    with pytest.raises(InvalidInput, match="batch_size"):
        caption_in_batches(captioner, make_images(1), FAST, batch_size=0)


def test_no_images_need_no_model_call(captioner: Captioner) -> None:
    assert captioner.caption([], FAST) == []
    assert caption_in_batches(captioner, [], FAST, batch_size=4) == []


def test_a_prompt_prefix_conditions_the_caption_and_is_removed(captioner: Captioner) -> None:
    import torch

    images = make_images(3)
    options = CaptionOptions(prompt="  A photo   of", max_length=12)

    captions = captioner.caption(images, options)

    # What the model itself produced: the prompt (as the tokenizer spells it) and then the caption.
    inputs = captioner.processor(images=images[:1], text=["a photo of"], return_tensors="pt")
    with torch.inference_mode():
        raw = captioner.model.generate(**inputs, max_new_tokens=12, do_sample=False)
    decoded = captioner.processor.batch_decode(raw, skip_special_tokens=True)[0]
    assert decoded.startswith("a photo of ")
    assert captions[0] == decoded.removeprefix("a photo of").strip()
    assert captions != captioner.caption(images, FAST)


def test_load_captioner_loads_a_model_once_per_process(tiny_blip: Path, captioner: Captioner) -> None:
    assert load_captioner(str(tiny_blip), device="cpu") is captioner


def test_a_missing_model_folder_is_a_permanent_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"

    with pytest.raises(PermanentJobError, match=r"could not load caption model .*no-such-model.*no such folder"):
        load_captioner(str(missing))


def test_a_model_folder_without_tokenizer_files_is_a_permanent_error(tiny_blip: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors", "processor_config.json"):
        (broken / name).write_bytes((tiny_blip / name).read_bytes())

    with pytest.raises(PermanentJobError, match="tokenizer files are missing"):
        Captioner(str(broken), device="cpu")


def test_ensure_tiny_models_does_not_rebuild_a_complete_build(models_root: Path, tiny_blip: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in tiny_blip.iterdir()}

    assert ensure_tiny_models(models_root)["blip"] == tiny_blip

    assert {p.name: p.stat().st_mtime_ns for p in tiny_blip.iterdir()} == before
    assert MARKER in before
    assert not [p for p in models_root.iterdir() if p.name.startswith(".")], "no leftover build folders"


def test_tests_run_offline() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
