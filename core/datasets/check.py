"""The pre-flight check of a dataset before training: what would make a LoRA worse.

It reads only what the import already measured (size, perceptual hash, blur score, caption),
so a check of hundreds of images is a database query, not a pass over the files.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

from core.characters.likeness import threshold_of
from core.config import get_settings
from core.datasets.datasets import all_images, get_dataset
from core.models import DatasetImage

NEAR_DUPLICATE_BITS = 6  # of 64: perceptual hashes this close are the same picture, re-cropped or re-encoded
BLUR_THRESHOLD = 100.0  # variance of the Laplacian below this reads as blurry
EXTREME_ASPECT = 2.0  # wider or taller than 2:1 crops badly at square training sizes
MIN_TRAINING_IMAGES = 10


@dataclass
class ImageFindings:
    image_id: int
    filename: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    dataset_id: int
    resolution: int
    image_count: int
    findings: list[ImageFindings]
    summary: dict[str, int]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not any(f.warnings for f in self.findings) and not self.notes


def _near_duplicate_pairs(images: list[DatasetImage]) -> list[tuple[DatasetImage, DatasetImage, int]]:
    """All pairs within NEAR_DUPLICATE_BITS, compared at once with numpy (a thousand images is a million pairs)."""
    if len(images) < 2:
        return []
    # Callers pass hashed images only; a missing hash would fail here (as int() of None did).
    hashes = np.array([int(image.phash or "", 16) for image in images], dtype=np.uint64)
    distances = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    first, second = np.nonzero(np.triu(distances <= NEAR_DUPLICATE_BITS, k=1))
    return [(images[i], images[j], int(distances[i, j])) for i, j in zip(first, second, strict=True)]


def _face_warnings(image: DatasetImage, *, model: str, threshold: float) -> tuple[str, str] | None:
    """(summary key, warning) from what the fingerprint job found, for the current face model only."""
    if image.face_model != model or image.face_count is None:
        return None
    if image.face_count == 0:
        return "no_face", "no face found"
    if image.face_count > 1:
        return "several_faces", f"{image.face_count} faces (a character image should show one)"
    if image.face_distance is not None and image.face_distance > threshold:
        return "other_person", (f"looks like another person: face distance {image.face_distance:.2f} to the "
                                f"others (> {threshold:.2f})")
    return None


def check_dataset(dataset_id: int, *, resolution: int = 512) -> CheckReport:
    dataset = get_dataset(dataset_id)
    images = all_images(dataset_id)
    findings = {image.id: ImageFindings(image.id or 0, image.filename) for image in images}  # stored rows: ids set
    summary = {"near_duplicates": 0, "too_small": 0, "blurry": 0, "odd_aspect": 0, "missing_caption": 0,
               "no_face": 0, "several_faces": 0, "other_person": 0}
    model, threshold = get_settings().face_model, threshold_of(dataset.character_id)

    for a, b, distance in _near_duplicate_pairs([i for i in images if i.phash]):
        findings[a.id].warnings.append(f"near-duplicate of {b.filename} (hash distance {distance})")
        findings[b.id].warnings.append(f"near-duplicate of {a.filename} (hash distance {distance})")
        summary["near_duplicates"] += 1

    for image in images:
        warnings = findings[image.id].warnings
        if min(image.width, image.height) < resolution:
            warnings.append(f"smaller than the training resolution ({image.width}×{image.height} < {resolution})")
            summary["too_small"] += 1
        if image.blur is not None and image.blur < BLUR_THRESHOLD:
            warnings.append(f"looks blurry (sharpness {image.blur:.0f} < {BLUR_THRESHOLD:.0f})")
            summary["blurry"] += 1
        aspect = image.width / image.height
        if aspect > EXTREME_ASPECT or aspect < 1 / EXTREME_ASPECT:
            warnings.append(f"extreme aspect ratio {aspect:.2f}:1")
            summary["odd_aspect"] += 1
        if not image.caption.strip():
            warnings.append("no caption")
            summary["missing_caption"] += 1
        if face := _face_warnings(image, model=model, threshold=threshold):
            summary[face[0]] += 1
            warnings.append(face[1])

    notes = []
    if len(images) < MIN_TRAINING_IMAGES:
        notes.append(f"only {len(images)} image(s); a character LoRA wants at least {MIN_TRAINING_IMAGES}")
    if len(images) >= 2:
        aspects = [i.width / i.height for i in images]
        spread = statistics.pstdev(aspects)
        if spread > 0.35:
            notes.append(f"aspect ratios vary widely (standard deviation {spread:.2f}); consider cropping")
    return CheckReport(dataset_id, resolution, len(images), list(findings.values()), summary, notes)
