"""Aspect-ratio buckets, crops and a deterministic batch order. Pure Python + numpy + PIL (no torch).

Every decision here is a function of the images and the seed only, so a run resumed at step s sees
exactly the batches (and caption dropouts) the uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from workers.ml.training.api import TrainerError, TrainingExample

STEP = 64  # bucket sides are multiples of 64 px: 8 latent pixels, divisible by every UNet downsampling
MAX_RATIO = 2.0  # buckets range from 1:2 to 2:1
MIN_AREA = 0.75  # a bucket keeps at least this share of resolution² (so "area ≈ resolution²")
_EXIF_ORIENTATION = 0x0112
_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height

Size = tuple[int, int]  # (width, height)


@dataclass(frozen=True)
class PreparedImage:
    """Where one example goes: its bucket and the crop that fills it."""

    index: int
    path: Path
    caption: str
    bucket: Size
    """(width, height) of the training crop."""
    original_size: Size
    """(width, height) of the image as stored (after EXIF rotation)."""
    resized: Size
    """(width, height) after the resize that covers the bucket."""
    crop_top_left: tuple[int, int]
    """(top, left) of the crop in the resized image: SDXL conditions on it."""


def make_buckets(resolution: int, *, step: int = STEP, max_ratio: float = MAX_RATIO) -> list[Size]:
    """Buckets of area ≈ resolution² (never more), sides multiples of ``step``, ratios within 1:max_ratio."""
    area = resolution * resolution
    buckets: set[Size] = set()
    width = step
    while width * step <= area:
        # The tallest height that keeps the area and the ratio in bounds.
        height = min(area // width // step * step, int(width * max_ratio) // step * step)
        if height >= step and width / height <= max_ratio and width * height >= MIN_AREA * area:
            buckets.update({(width, height), (height, width)})
        width += step
    if not buckets:
        side = max(step, resolution // step * step)
        buckets.add((side, side))
    return sorted(buckets)


def _log_ratio(size: Size) -> float:
    return math.log(size[0] / size[1])


def assign_bucket(size: Size, buckets: Sequence[Size], *, step: int = STEP) -> Size:
    """The bucket of the closest aspect ratio, shrunk (same ratio) until it fits inside the image.

    Never upscales, except for images under ``step`` pixels on a side (the minimum bucket side).
    """
    ratio = _log_ratio(size)
    # Ties go to the larger bucket, then the wider one, so assignment is stable.
    bucket = min(buckets, key=lambda b: (abs(_log_ratio(b) - ratio), -b[0] * b[1], -b[0]))
    width, height = size
    if width >= bucket[0] and height >= bucket[1]:
        return bucket
    scale = min(width / bucket[0], height / bucket[1])
    return (max(step, int(bucket[0] * scale) // step * step), max(step, int(bucket[1] * scale) // step * step))


def cover_crop(size: Size, bucket: Size) -> tuple[Size, tuple[int, int]]:
    """Resize that covers the bucket (keeping the ratio), and the top-left of the centred crop."""
    width, height = size
    scale = max(bucket[0] / width, bucket[1] / height)
    resized = (max(bucket[0], round(width * scale)), max(bucket[1], round(height * scale)))
    return resized, ((resized[1] - bucket[1]) // 2, (resized[0] - bucket[0]) // 2)


def image_size(path: Path) -> Size:
    """(width, height) as displayed, read from the header only (EXIF rotation applied)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(_EXIF_ORIENTATION) in _ROTATED:
                width, height = height, width
    except (OSError, UnidentifiedImageError) as error:
        raise TrainerError(f"cannot read training image {path.name}: {error}") from None
    return width, height


def prepare_images(examples: Sequence[TrainingExample], resolution: int) -> list[PreparedImage]:
    buckets = make_buckets(resolution)
    prepared = []
    for index, example in enumerate(examples):
        size = image_size(example.path)
        bucket = assign_bucket(size, buckets)
        resized, crop = cover_crop(size, bucket)
        prepared.append(PreparedImage(index=index, path=example.path, caption=example.caption, bucket=bucket,
                                      original_size=size, resized=resized, crop_top_left=crop))
    return prepared


def load_crop(image: PreparedImage) -> np.ndarray:
    """The image's training crop as float32 HWC in [-1, 1]."""

    with Image.open(image.path) as opened:
        picture = ImageOps.exif_transpose(opened).convert("RGB")
    picture = picture.resize(image.resized, Image.Resampling.LANCZOS)
    top, left = image.crop_top_left
    picture = picture.crop((left, top, left + image.bucket[0], top + image.bucket[1]))
    return np.asarray(picture, dtype=np.float32) / 127.5 - 1.0


class BatchPlan:
    """Which images train at each step: a pure function of (seed, step).

    Each epoch shuffles the images within each bucket, cuts them into batches (the last batch of a
    bucket may be smaller: every image trains every epoch), then shuffles the batches. Batches never
    mix buckets, so every batch stacks into one tensor.
    """

    def __init__(self, buckets: Sequence[Size], batch_size: int, seed: int) -> None:
        self.batch_size = batch_size
        self.seed = seed
        groups: dict[Size, list[int]] = defaultdict(list)
        for index, bucket in enumerate(buckets):
            groups[bucket].append(index)
        self.groups = [groups[bucket] for bucket in sorted(groups)]
        self.batches_per_epoch = sum(math.ceil(len(group) / batch_size) for group in self.groups)
        self._epoch = lru_cache(maxsize=2)(self._make_epoch)

    def _make_epoch(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        batches = []
        for group in self.groups:
            order = [group[i] for i in rng.permutation(len(group))]
            batches += [order[start:start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The batches (image indices) of a 0-based epoch, in training order."""
        return [list(batch) for batch in self._epoch(epoch)]

    def epoch_of(self, step: int) -> int:
        """0-based epoch of a 1-based step."""
        return (step - 1) // self.batches_per_epoch

    def batch(self, step: int) -> list[int]:
        """The image indices of a 1-based step."""
        return list(self._epoch(self.epoch_of(step))[(step - 1) % self.batches_per_epoch])


def drops_caption(seed: int, step: int, position: int, probability: float) -> bool:
    """Whether the image at ``position`` of ``step``'s batch trains on the empty caption."""
    if probability <= 0:
        return False
    # A stream of its own (tag 1) so it never correlates with the data order's stream.
    return bool(np.random.default_rng([seed, 1, step, position]).random() < probability)
