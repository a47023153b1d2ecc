"""core.datasets.demo_data: a 15-image training set of one drawn character, offline and deterministic."""

from __future__ import annotations

import io
from itertools import combinations

import numpy as np
import pytest
from PIL import Image

from core.datasets.demo_data import HAIR, JACKET, generate_demo_images
from core.datasets.images import PreparedImage, hamming_distance, prepare_image

# The dataset check flags images under 100 as blurry; the demo set must pass it with room to spare.
SHARPNESS_FLOOR = 150.0


@pytest.fixture(scope="module")
def demo() -> list[tuple[str, bytes]]:
    return generate_demo_images()


@pytest.fixture(scope="module")
def prepared(demo: list[tuple[str, bytes]]) -> list[PreparedImage]:
    return [prepare_image(data, filename=name) for name, data in demo]


def test_fifteen_named_pngs_of_512_pixels(demo: list[tuple[str, bytes]]) -> None:
    assert [name for name, _ in demo] == [f"demo_{i:02d}.png" for i in range(1, 16)]
    for _, data in demo:
        image = Image.open(io.BytesIO(data))
        assert (image.format, image.size, image.mode) == ("PNG", (512, 512), "RGB")


def test_deterministic_for_a_seed(demo: list[tuple[str, bytes]]) -> None:
    assert generate_demo_images() == demo
    assert generate_demo_images(2, seed=1) == generate_demo_images(2, seed=1)
    assert generate_demo_images(2, seed=1) != demo[:2]


def test_count_and_size_are_honoured() -> None:
    images = generate_demo_images(3, seed=5, size=128)
    assert [name for name, _ in images] == ["demo_01.png", "demo_02.png", "demo_03.png"]
    assert {Image.open(io.BytesIO(data)).size for _, data in images} == {(128, 128)}
    assert generate_demo_images(0) == []


def test_every_image_passes_the_import(prepared: list[PreparedImage]) -> None:
    assert all((p.format, p.width, p.height) == ("PNG", 512, 512) for p in prepared)
    assert len({p.sha256 for p in prepared}) == 15


def test_no_two_images_are_near_duplicates(prepared: list[PreparedImage]) -> None:
    distances = {(a.phash, b.phash): hamming_distance(a.phash, b.phash) for a, b in combinations(prepared, 2)}
    assert min(distances.values()) > 4


def test_images_are_sharp(prepared: list[PreparedImage]) -> None:
    assert min(p.blur for p in prepared) > SHARPNESS_FLOOR


def test_the_same_character_appears_in_every_image(demo: list[tuple[str, bytes]]) -> None:
    # Her violet hair and teal jacket are in every picture (a few hundred pixels of each at least).
    for name, data in demo:
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)
        for color in (HAIR, JACKET):
            matches = (np.abs(pixels - np.array(color)).max(axis=-1) <= 6).sum()
            assert matches > 300, f"{name}: too few pixels of {color}"
