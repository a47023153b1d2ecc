"""Face identity behind one interface: detect faces, align each, embed it as a vector.

A model is named (``Settings.face_model``) and every embedding is stored with that name, so vectors of
two models are never compared. ``dlib-resnet-v1`` (dlib's ResNet descriptor, 128-D, offline from the
face-recognition-models package) is the default; another model (e.g. ArcFace where its weights exist)
registers a factory under its own name. Tests register a stub under the same interface.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from workers.ml.identity.base import Face, FaceBox, FaceModel, as_array, faces
from workers.ml.identity.dlib_resnet import DlibResnet

__all__ = ["Face", "FaceBox", "FaceModel", "as_array", "face_model_names", "faces", "load_face_model",
           "register_face_model"]

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


register_face_model(DlibResnet.name, DlibResnet)
