"""Likeness: how much a face looks like the character, measured against its face fingerprint.

The arithmetic and the records live here (no model, no torch): the workers (``workers/identity.py``)
find faces and embed them with a model from ``workers/ml/identity`` and hand the vectors to these
functions. Distances are Euclidean in the model's space, lower = more alike; dlib's scale puts the
same person under 0.6, the character's ``likeness_threshold``. Every embedding carries its model name and
two models' vectors are never compared: a fingerprint of another model counts as no fingerprint.

The fingerprint is a robust centroid: each dataset image's face is compared with the median of the
others (leave-one-out, so one intruder cannot drag the reference towards itself); images farther than
the threshold are flagged as another person and left out of the mean of the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pydantic import Field
from sqlalchemy import select, update
from sqlmodel import col

from core.datasets.datasets import on_images_changed
from core.db import session_scope
from core.errors import InvalidInput, NotFound
from core.jobs.kinds import JobSpec, Payload, Queue, register
from core.jobs.lifecycle import create_job
from core.library.assets import AssetSource
from core.models import Asset, Character, DatasetImage, LoraModel, Post, PostStatus, utcnow

FINGERPRINT_KIND = "fingerprint"
DEFAULT_THRESHOLD = 0.6
# A sample this close to a training image's face is that photo copied back (resized copies of one photo
# measure 0.18-0.22 with dlib; two photos of one person are typically 0.3-0.5 apart).
COPY_DISTANCE = 0.12
# Samples of one step whose faces are on average this close to each other all show the same face:
# the LoRA collapsed onto one image, whatever the prompt asked for.
COLLAPSE_SPREAD = 0.05
MIN_FACE_SHARE = 0.5  # a checkpoint whose samples show a face less often than this is not recommended


class FingerprintPayload(Payload):
    """Find the faces of a dataset's images and make the character's fingerprint from them."""

    character_id: int = Field(ge=1)
    dataset_id: int = Field(ge=1)


# --- the arithmetic ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CentroidResult:
    centroid: np.ndarray
    loo_distances: list[float | None]  # None where there is no other face to compare with
    outliers: list[bool]


def robust_centroid(vectors: Sequence[Sequence[float]], *, threshold: float) -> CentroidResult:
    """Leave-one-out distances (to the median of the others) and the mean of the non-outliers."""
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) == 0:
        raise InvalidInput("no face embeddings to make a fingerprint from")
    distances: list[float | None] = []
    for index in range(len(matrix)):
        others = np.delete(matrix, index, axis=0)
        distances.append(float(np.linalg.norm(matrix[index] - np.median(others, axis=0))) if len(others) else None)
    outliers = [d is not None and d > threshold for d in distances]
    kept = matrix[[not o for o in outliers]]
    return CentroidResult((kept if len(kept) else matrix).mean(axis=0), distances, outliers)


def distance(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


@dataclass(frozen=True)
class Fingerprint:
    model: str
    centroid: list[float]
    dataset_id: int
    images_used: int
    signature: str  # of the dataset's images when it was made: a change makes it stale
    computed_at: str

    @classmethod
    def of(cls, character: Character) -> Fingerprint | None:
        return cls(**character.fingerprint) if character.fingerprint else None


@dataclass(frozen=True)
class Likeness:
    """One image's likeness. ``distance`` is None when no face was found or there is no fingerprint."""

    model: str
    faces: int
    distance: float | None
    threshold: float
    status: str  # "scored" | "no face" | "no fingerprint"
    embedding: list[float] | None = None  # the closest face's, for checkpoint statistics
    nearest_training: dict[str, Any] | None = None  # {"image_id", "filename", "distance"}

    @property
    def match(self) -> bool:
        return self.distance is not None and self.distance <= self.threshold

    def describe(self) -> str:
        if self.status == "no face":
            return "no face found"
        if self.distance is None:
            return "not scored (the character has no face fingerprint)"
        verdict = "same person" if self.match else "another person"
        return f"face distance {self.distance:.2f} ({verdict}; threshold {self.threshold:.2f})"


