"""The Assets page under AppTest, on real services: the library grid and its filters, selection and
the trash (move, restore, purge), collections (create, add, show), the detail view with lineage,
and the hand-over to the Videos page."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, update
from streamlit.testing.v1 import AppTest

from core.datasets import datasets
from core.db import session_scope
from core.infra.storage import get_object_store
from core.jobs import lifecycle as jobs
from core.library import assets, collections
from core.library.assets import AssetFilter, AssetSource
from core.models import Asset, Job, JobStatus, LoraModel
from core.training import runs as training
from tests.apptest import checked, click, open_page
from tests.factories import image_bytes
from ui.widgets import VIDEO_HANDOFF_KEY

ROOT = Path(__file__).resolve().parent.parent


def _view(at: AppTest, view: str) -> AppTest:
    at.session_state["assets.view"] = view
    return checked(at.run())


def _cards(at: AppTest) -> list[int]:
    """The asset ids of the grid's cards, in order."""
    return [int(box.key.rpartition(".")[2]) for box in at.checkbox if box.key and box.key.startswith("assets.pick.")]


def _texts(elements) -> list[str]:
    return [element.value for element in elements]


@pytest.fixture
def shelf(studio, tmp_path):
    """Three generated images from a LoRA trained on "Ava" (newest last), and the LoRA's file."""
    ava = datasets.create_dataset(name="Ava", trigger_word="ohwx woman")
    datasets.import_files(ava.id, [("0.png", image_bytes(64, 64, seed=1))])
    run = training.submit_training(dataset_id=ava.id, name="Ava v1")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / training.WEIGHTS_FILE).write_bytes(b"weights")
    lora = training.register_checkpoint(jobs.get_job(run.id), step=10, directory=folder, final=True, loss=0.1)
    with session_scope() as session:
        job = Job(kind="generate", queue="gpu", status=JobStatus.SUCCEEDED, payload={})
        session.add(job)
        session.execute(update(Job).where(Job.id == run.id).values(status=JobStatus.SUCCEEDED))
    prompts = ["ohwx woman on a beach", "ohwx woman in a cafe", "<b>ohwx</b> **woman** at night"]
    made = []
    for index, prompt in enumerate(prompts):
        meta = {"prompt": prompt, "negative_prompt": "blurry", "seed": 40 + index, "steps": 20,
                "loras": [{"id": lora.id, "name": lora.name, "strength": 0.8}], "job_id": job.id, "index": index}
        made.append(assets.store_image(f"jobs/{job.id}/images/{index:03d}.png", image_bytes(64, 64, seed=index),
                                       source=AssetSource.GENERATED, job_id=job.id, dataset_id=ava.id, prompt=prompt,
                                       meta=meta, loras=[(lora.id, 0.8)]))
    start = datetime.now(UTC) - timedelta(hours=1)
    with session_scope() as session:
        for index, asset in enumerate(made):
            moment = start + timedelta(minutes=index)
            session.execute(update(Asset).where(Asset.id == asset.id).values(created_at=moment))
    return {"images": made, "lora": lora, "lora_asset": assets.find_asset(lora.key), "job": job, "dataset": ava}


def test_an_empty_library_says_where_assets_come_from(studio):
    at = open_page("pages/assets.py")
    assert any("No assets yet" in i.value for i in at.info)
    _view(at, "trash")
    assert any("The trash is empty" in i.value for i in at.info)
    _view(at, "collections")
    assert any("No collections yet" in i.value for i in at.info)


def test_the_library_lists_every_asset_newest_first_with_thumbnails(shelf):
    images = shelf["images"]
    get_object_store().delete(images[0].key)  # the grid reads thumbnails only, never the files
    at = open_page("pages/assets.py")
    assert _cards(at) == [shelf["lora_asset"].id, *(a.id for a in reversed(images))]
    assert len(at.get("image")) == 3  # the LoRA file has an icon, not a picture
    assert not any("file missing" in c.value for c in at.caption)
    assert "<b>ohwx</b> **woman** at night" in _texts(at.text)  # prompts are plain text
    assert not any("<b>" in m.value for m in at.markdown)
    assert at.number_input(key="assets.page").label.startswith("Page (of 1) · 4 assets")


