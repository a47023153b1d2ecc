"""Face identity jobs and scorers: the ``fingerprint`` job, and likeness for samples and generated images.

The face model (``Settings.face_model``, from ``workers/ml/identity``) is loaded only when there is
something to score: a studio whose character has no fingerprint never loads it.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from core.characters.likeness import (
    FingerprintPayload,
    Likeness,
    ScoringTarget,
    distance,
    finish_fingerprint,
    record_asset_likeness,
    record_image_faces,
    score_faces,
    scoring_target,
)
from core.config import get_settings
from core.datasets.datasets import all_images, read_image
from core.jobs.lifecycle import JobContext
from workers.ml.identity import FaceModel, faces, load_face_model


def embeddings_of(model: FaceModel, picture: Image.Image | bytes) -> list[np.ndarray]:
    if isinstance(picture, bytes):
        with Image.open(io.BytesIO(picture)) as opened:
            picture = opened.convert("RGB")
    return [face.embedding for face in faces(model, picture)]


def analyse_dataset(dataset_id: int, model: FaceModel, ctx: JobContext[Any] | None = None) -> int:
    """Faces of every image not yet analysed with this model; returns how many were analysed now."""
    images = all_images(dataset_id)
    done = 0
    for number, image in enumerate(images, start=1):
        if image.face_model != model.name or image.face_count is None:
            record_image_faces(image.id or 0, model=model.name, embeddings=embeddings_of(model, read_image(image)))
            done += 1
        if ctx is not None:
            ctx.progress(number / len(images), f"{number}/{len(images)} images analysed for faces")
    return done


def fingerprint(ctx: JobContext[FingerprintPayload]) -> dict[str, Any]:
    payload = ctx.payload
    name = get_settings().face_model
    ctx.stage("load face model")
    model = load_face_model(name)
    ctx.stage("find faces")
    analysed = analyse_dataset(payload.dataset_id, model, ctx)
    ctx.stage("fingerprint")
    summary = finish_fingerprint(payload.character_id, payload.dataset_id, model=name)
    outliers = ", ".join(f"{o['filename']} ({o['distance']:.2f})" for o in summary["outliers"]) or "none"
    ctx.log(f"{name}: {summary['one_face']} of {summary['images']} image(s) with one face, "
            f"{summary['no_face']} without, {summary['several_faces']} with several; outliers: {outliers}")
    return {**summary, "model": name, "analysed": analysed}


class Scorer:
    """Scores pictures against one character's fingerprint, with the nearest training face when given."""

    def __init__(self, target: ScoringTarget, model: FaceModel,
                 training: list[tuple[int, str, list[float]]] | None = None) -> None:
        self.target = target
        self.model = model
        self.training = training or []  # (image id, filename, embedding)

    @classmethod
    def for_character(cls, character_id: int | None, *, training_dataset_id: int | None = None) -> Scorer | None:
        """None when the character has no fingerprint of the configured model (nothing to score against)."""
        name = get_settings().face_model
        target = scoring_target(character_id, model=name)
        if target.fingerprint is None:
            return None
        model = load_face_model(name)
        training = []
        if training_dataset_id is not None:
            analyse_dataset(training_dataset_id, model)
            training = [(i.id or 0, i.filename, i.face_embedding) for i in all_images(training_dataset_id)
                        if i.face_model == name and i.face_embedding]
        return cls(target, model, training)

    def score(self, picture: Image.Image | bytes) -> Likeness:
        likeness = score_faces(embeddings_of(self.model, picture), model=self.model.name,
                               fingerprint=self.target.fingerprint, threshold=self.target.threshold)
        if likeness.embedding is None or not self.training:
            return likeness
        image_id, filename, vector = min(self.training, key=lambda t: distance(t[2], likeness.embedding or []))
        return replace(likeness, nearest_training={"image_id": image_id, "filename": filename,
                                                   "distance": round(distance(vector, likeness.embedding), 4)})

    def score_asset(self, asset_id: int, picture: Image.Image | bytes) -> Likeness:
        likeness = self.score(picture)
        record_asset_likeness(asset_id, likeness)
        return likeness
