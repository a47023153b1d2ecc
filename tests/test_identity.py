"""Face identity on real photos (dlib's ResNet descriptor) and the checkpoint recommendation.

Real faces: scikit-image's astronaut (Eileen Collins) and matplotlib's Grace Hopper, in resized, rotated
and flipped copies. The tiny model's training samples are noise with no face, so the recommendation
*mechanism* (scoring samples per checkpoint, recommending, auto-promoting) is tested with a stub face
model behind the same interface: test_a_tiny_run_scores_its_samples_and_promotes_the_recommended_checkpoint.
The guard tests (collapse, copied training photo) use numbers, no model.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image, ImageOps
from skimage import data
from sqlalchemy import select
from sqlmodel import col

from core.characters.characters import current_character
from core.characters.likeness import (
    FINGERPRINT_KIND,
    Likeness,
    StepLikeness,
    recommend,
    robust_centroid,
    step_likeness,
)
from core.config import reload_settings
from core.datasets.check import check_dataset
from core.datasets.datasets import create_dataset, delete_images, import_files
from core.db import session_scope
from core.jobs import lifecycle as jobs
from core.library import assets
from core.models import Job, JobStatus, LoraModel
from core.training import runs as training
from workers import identity
from workers import training as training_worker
from workers.ml.identity import FaceBox, faces, load_face_model, register_face_model

THRESHOLD = 0.6


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    astronaut = Image.fromarray(data.astronaut())
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as opened:
        hopper = opened.convert("RGB")
    return {
        "astronaut.png": astronaut,
        "astronaut-small-rot10.png": astronaut.resize((300, 300)).rotate(10),
        "astronaut-rot-8.png": astronaut.resize((400, 400)).rotate(-8),
        "astronaut-flip.png": ImageOps.mirror(astronaut),
        "hopper.png": hopper,
        "camera.png": Image.fromarray(data.camera()).convert("RGB"),  # no face
    }


@pytest.fixture(scope="module")
def dlib_model():
    return load_face_model("dlib-resnet-v1")


def _embedding(model, image: Image.Image) -> np.ndarray:
    found = faces(model, image)
    assert len(found) == 1, f"expected one face, found {len(found)}"
    return found[0].embedding


def test_same_person_variants_pass_the_threshold_and_another_person_fails(dlib_model, photos):
    reference = robust_centroid([_embedding(dlib_model, photos[n]) for n in
                                 ("astronaut.png", "astronaut-rot-8.png", "astronaut-flip.png")],
                                threshold=THRESHOLD).centroid
    variant = np.linalg.norm(_embedding(dlib_model, photos["astronaut-small-rot10.png"]) - reference)
    other = np.linalg.norm(_embedding(dlib_model, photos["hopper.png"]) - reference)
    assert variant <= THRESHOLD < other
    assert faces(dlib_model, photos["camera.png"]) == []


def _run_inline(kind: str, payload: dict, handler) -> Job:
    job = jobs.create_job(kind, payload)
    jobs.execute_job(job.id, handler)
    return jobs.get_job(job.id)


def test_a_dataset_with_one_intruder_flags_exactly_it_and_the_fingerprint_scores_images(studio, photos):
    character = current_character()
    dataset = create_dataset(name="Collins", trigger_word="ohwx woman")
    import_files(dataset.id, [(name, _png(image)) for name, image in photos.items()])
    job = _run_inline(FINGERPRINT_KIND, {"character_id": character.id, "dataset_id": dataset.id},
                      identity.fingerprint)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["outliers"][0]["filename"] == "hopper.png" and len(job.result["outliers"]) == 1
    assert job.progress == pytest.approx(1.0)

    warnings = {f.filename: [w for w in f.warnings if "face" in w or "person" in w]
                for f in check_dataset(dataset.id).findings}
    assert warnings.pop("camera.png") == ["no face found"]
    assert len(warnings.pop("hopper.png")) == 1 and all(not w for w in warnings.values())
    report = check_dataset(dataset.id)
    assert report.summary["other_person"] == 1 and report.summary["no_face"] == 1

    scorer = identity.Scorer.for_character(character.id)
    assert scorer is not None and scorer.target.fingerprint.images_used == 4
    same = assets.store_image("t/same.png", _png(photos["astronaut-small-rot10.png"]), source="generated")
    nobody = assets.store_image("t/nobody.png", _png(photos["camera.png"]), source="generated")
    assert scorer.score_asset(same.id, photos["astronaut-small-rot10.png"]).match
    assert not scorer.score(photos["hopper.png"]).match
    assert scorer.score_asset(nobody.id, photos["camera.png"]).status == "no face"
    stored = assets.get_asset(nobody.id)
    assert stored.face_distance is None and stored.meta["likeness"]["status"] == "no face"
    assert assets.get_asset(same.id).face_distance <= THRESHOLD
    closest = assets.list_assets(sort="likeness").items
    assert [a.id for a in closest] == [same.id, nobody.id]  # scored first, no face last

    # The dataset changes: its fingerprint is queued again.
    hopper_id = next(f.image_id for f in report.findings if f.filename == "hopper.png")
    delete_images(dataset.id, [hopper_id])
    with session_scope() as session:
        kinds = list(session.execute(select(col(Job.kind)).where(col(Job.kind) == FINGERPRINT_KIND)).scalars())
    assert len(kinds) == 2


def _likeness(distance: float | None, embedding: list[float] | None = None, nearest: float | None = None) -> Likeness:
    return Likeness("m", 0 if distance is None else 1, distance, THRESHOLD, "no face" if distance is None else "scored",
                    embedding=embedding, nearest_training=None if nearest is None else
                    {"image_id": 1, "filename": "a.png", "distance": nearest})


def test_the_recommendation_skips_collapsed_copied_and_faceless_checkpoints():
    steps = [
        step_likeness([_likeness(0.5, [0.0, 0.0], 0.4), _likeness(0.45, [0.3, 0.0], 0.4)], 10),  # fine
        step_likeness([_likeness(0.2, [0.1, 0.1], 0.4), _likeness(0.2, [0.1, 0.11], 0.4)], 20),  # collapsed
        step_likeness([_likeness(0.1, [0.0, 0.5], 0.05), _likeness(0.3, [0.5, 0.0], 0.3)], 30),  # copies a photo
        step_likeness([_likeness(0.05, [0.0, 0.0]), _likeness(None), _likeness(None)], 40),  # mostly faceless
    ]
    assert [bool(s.warnings) for s in steps] == [False, True, True, True]
    best = recommend(steps, {10: 1, 20: 2, 30: 3, 40: 4})
    assert (best.lora_id, best.step, best.distance, best.nearest_training_distance) == (1, 10, 0.475, 0.4)
    assert recommend(steps[1:], {20: 2, 30: 3}).lora_id is None
    assert recommend([StepLikeness(50, 2, 2, 0.3, 0.4, None)], {10: 1}).lora_id is None  # no checkpoint there


class StubFaces:
    """A stand-in face model for noise images: every image is one 'face', embedded as its 4×4 grey thumbnail."""

    name = "stub-faces"

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        return [FaceBox(0, 0, image.shape[1], image.shape[0])]

    def align(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        return np.asarray(Image.fromarray(image).convert("L").resize((4, 4)), dtype=np.float64) / 255.0

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        return aligned.reshape(-1) * 20.0  # spread out: noise thumbnails are all near grey


def test_a_tiny_run_scores_its_samples_and_promotes_the_recommended_checkpoint(studio, tiny_models, monkeypatch):
    from tests.factories import image_bytes
    from tests.test_training_job import tiny_params

    register_face_model(StubFaces.name, StubFaces)
    monkeypatch.setenv("STUDIO_FACE_MODEL", StubFaces.name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reload_settings()
    character = current_character()
    dataset = create_dataset(name="Noise", trigger_word="ohwx woman")
    import_files(dataset.id, [(f"{i}.png", image_bytes(160, 128, seed=70 + i)) for i in range(4)])
    assert _run_inline(FINGERPRINT_KIND, {"character_id": character.id, "dataset_id": dataset.id},
                       identity.fingerprint).status == JobStatus.SUCCEEDED
    params = tiny_params(tiny_models, steps=4, sample_every=2, checkpoint_every=2, keep_checkpoints=5,
                         sample_steps=1)
    job = training.submit_training(dataset_id=dataset.id, params=params, name="scored", promote_recommended=True)
    jobs.execute_job(job.id, training_worker.train)
    job = jobs.get_job(job.id)
    assert job.status == JobStatus.SUCCEEDED, job.error

    samples = assets.list_assets(assets.make_filter(job_id=job.id, kind="sample"), page_size=100).items
    assert len(samples) == 4 and all(s.meta["likeness"]["model"] == StubFaces.name for s in samples)
    assert all(s.face_distance is not None and s.meta["likeness"]["nearest_training"] for s in samples)
    from core.characters.likeness import run_likeness

    guarded = {s.step for s in run_likeness(job.id) if s.warnings}  # the guards are tested on their own above
    means = {step: np.mean([s.face_distance for s in samples if s.meta["step"] == step])
             for step in (2, 4) if step not in guarded}
    assert means, "every checkpoint was guarded: the stub model no longer tells the samples apart"
    expected_step = min(means, key=lambda s: (round(means[s], 4), s))
    recommended = job.result["recommended"]
    assert recommended["step"] == expected_step and recommended["promoted"], recommended
    with session_scope() as session:
        promoted = session.execute(select(LoraModel).where(col(LoraModel.promoted).is_(True))).scalars().all()
    assert [(p.id, p.step) for p in promoted] == [(recommended["lora_id"], expected_step)]


def test_the_lora_pipeline_summary_reports_the_recommended_checkpoint():
    from core.automation.pipelines import _recommended

    train = Job(kind="train", queue="gpu", result={"recommended": {
        "lora_id": 7, "step": 20, "distance": 0.31, "nearest_training_distance": 0.42, "reason": "best likeness",
        "promoted": True}})
    assert _recommended(train) == {"loraId": 7, "step": 20, "faceDistance": 0.31, "nearestTrainingDistance": 0.42,
                                   "reason": "best likeness", "promoted": True}
    assert _recommended(Job(kind="train", queue="gpu", result={"recommended": None})) is None


def test_a_post_whose_image_looks_like_another_person_is_held_for_review(studio):
    from core.characters.likeness import likeness_hold, record_asset_likeness, set_threshold

    character = current_character()
    images = [assets.store_image(f"t/{i}.png", _png(Image.new("RGB", (8, 8))), source="generated",
                                 character_id=character.id) for i in range(3)]
    for image, score in zip(images, (0.35, 0.55, None), strict=True):
        record_asset_likeness(image.id, Likeness("m", 0 if score is None else 1, score, THRESHOLD,
                                                 "no face" if score is None else "scored"))
    assert likeness_hold([images[0].id, images[1].id, images[2].id]) is None  # within 0.6; no face holds nothing
    set_threshold(character.id, 0.3)  # now every scored image is above the threshold
    held = likeness_hold([images[1].id])
    assert held["assetId"] == images[1].id and held["faceDistance"] == 0.55 and held["threshold"] == 0.3