def test_filters_narrow_the_grid(shelf):
    at = open_page("pages/assets.py")
    at.text_input(key="assets.f.text").input("BEACH").run()
    assert _cards(checked(at)) == [shelf["images"][0].id]
    at.text_input(key="assets.f.text").input("").run()
    at.selectbox(key="assets.f.kind").set_value("lora").run()
    assert _cards(checked(at)) == [shelf["lora_asset"].id]
    at.selectbox(key="assets.f.kind").set_value(None).run()
    at.selectbox(key="assets.f.lora").set_value(shelf["lora"].id).run()
    assert len(_cards(checked(at))) == 4
    at.text_input(key="assets.f.job").input(shelf["job"].id[:8]).run()  # a prefix, as the Jobs page shows ids
    assert sorted(_cards(checked(at))) == sorted(a.id for a in shelf["images"])
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    at.date_input(key="assets.f.dates").set_value((tomorrow, tomorrow)).run()
    assert _cards(checked(at)) == []
    assert any("No assets match these filters" in i.value for i in at.info)


def test_an_unknown_job_id_is_refused_with_a_message(shelf):
    at = open_page("pages/assets.py")
    at.text_input(key="assets.f.job").input("ffff").run()
    assert any("no job id starts with 'ffff'" in e.value for e in checked(at).error)


def test_selected_assets_move_to_the_trash_and_are_restored_from_it(shelf):
    beach, cafe, _ = shelf["images"]
    at = open_page("pages/assets.py")
    assert at.button(key="assets.trash").disabled
    at.checkbox(key=f"assets.pick.{beach.id}").check().run()
    at.checkbox(key=f"assets.pick.{cafe.id}").check().run()
    click(at, "assets.trash")
    assert any("Moved 2 assets to the trash" in s.value for s in at.success)
    assert beach.id not in _cards(at) and cafe.id not in _cards(at)
    assert not at.checkbox(key=f"assets.pick.{shelf['images'][2].id}").value  # the selection was cleared

    _view(at, "trash")
    assert sorted(_cards(at)) == sorted([beach.id, cafe.id])
    at.checkbox(key=f"assets.pick.{beach.id}").check().run()
    click(at, "assets.restore")
    assert any("Restored 1 asset" in s.value for s in at.success)
    assert _cards(at) == [cafe.id]
    assert assets.get_asset(beach.id).deleted_at is None


def test_purging_from_the_trash_removes_the_files(shelf):
    beach, cafe, _ = shelf["images"]
    assets.trash_assets([beach.id, cafe.id])
    at = open_page("pages/assets.py", **{"assets.view": "trash"})
    at.checkbox(key=f"assets.pick.{beach.id}").check().run()
    assert at.button(key="assets.purge").disabled  # until confirmed
    at.checkbox(key="assets.purge_confirm").check().run()
    click(at, "assets.purge")
    assert any("Purged 1 asset for good" in s.value for s in at.success)
    assert not get_object_store().exists(beach.key) and not get_object_store().exists(beach.thumbnail_key or "")
    assert _cards(at) == [cafe.id]
    assert not at.checkbox(key="assets.purge_confirm").value  # the next purge asks again

    at.checkbox(key="assets.empty_confirm").check().run()
    click(at, "assets.empty")
    assert any("Purged 1 asset." in s.value.replace("\\", "") for s in at.success)
    assert any("The trash is empty" in i.value for i in at.info)
    assert not get_object_store().exists(cafe.key)


def test_a_collection_is_created_filled_and_opened(shelf):
    beach, cafe, _ = shelf["images"]
    at = open_page("pages/assets.py", **{"assets.view": "collections"})
    at.text_input(key="assets.col.new_name").input("Beach days")
    at.button(key="FormSubmitter:assets.new_collection-Create collection").click().run()
    assert any("Created collection 'Beach days'" in s.value.replace("\\", "") for s in checked(at).success)
    collection = collections.list_collections().items[0]

    _view(at, "library")
    at.checkbox(key=f"assets.pick.{beach.id}").check().run()
    at.checkbox(key=f"assets.pick.{cafe.id}").check().run()
    at.selectbox(key="assets.add_target").set_value(collection.id).run()
    click(at, "assets.add")
    assert any("Added 2 assets" in s.value for s in at.success)
    assert {a.id for a in assets.list_assets(AssetFilter(collection_id=collection.id)).items} == {beach.id, cafe.id}

    _view(at, "collections")
    assert at.dataframe[0].value.to_dict("records")[0]["assets"] == 2
    click(at, "assets.col.show")
    assert at.session_state["assets.view"] == "library"
    assert sorted(_cards(at)) == sorted([beach.id, cafe.id])
    at.checkbox(key=f"assets.pick.{cafe.id}").check().run()
    click(at, "assets.remove")
    assert _cards(at) == [beach.id]


