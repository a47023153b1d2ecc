"""Datasets end to end on real storage and databases: import, bad input, lists, check, export."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from core.datasets import datasets
from core.datasets.check import check_dataset
from core.errors import Conflict, InvalidInput
from core.infra.storage import get_object_store
from core.models import DatasetKind
from tests.factories import image_bytes, zip_bytes


def _objects(dataset_id: int) -> list[str]:
    return [o.key for o in get_object_store().list(f"datasets/{dataset_id}/")]


@pytest.fixture
def dataset(studio):
    return datasets.create_dataset(name="Ava", trigger_word="ohwx woman")


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_importing_images_stores_original_and_thumbnail_and_counts_them(dataset):
    files = [("a.png", image_bytes(seed=1)), ("b.jpg", image_bytes(seed=2, fmt="JPEG"))]
    report = datasets.import_files(dataset.id, files)
    assert report.added == ["a.png", "b.jpg"] and not report.errors
    assert datasets.get_dataset(dataset.id).image_count == 2
    images = datasets.list_images(dataset.id).items
    assert {(i.width, i.height) for i in images} == {(640, 640)}
    assert len(_objects(dataset.id)) == 4, "original + thumbnail per image"
    thumb = Image.open(io.BytesIO(datasets.read_thumbnail(images[0])))
    assert max(thumb.size) <= 256


def test_exact_duplicates_are_skipped_with_a_message(dataset):
    data = image_bytes(seed=3)
    datasets.import_files(dataset.id, [("a.png", data)])
    report = datasets.import_files(dataset.id, [("copy-of-a.png", data)])
    assert report.added == [] and report.duplicates == ["copy-of-a.png: already in this dataset (same file), skipped"]
    assert datasets.get_dataset(dataset.id).image_count == 1
    assert len(_objects(dataset.id)) == 2


BAD_FILES = {
    "truncated": ("broken.jpg", image_bytes(seed=4, fmt="JPEG")[:2000]),
    "not an image": ("notes.jpg", b"these are my notes, not a picture" * 10),
    "empty": ("empty.png", b""),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_is_rejected_alone_and_the_rest_of_the_batch_imports(dataset, case):
    name, data = BAD_FILES[case]
    report = datasets.import_files(dataset.id, [(name, data), ("good.png", image_bytes(seed=5))])
    assert report.added == ["good.png"]
    assert len(report.errors) == 1 and report.errors[0].startswith(name)
    assert len(_objects(dataset.id)) == 2, "nothing stored for the bad file"


def test_oversized_and_bomb_images_are_rejected_by_the_configured_limits(dataset, monkeypatch):
    from core.config import reload_settings

    monkeypatch.setenv("STUDIO_UPLOAD_MAX_PIXELS", str(500 * 500))
    reload_settings()
    report = datasets.import_files(dataset.id, [("huge.png", image_bytes(800, 800, seed=6))])
    assert report.added == [] and "huge.png" in report.errors[0]
    assert _objects(dataset.id) == []


def test_a_zip_imports_its_images_with_their_captions_and_rejects_unsafe_entries(dataset):
    archive = zip_bytes({
        "set/one.png": image_bytes(seed=7), "set/one.txt": b"ohwx woman smiling",
        "two.webp": image_bytes(seed=8, fmt="WEBP"),
        "../escape.png": image_bytes(seed=9),
        "inner.zip": zip_bytes({"x.png": image_bytes(seed=10)}),
    })
    report = datasets.import_files(dataset.id, [("batch.zip", archive)])
    assert sorted(report.added) == ["set/one.png", "two.webp"]
    assert len(report.errors) == 2
    assert any("escape.png" in e for e in report.errors) and any("inner.zip" in e for e in report.errors)
    captions = {i.filename: (i.caption, i.caption_source) for i in datasets.all_images(dataset.id)}
    assert captions["one.png"] == ("ohwx woman smiling", "import")
    assert captions["two.webp"] == ("", None)


def test_a_broken_or_empty_zip_is_one_clear_error(dataset):
    report = datasets.import_files(dataset.id, [("bad.zip", b"PK\x03\x04 not really"), ("none.zip", zip_bytes({}))])
    assert report.added == [] and len(report.errors) == 2
    assert report.errors[0].startswith("bad.zip") and report.errors[1].startswith("none.zip")


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_datasets_list_filters_sorts_and_paginates(studio):
    for index, name in enumerate(["bea", "ava", "cleo"]):
        created = datasets.create_dataset(name=name, kind="reference" if name == "cleo" else "lora-training")
        datasets.import_files(created.id, [(f"{i}.png", image_bytes(seed=100 * index + i)) for i in range(index)])
    assert [d.name for d in datasets.list_datasets(sort="name", descending=False).items] == ["ava", "bea", "cleo"]
    assert [d.name for d in datasets.list_datasets(sort="images").items] == ["cleo", "ava", "bea"]
    assert [d.name for d in datasets.list_datasets(kind=DatasetKind.REFERENCE).items] == ["cleo"]
    assert [d.name for d in datasets.list_datasets(search="AV").items] == ["ava"]
    page = datasets.list_datasets(page=2, page_size=2, sort="created", descending=False)
    assert page.total == 3 and page.pages == 2 and [d.name for d in page.items] == ["cleo"]
    assert datasets.list_datasets(page_size=10_000).page_size == 100


def test_names_are_unique_and_validated(dataset):
    with pytest.raises(Conflict, match="already exists"):
        datasets.create_dataset(name="Ava")
    with pytest.raises(InvalidInput, match="name"):
        datasets.create_dataset(name="   ")
    with pytest.raises(InvalidInput, match="kind"):
        datasets.create_dataset(name="x", kind="video")


def test_deleting_images_and_the_dataset_removes_their_objects(dataset):
    datasets.import_files(dataset.id, [(f"{i}.png", image_bytes(seed=20 + i)) for i in range(3)])
    first = datasets.list_images(dataset.id).items[0]
    assert datasets.delete_images(dataset.id, [first.id]) == 1
    assert datasets.get_dataset(dataset.id).image_count == 2
    assert first.key not in _objects(dataset.id) and len(_objects(dataset.id)) == 4
    datasets.delete_dataset(dataset.id)
    assert _objects(dataset.id) == []
    assert datasets.list_datasets().total == 0


def test_the_demo_dataset_has_fifteen_distinct_sharp_images(studio):
    demo, report = datasets.create_demo_dataset()
    assert len(report.added) == 15 and not report.errors and not report.duplicates
    findings = check_dataset(demo.id, resolution=512)
    assert findings.summary["near_duplicates"] == 0 and findings.summary["blurry"] == 0
    assert findings.summary["missing_caption"] == 15


def test_the_check_flags_near_duplicates_small_blurry_odd_and_uncaptioned_images(dataset):
    from PIL import ImageFilter

    sharp = image_bytes(640, 640, seed=30)
    recompressed = image_bytes(640, 640, seed=30, fmt="JPEG", quality=70)
    blurred = io.BytesIO()
    Image.open(io.BytesIO(image_bytes(640, 640, seed=31))).filter(ImageFilter.GaussianBlur(12)).save(blurred, "PNG")
    datasets.import_files(dataset.id, [
        ("sharp.png", sharp), ("again.jpg", recompressed), ("blurred.png", blurred.getvalue()),
        ("small.png", image_bytes(200, 200, seed=32)), ("wide.png", image_bytes(1500, 500, seed=33)),
    ])
    report = check_dataset(dataset.id, resolution=512)
    warnings = {f.filename: " | ".join(f.warnings) for f in report.findings}
    assert "near-duplicate of again.jpg" in warnings["sharp.png"]
    assert "blurry" in warnings["blurred.png"] and "blurry" not in warnings["sharp.png"]
    assert "smaller than the training resolution" in warnings["small.png"]
    assert "extreme aspect ratio" in warnings["wide.png"]
    assert report.summary["missing_caption"] == 5
    assert any("at least 10" in note for note in report.notes)


def test_export_gives_same_stem_images_their_own_caption_files(dataset):
    from core.datasets import captions

    same_stem = [("photo.png", image_bytes(seed=50)), ("photo.jpg", image_bytes(seed=51, fmt="JPEG"))]
    datasets.import_files(dataset.id, same_stem)
    for image in datasets.all_images(dataset.id):
        captions.save_caption(image.id, f"caption of {image.filename}")
    with zipfile.ZipFile(io.BytesIO(datasets.export_training_zip(dataset.id))) as opened:
        names = sorted(opened.namelist())
        texts = sorted(opened.read(n).decode() for n in names if n.endswith(".txt"))
    assert len(names) == 4 and texts == ["caption of photo.jpg", "caption of photo.png"]


def test_export_and_reimport_keep_every_image_with_its_caption(dataset):
    from core.datasets import captions

    datasets.import_files(dataset.id, [(f"pic{i}.png", image_bytes(seed=40 + i)) for i in range(3)])
    for index, image in enumerate(datasets.all_images(dataset.id)):
        captions.save_caption(image.id, f"ohwx woman, pose {index}")
    archive = datasets.export_training_zip(dataset.id)
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        names = sorted(opened.namelist())
        assert names == ["pic0.png", "pic0.txt", "pic1.png", "pic1.txt", "pic2.png", "pic2.txt"]
        assert opened.read("pic1.txt").decode() == "ohwx woman, pose 1"
    copy = datasets.create_dataset(name="Ava copy")
    report = datasets.import_files(copy.id, [("export.zip", archive)])
    assert len(report.added) == 3 and not report.errors
    assert sorted(i.caption for i in datasets.all_images(copy.id)) == [f"ohwx woman, pose {i}" for i in range(3)]


def test_status_follows_the_dataset_from_empty_to_ready_and_lists_filter_by_it(dataset):
    from core.datasets import captions
    from core.datasets.datasets import DatasetStatus

    assert datasets.get_dataset(dataset.id).status == DatasetStatus.EMPTY
    datasets.import_files(dataset.id, [(f"{i}.png", image_bytes(seed=110 + i)) for i in range(2)])
    assert datasets.get_dataset(dataset.id).status == DatasetStatus.NEEDS_CAPTIONS
    first, second = datasets.all_images(dataset.id)
    captions.save_caption(first.id, "ohwx woman")
    captions.save_caption(second.id, "ohwx woman smiling")
    assert datasets.get_dataset(dataset.id).status == DatasetStatus.NEEDS_REVIEW
    captions.set_reviewed(dataset.id, [first.id, second.id])
    assert datasets.get_dataset(dataset.id).status == DatasetStatus.READY
    assert [d.id for d in datasets.list_datasets(status=DatasetStatus.READY).items] == [dataset.id]
    assert datasets.list_datasets(status=DatasetStatus.EMPTY).total == 0


def test_the_long_filter_counts_clip_tokens(dataset):
    from core.datasets import captions

    datasets.import_files(dataset.id, [(f"{i}.png", image_bytes(seed=120 + i)) for i in range(2)])
    short, long = datasets.all_images(dataset.id)
    captions.save_caption(short.id, "ohwx woman " * 30)  # 60 tokens, 330 characters
    captions.save_caption(long.id, "ohwx woman " * 40)  # 80 tokens
    assert [i.id for i in datasets.list_images(dataset.id, which="long").items] == [long.id]
