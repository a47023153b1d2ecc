"""dlib's face identity model: HOG face detector, 5-point landmarks for alignment, ResNet descriptor (128-D).

Distances below 0.6 mean the same person (dlib's threshold, 99.38 % on LFW). The model files ship in
the face-recognition-models package, so nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from workers.ml.identity.base import FaceBox

ALIGNED_SIZE = 150  # the descriptor's input (dlib's get_face_chip default)
ALIGN_PADDING = 0.25
# The HOG detector's confidence below which a detection is ignored: on the astronaut photo its badge and
# rotated copies give false "faces" scoring 0.09-0.46, the real faces 0.96-1.44.
MIN_DETECTION_SCORE = 0.5


def model_file(name: str) -> str:
    """A file of the face-recognition-models package, found without importing it: its ``__init__`` needs
    ``pkg_resources``, which current setuptools no longer ships."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face-recognition-models package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.exists():
        raise RuntimeError(f"face-recognition-models lacks {name}")
    return str(path)


class DlibResnet:
    name = "dlib-resnet-v1"

    def __init__(self, *, upsample: int = 1) -> None:
        import dlib  # heavy and native: only a process that scores faces loads it

        self.dlib = dlib
        self.upsample = upsample  # one upsampling finds faces down to ~40 px
        self.detector = self.dlib.get_frontal_face_detector()
        self.landmarks = self.dlib.shape_predictor(model_file("shape_predictor_5_face_landmarks.dat"))
        self.encoder = self.dlib.face_recognition_model_v1(model_file("dlib_face_recognition_resnet_model_v1.dat"))

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        boxes, scores, _ = self.detector.run(image, self.upsample, 0.0)
        return [FaceBox(r.left(), r.top(), r.right(), r.bottom())
                for r, score in zip(boxes, scores, strict=True) if score >= MIN_DETECTION_SCORE]

    def _shape(self, image: np.ndarray, box: FaceBox) -> Any:
        return self.landmarks(image, self.dlib.rectangle(box.left, box.top, box.right, box.bottom))

    def align(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        """The face chip: rotated, scaled and cropped so the eyes and nose sit where the descriptor expects."""
        return np.asarray(self.dlib.get_face_chip(image, self._shape(image, box), size=ALIGNED_SIZE,
                                             padding=ALIGN_PADDING))

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        return np.asarray(self.encoder.compute_face_descriptor(np.ascontiguousarray(aligned)), dtype=np.float64)
