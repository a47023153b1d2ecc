"""Upload → auto-caption (tiny BLIP, real worker process) → edit → export, end to end."""

from __future__ import annotations

import io
import zipfile

import pytest

from core.config import reload_settings
from core.datasets import captions, datasets
from core.jobs import lifecycle as jobs
from core.models import JobStatus
from tests.conftest import wait_until
from tests.factories import image_bytes

pytestmark = pytest.mark.integration


@pytest.fixture
def captioning(studio, tiny_models, monkeypatch):
    monkeypatch.setenv("STUDIO_CAPTION_MODEL", str(tiny_models["blip"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reload_settings()


def _finished(job_id: str):
    return wait_until(lambda: (j := jobs.get_job(job_id)).job_status.is_terminal and j, 120, what="the caption job")


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_upload_caption_edit_export_round_trip(captioning, workers):
    dataset = datasets.create_dataset(name="Ava", trigger_word="ohwx woman")
    datasets.import_files(dataset.id, [(f"{i}.png", image_bytes(seed=80 + i)) for i in range(5)])
    first = datasets.all_images(dataset.id)[0]
    captions.save_caption(first.id, "kept as it is", reviewed=True)
    workers.worker(queues="gpu", threads=1)

    job = jobs.create_job("caption", {"dataset_id": dataset.id, "batch_size": 2, "suffix": "studio light"})
    done = _finished(job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.result["captioned"] == 4 and done.progress == 1.0
    images = datasets.all_images(dataset.id)
    assert images[0].caption == "kept as it is" and images[0].caption_source == "manual"
    for image in images[1:]:
        assert image.caption.startswith("ohwx woman, ") and image.caption.endswith(" studio light")
        assert image.caption_source == "auto" and not image.reviewed
    auto = [i.caption for i in images[1:]]

    again = {"dataset_id": dataset.id, "batch_size": 2, "suffix": "studio light"}
    rerun = _finished(jobs.create_job("caption", again).id)
    assert rerun.result == {"captioned": 0}, "only uncaptioned images: a rerun has nothing to do"
    everything = _finished(jobs.create_job("caption", {"dataset_id": dataset.id, "only_uncaptioned": False,
                                                        "batch_size": 3, "suffix": "studio light"}).id)
    assert everything.result["captioned"] == 5
    assert [i.caption for i in datasets.all_images(dataset.id)][1:] == auto, "greedy captions are deterministic"

    captions.save_caption(images[1].id, "ohwx woman, edited by hand")
    with zipfile.ZipFile(io.BytesIO(datasets.export_training_zip(dataset.id))) as archive:
        texts = {name: archive.read(name).decode() for name in archive.namelist() if name.endswith(".txt")}
    assert texts["1.txt"] == "ohwx woman, edited by hand"
    assert len(texts) == 5


def test_a_missing_caption_model_fails_the_job_clearly_without_retrying(studio, workers, monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_CAPTION_MODEL", str(tmp_path / "no-such-model"))
    reload_settings()
    dataset = datasets.create_dataset(name="Ava")
    datasets.import_files(dataset.id, [("a.png", image_bytes(seed=90))])
    workers.worker(queues="gpu", threads=1)
    failed = _finished(jobs.create_job("caption", {"dataset_id": dataset.id}).id)
    assert failed.status == JobStatus.FAILED and failed.attempts == 1
    assert failed.error_stage == "loading model" and "could not load caption model" in failed.error


def test_cancelling_a_caption_job_keeps_the_batches_already_written(captioning, workers):
    dataset = datasets.create_dataset(name="Ava")
    datasets.import_files(dataset.id, [(f"{i}.png", image_bytes(seed=100 + i)) for i in range(40)])
    workers.worker(queues="gpu", threads=1)
    job = jobs.create_job("caption", {"dataset_id": dataset.id, "batch_size": 1})
    wait_until(lambda: jobs.get_job(job.id).progress > 0, 60, what="the first batch")
    jobs.cancel_job(job.id)
    cancelled = _finished(job.id)
    assert cancelled.status == JobStatus.CANCELLED
    captioned = [i for i in datasets.all_images(dataset.id) if i.caption]
    assert 0 < len(captioned) < 40
