"""The identity interface's types: a face box, a found face, the model protocol."""


from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class FaceBox:
    left: int
    top: int
    right: int
    bottom: int


@dataclass(frozen=True)
class Face:
    box: FaceBox
    embedding: np.ndarray  # 1-D float vector; distances are Euclidean in this model's space


class FaceModel(Protocol):
    """What every identity model provides; ``faces`` = detect → align → embed for each face found."""

    name: str

    def detect(self, image: np.ndarray) -> list[FaceBox]: ...

    def align(self, image: np.ndarray, box: FaceBox) -> np.ndarray: ...

    def embed(self, aligned: np.ndarray) -> np.ndarray: ...


def as_array(image: Image.Image) -> np.ndarray:
    """RGB uint8, contiguous: what detectors expect."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def faces(model: FaceModel, image: Image.Image) -> list[Face]:
    array = as_array(image)
    return [Face(box, model.embed(model.align(array, box))) for box in model.detect(array)]