def score_faces(embeddings: Sequence[np.ndarray], *, model: str, fingerprint: Fingerprint | None,
                threshold: float) -> Likeness:
    """The likeness of an image from its faces' embeddings: the face closest to the fingerprint counts."""
    if fingerprint is None or fingerprint.model != model:
        return Likeness(model, len(embeddings), None, threshold, "no fingerprint")
    if not embeddings:
        return Likeness(model, 0, None, threshold, "no face")
    best = min(embeddings, key=lambda e: distance(e, fingerprint.centroid))
    return Likeness(model, len(embeddings), round(distance(best, fingerprint.centroid), 4), threshold, "scored",
                    embedding=[float(x) for x in best])


def likeness_from_meta(meta: dict[str, Any]) -> Likeness | None:
    stored = meta.get("likeness")
    return Likeness(**stored) if stored else None


# --- the character's fingerprint -------------------------------------------------------------------


def dataset_signature(images: Sequence[DatasetImage]) -> str:
    return hashlib.sha256("\n".join(sorted(i.sha256 for i in images)).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ScoringTarget:
    """Whom an image is scored against: the character, its fingerprint (None: cannot score) and threshold."""

    character_id: int | None
    fingerprint: Fingerprint | None
    threshold: float


def scoring_target(character_id: int | None, *, model: str) -> ScoringTarget:
    """Work without a character is scored against the studio's single (first) character, as generation's
    defaults are; nothing is created here."""
    with session_scope() as session:
        query = select(Character).order_by(col(Character.id)).limit(1) if character_id is None \
            else select(Character).where(col(Character.id) == character_id)
        character = session.execute(query).scalar_one_or_none()
    if character is None:
        return ScoringTarget(None, None, DEFAULT_THRESHOLD)
    fingerprint = Fingerprint.of(character)
    return ScoringTarget(character.id, fingerprint if fingerprint and fingerprint.model == model else None,
                         character.likeness_threshold)


def threshold_of(character_id: int | None) -> float:
    if character_id is None:
        return DEFAULT_THRESHOLD
    with session_scope() as session:
        character = session.get(Character, character_id)
    return character.likeness_threshold if character else DEFAULT_THRESHOLD


def set_threshold(character_id: int, threshold: float) -> None:
    if not 0.05 <= threshold <= 2.0:
        raise InvalidInput("the likeness threshold is a face distance between 0.05 and 2.0 (dlib: 0.6)")
    with session_scope() as session:
        session.execute(update(Character).where(col(Character.id) == character_id)
                        .values(likeness_threshold=threshold))


def record_image_faces(image_id: int, *, model: str, embeddings: Sequence[np.ndarray]) -> None:
    """What the model found in one dataset image: the count, and the embedding when there is one face."""
    vector = [float(x) for x in embeddings[0]] if len(embeddings) == 1 else None
    with session_scope() as session:
        session.execute(update(DatasetImage).where(col(DatasetImage.id) == image_id).values(
            face_model=model, face_count=len(embeddings), face_embedding=vector, face_distance=None))


def finish_fingerprint(character_id: int, dataset_id: int, *, model: str) -> dict[str, Any]:
    """Leave-one-out distances on the dataset's one-face images, the flags, and the character's fingerprint."""
    threshold = threshold_of(character_id)
    with session_scope() as session:
        images = list(session.execute(select(DatasetImage).where(col(DatasetImage.dataset_id) == dataset_id)
                                      .order_by(col(DatasetImage.id))).scalars())
        usable = [i for i in images if i.face_model == model and i.face_count == 1 and i.face_embedding]
        summary: dict[str, Any] = {"images": len(images), "one_face": len(usable),
                                   "no_face": sum(1 for i in images if i.face_model == model and i.face_count == 0),
                                   "several_faces": sum(1 for i in images if (i.face_count or 0) > 1),
                                   "outliers": []}
        if not usable:
            session.execute(update(Character).where(col(Character.id) == character_id).values(fingerprint=None))
            summary["fingerprint"] = False
            return summary
        result = robust_centroid([i.face_embedding or [] for i in usable], threshold=threshold)
        for image, loo, outlier in zip(usable, result.loo_distances, result.outliers, strict=True):
            image.face_distance = round(loo, 4) if loo is not None else None
            session.add(image)
            if outlier:
                summary["outliers"].append({"image_id": image.id, "filename": image.filename, "distance": loo})
        fingerprint = Fingerprint(model=model, centroid=[float(x) for x in result.centroid], dataset_id=dataset_id,
                                  images_used=len(usable) - len(summary["outliers"]),
                                  signature=dataset_signature(images), computed_at=utcnow().isoformat())
        session.execute(update(Character).where(col(Character.id) == character_id)
                        .values(fingerprint=asdict(fingerprint)))
    summary["fingerprint"] = True
    return summary


def fingerprint_is_stale(character: Character) -> bool:
    fingerprint = Fingerprint.of(character)
    if fingerprint is None:
        return False
    with session_scope() as session:
        images = list(session.execute(select(DatasetImage)
                                      .where(col(DatasetImage.dataset_id) == fingerprint.dataset_id)).scalars())
    return dataset_signature(images) != fingerprint.signature


def request_fingerprint(character_id: int, dataset_id: int) -> Any:
    """Queue the fingerprint job (progress per image); the dataset check shows its flags when it is done."""
    return create_job(FINGERPRINT_KIND, {"character_id": character_id, "dataset_id": dataset_id})


def on_dataset_changed(dataset_id: int) -> None:
    """Images were added or removed: recompute every fingerprint made from this dataset."""
    with session_scope() as session:
        characters = [c for c in session.execute(select(Character).where(col(Character.fingerprint).is_not(None)))
                      .scalars() if (c.fingerprint or {}).get("dataset_id") == dataset_id]
    for character in characters:
        request_fingerprint(character.id or 0, dataset_id)


def _prepare_fingerprint(payload: FingerprintPayload) -> tuple[FingerprintPayload, int | None]:
    with session_scope() as session:
        if session.get(Character, payload.character_id) is None:
            raise NotFound(f"character {payload.character_id} not found")
    return payload, payload.character_id


# --- likeness of assets -------------------------------------------------------------------------------


def record_asset_likeness(asset_id: int, likeness: Likeness) -> None:
    """The score on the asset: the column (for filters and sorting) and the details in its meta."""
    with session_scope() as session:
        asset = session.get(Asset, asset_id, with_for_update=True)
        if asset is None:
            raise NotFound(f"asset {asset_id} not found")
        asset.face_distance = likeness.distance
        asset.meta = {**asset.meta, "likeness": asdict(likeness)}
        session.add(asset)


def likeness_hold(asset_ids: Sequence[int]) -> dict[str, Any] | None:
    """Why a post made of these assets waits for review: an image scored as another person (face distance
    over its character's threshold). Unscored media (no fingerprint, videos) and faceless images hold nothing."""
    if not asset_ids:
        return None
    with session_scope() as session:
        rows = list(session.execute(select(Asset).where(col(Asset.id).in_(list(asset_ids)),
                                                        col(Asset.face_distance).is_not(None))).scalars())
    return _first_miss(rows, {})


def _first_miss(scored: Sequence[Asset], thresholds: dict[int | None, float]) -> dict[str, Any] | None:
    """The first scored asset over its character's threshold, as a hold (``thresholds`` caches them by character)."""
    for asset in scored:
        if asset.character_id not in thresholds:
            thresholds[asset.character_id] = threshold_of(asset.character_id)
        threshold = thresholds[asset.character_id]
        if asset.face_distance is not None and asset.face_distance > threshold:
            return {"assetId": asset.id, "faceDistance": asset.face_distance, "threshold": threshold,
                    "reason": f"asset {asset.id} looks like another person (face distance "
                              f"{asset.face_distance:.2f} > {threshold:.2f})"}
    return None


def held_posts(shown: Sequence[Post]) -> dict[int, dict[str, Any]]:
    """Which of these posts wait for review (the calendar's marker): drafts whose media a pipeline would hold
    (``likeness_hold``), by post id. One query for all their scored media, one per character's threshold."""
    drafts = [post for post in shown if post.status == PostStatus.DRAFT and post.asset_ids and post.id is not None]
    wanted = {asset_id for post in drafts for asset_id in post.asset_ids}
    if not wanted:
        return {}
    with session_scope() as session:
        scored = {a.id: a for a in session.execute(select(Asset).where(
            col(Asset.id).in_(sorted(wanted)), col(Asset.face_distance).is_not(None))).scalars()}
    thresholds: dict[int | None, float] = {}
    holds = {}
    for post in drafts:
        hold = _first_miss([scored[i] for i in post.asset_ids if i in scored], thresholds)
        if hold is not None:
            holds[post.id or 0] = hold
    return holds


# --- checkpoints: likeness per step and the recommendation ----------------------------------------------


@dataclass
class StepLikeness:
    step: int
    samples: int
    with_face: int
    mean_distance: float | None
    spread: float | None  # mean distance between the step's sample faces (collapse guard)
    nearest_training: dict[str, Any] | None  # the closest any sample came to a training photo
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Recommendation:
    lora_id: int | None
    step: int | None
    distance: float | None
    nearest_training_distance: float | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def step_likeness(samples: Sequence[Likeness], step: int) -> StepLikeness:
    scored = [s for s in samples if s.distance is not None]
    vectors = np.asarray([s.embedding for s in scored if s.embedding], dtype=np.float64)
    spread = None
    if len(vectors) >= 2:
        pairs = [distance(vectors[i], vectors[j]) for i in range(len(vectors)) for j in range(i + 1, len(vectors))]
        spread = round(float(np.mean(pairs)), 4)
    nearest = min((s.nearest_training for s in scored if s.nearest_training),
                  key=lambda n: float(n["distance"]), default=None)
    result = StepLikeness(step, len(samples), len(scored),
                          round(float(np.mean([s.distance for s in scored if s.distance is not None])), 4)
                          if scored else None, spread, nearest)
    if samples and len(scored) < MIN_FACE_SHARE * len(samples):
        result.warnings.append(f"a face in only {len(scored)} of {len(samples)} samples")
    if spread is not None and spread < COLLAPSE_SPREAD:
        result.warnings.append(f"the samples all show the same face (spread {spread:.3f}): collapse")
    if nearest is not None and float(nearest["distance"]) < COPY_DISTANCE:
        result.warnings.append(f"copies training photo {nearest.get('filename') or nearest.get('image_id')} "
                               f"(face distance {float(nearest['distance']):.2f})")
    return result


def recommend(steps: Sequence[StepLikeness], checkpoints: dict[int, int]) -> Recommendation:
    """The checkpoint (step → LoRA id) whose samples look most like the character, among the unguarded."""
    candidates = [s for s in steps if s.step in checkpoints and s.mean_distance is not None and not s.warnings]
    if not candidates:
        guarded = [s for s in steps if s.step in checkpoints and s.warnings]
        reason = ("every scored checkpoint is guarded: " + "; ".join(f"step {s.step}: {', '.join(s.warnings)}"
                                                                     for s in guarded)) if guarded \
            else "no checkpoint has scored samples"
        return Recommendation(None, None, None, None, reason)
    best = min(candidates, key=lambda s: (s.mean_distance, s.step))
    nearest = float(best.nearest_training["distance"]) if best.nearest_training else None
    return Recommendation(checkpoints[best.step], best.step, best.mean_distance, nearest,
                          f"best likeness: mean face distance {best.mean_distance:.2f} over {best.with_face} sample(s)")


def run_likeness(job_id: str) -> list[StepLikeness]:
    """Likeness per sampled step of a run, from its sample images' stored scores."""
    with session_scope() as session:
        rows = list(session.execute(
            select(Asset).where(col(Asset.job_id) == job_id, col(Asset.source) == AssetSource.SAMPLE)
            .order_by(col(Asset.id))).scalars())
    by_step: dict[int, list[Likeness]] = {}
    for asset in rows:
        likeness = likeness_from_meta(asset.meta)
        if likeness is not None and likeness.status != "no fingerprint":
            by_step.setdefault(int(asset.meta["step"]), []).append(likeness)
    return [step_likeness(samples, step) for step, samples in sorted(by_step.items())]


def recommend_checkpoint(job_id: str) -> Recommendation:
    with session_scope() as session:
        checkpoints = dict(session.execute(select(col(LoraModel.step), col(LoraModel.id))
                                           .where(col(LoraModel.job_id) == job_id)).all())
    return recommend(run_likeness(job_id), {int(k): int(v) for k, v in checkpoints.items() if v is not None})


on_images_changed(on_dataset_changed)
register(JobSpec(
    FINGERPRINT_KIND, Queue.CPU, FingerprintPayload,
    "Finds the faces of a dataset's images and makes the character's face fingerprint (flags outliers).",
    max_attempts=3, time_limit_s=3_600, prepare=_prepare_fingerprint,
))