def test_a_collection_is_renamed_and_deleted_without_touching_its_assets(shelf):
    collection = collections.create_collection(name="Old name")
    collections.add_to_collection(collection.id, [shelf["images"][0].id])
    at = open_page("pages/assets.py", **{"assets.view": "collections"})
    at.text_input(key=f"assets.col.name.{collection.id}").input("New name").run()
    click(at, "assets.col.rename")
    assert collections.get_collection(collection.id).name == "New name"
    at.checkbox(key=f"assets.col.confirm.{collection.id}").check().run()
    click(at, "assets.col.delete")
    assert collections.list_collections().total == 0
    assert assets.get_asset(shelf["images"][0].id).deleted_at is None


def test_the_detail_shows_lineage_metadata_and_a_download_link(shelf):
    beach = shelf["images"][0]
    at = open_page("pages/assets.py")
    click(at, f"assets.open.{beach.id}")
    assert any(h.value == f"Image #{beach.id}" for h in at.subheader)
    texts = _texts(at.text)
    assert "Dataset: Ava" in texts
    assert f"Job: generate {shelf['job'].id[:8]} (succeeded)" in texts
    assert "ohwx woman on a beach" in texts and "blurry" in texts
    loras = at.dataframe[0].value.to_dict("records")
    assert loras == [{"LoRA": shelf["lora"].name, "strength": 0.8, "step": 10, "status": "available"}]
    meta = {row["field"]: row["value"] for row in at.dataframe[1].value.to_dict("records")}
    assert meta["seed"] == "40" and meta["dimensions"] == "64×64" and meta["source"] == "generated"
    links = at.get("link_button")
    assert len(links) == 1 and f"/api/files/{beach.key}?expires=" in links[0].proto.url
    click(at, "assets.close")
    assert not at.subheader
    assert not at.get("download_button")  # an image has no kohya twin

    click(at, f"assets.open.{shelf['lora_asset'].id}")
    kohya = at.get("download_button")  # a LoRA file: also in kohya/A1111 format, built when clicked
    assert len(kohya) == 1 and "kohya" in kohya[0].proto.label

    with session_scope() as session:  # the same file as a FLUX.2 LoRA: kohya and ComfyUI/ai-toolkit files
        session.execute(update(LoraModel).where(LoraModel.id == shelf["lora"].id).values(family="flux2_klein"))
    at.run()
    labels = [button.proto.label for button in at.get("download_button")]
    assert labels == ["Download for ComfyUI (kohya format)", "Download for ComfyUI / ai-toolkit"]


def test_make_a_video_hands_the_selected_images_to_the_videos_page(shelf):
    beach, cafe, _ = shelf["images"]
    at = open_page("pages/assets.py")
    at.checkbox(key=f"assets.pick.{beach.id}").check().run()
    at.checkbox(key=f"assets.pick.{shelf['lora_asset'].id}").check().run()  # not an image: not handed over
    at.checkbox(key=f"assets.pick.{cafe.id}").check().run()
    click(at, "assets.video")
    assert sorted(at.session_state[VIDEO_HANDOFF_KEY]) == sorted([beach.id, cafe.id])


def test_the_page_stays_fast_with_ten_thousand_assets(studio):
    start = datetime.now(UTC) - timedelta(days=100)
    rows = [dict(kind=("image", "video", "lora")[i % 3], source="generated", key=f"bulk/{i:05d}.png",
                 content_type="image/png", size_bytes=1000 + i, prompt=f"prompt {i}", dataset_id=None, meta={},
                 created_at=start + timedelta(minutes=i), deleted_at=start if i % 10 == 0 else None)
            for i in range(10_000)]
    with session_scope() as session:
        session.execute(insert(Asset), rows)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    began = time.perf_counter()
    at.switch_page("pages/assets.py").run()
    first = time.perf_counter() - began
    checked(at)
    assert at.number_input(key="assets.page").label.startswith("Page (of 375) · 9000 assets")
    began = time.perf_counter()
    at.number_input(key="assets.page").set_value(300).run()
    at.text_input(key="assets.f.text").input("prompt 99").run()
    later = (time.perf_counter() - began) / 2
    assert len(_cards(checked(at))) == 24
    assert first < 3 and later < 3, (first, later)  # generous for shared CI machines; ~0.05 s here
