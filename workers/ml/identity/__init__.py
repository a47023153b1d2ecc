"""Face identity behind one interface: detect faces, align each, embed it as a vector.

A model is named (``Settings.face_model``) and every embedding is stored with that name, so vectors of
two models are never compared. ``dlib-resnet-v1`` (dlib's ResNet descriptor, 128-D, offline from the
face-recognition-models package) is the default; another model (e.g. ArcFace where its weights exist)
registers a factory under its own name. Tests register a stub under the same interface.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
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


_FACTORIES: dict[str, Callable[[], FaceModel]] = {}
_LOADED: dict[str, FaceModel] = {}
_LOCK = threading.Lock()


def register_face_model(name: str, factory: Callable[[], FaceModel]) -> None:
    with _LOCK:
        _FACTORIES[name] = factory
        _LOADED.pop(name, None)


def face_model_names() -> list[str]:
    return sorted(_FACTORIES)


def load_face_model(name: str) -> FaceModel:
    """The named model, loaded once per process (threads share it; dlib's calls are thread-safe to read)."""
    with _LOCK:
        if name not in _LOADED:
            if name not in _FACTORIES:
                raise KeyError(f"unknown face model {name!r}; known: {', '.join(sorted(_FACTORIES))}")
            _LOADED[name] = _FACTORIES[name]()
        return _LOADED[name]


def _dlib() -> FaceModel:
    from workers.ml.identity.dlib_resnet import DlibResnet

    return DlibResnet()


register_face_model("dlib-resnet-v1", _dlib)
