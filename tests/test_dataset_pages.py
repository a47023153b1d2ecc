"""The Datasets and Captions pages under AppTest, on real services."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.datasets import captions, datasets
from core.jobs import lifecycle as jobs
from tests.factories import image_bytes

ROOT = Path(__file__).resolve().parent.parent


def _page(path: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    at.switch_page(path).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.fixture
def ava(studio):
    dataset = datasets.create_dataset(name="Ava", trigger_word="ohwx woman")
    datasets.import_files(dataset.id, [(f"{i}.png", image_bytes(seed=70 + i)) for i in range(3)])
    return dataset


def test_creating_a_dataset_from_the_page(studio):
    at = _page("pages/datasets.py")
    at.text_input[0].input("Mia")
    at.text_input[1].input("ohwx girl")
    at.button(key="FormSubmitter:datasets.new-Create dataset").click().run()
    assert not at.exception
    created = datasets.list_datasets().items
    assert [(d.name, d.trigger_word) for d in created] == [("Mia", "ohwx girl")]


def test_a_duplicate_name_shows_a_clear_error_and_creates_nothing(ava):
    at = _page("pages/datasets.py")
    at.text_input[0].input("Ava")
    at.button(key="FormSubmitter:datasets.new-Create dataset").click().run()
    assert any("already exists" in e.value for e in at.error)
    assert datasets.list_datasets().total == 1


def test_dataset_detail_shows_gallery_check_and_queues_captioning(ava):
    at = _page("pages/datasets.py")
    assert at.selectbox(key="datasets.open").value == ava.id
    assert len(at.get("imgs")) >= 3 or len(at.get("image")) >= 3
    assert [t.value for t in at.text][:3] == ["(no caption)"] * 3
    assert any(m.label == "missing caption" and m.value == "3" for m in at.metric)
    at.button(key="FormSubmitter:datasets.caption-Caption images").click().run()
    assert not at.exception
    queued = jobs.list_jobs(kinds=["caption"]).items
    assert len(queued) == 1 and queued[0].payload["dataset_id"] == ava.id and queued[0].queue == "gpu"


def test_html_in_a_caption_is_shown_as_text(ava):
    image = datasets.all_images(ava.id)[0]
    captions.save_caption(image.id, '<img src=x onerror="alert(1)"> **bold**')
    at = _page("pages/datasets.py")
    assert '<img src=x onerror="alert(1)"> **bold**' in [t.value for t in at.text]
    assert not any("onerror" in m.value for m in at.markdown)


def test_the_demo_dataset_button_creates_fifteen_images(studio):
    at = _page("pages/datasets.py")
    at.button(key="datasets.demo").click().run()
    assert not at.exception
    demo = datasets.list_datasets().items[0]
    assert demo.image_count == 15


def test_captions_page_edits_survive_paging_and_save(ava):
    first = datasets.all_images(ava.id)[0]
    at = _page("pages/captions.py")
    at.selectbox(key="captions.per_page").set_value(12).run()
    at.text_area(key=f"captions.text.{first.id}").input("ohwx woman on a beach").run()
    assert any("1 unsaved edit" in w.value for w in at.warning)
    assert datasets.all_images(ava.id)[0].caption == ""  # not saved yet
    at.button(key="captions.save_all").click().run()
    assert not at.exception
    assert datasets.all_images(ava.id)[0].caption == "ohwx woman on a beach"
    assert datasets.all_images(ava.id)[0].caption_source == "manual"


def test_captions_page_counts_clip_tokens_and_warns_when_too_long(ava):
    image = datasets.all_images(ava.id)[0]
    captions.save_caption(image.id, "ohwx woman " + "very " * 90)
    at = _page("pages/captions.py")
    assert any("over 75" in w.value for w in at.warning)
    assert any("CLIP tokens" in c.value for c in at.caption)


def test_captions_page_bulk_replace_previews_then_applies(ava):
    for image in datasets.all_images(ava.id):
        captions.save_caption(image.id, "a woman in red")
    at = _page("pages/captions.py")
    at.selectbox(key="bulk.op").set_value("replace").run()
    at.text_input(key="bulk.find").input("red").run()
    at.text_input(key="bulk.replace").input("blue").run()
    assert any("changes **3** of 3" in m.value for m in at.markdown)
    at.button(key="bulk.apply").click().run()
    assert [i.caption for i in datasets.all_images(ava.id)] == ["a woman in blue"] * 3


def test_train_a_lora_on_this_dataset_opens_training_with_it_selected(ava):
    at = _page("pages/datasets.py")
    at.button(key="datasets.train").click().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Training"]
    assert any("Dataset selected for training: Ava (3 images)" in s.value for s in at.success)


def test_a_dataset_created_while_another_is_open_becomes_the_open_one_and_the_upload_target(ava):
    at = _page("pages/datasets.py")
    assert at.selectbox(key="datasets.open").value == ava.id
    at.text_input[0].input("Mia")
    at.button(key="FormSubmitter:datasets.new-Create dataset").click().run()
    assert not at.exception
    mia = next(d for d in datasets.list_datasets().items if d.name == "Mia")
    assert at.selectbox(key="datasets.open").value == mia.id
    assert [h.value for h in at.subheader] == ["Mia"]
    assert any(c.value == "Uploads go into the dataset **Mia**." for c in at.caption)
    at.run()  # and it stays open on the next rerun
    assert at.selectbox(key="datasets.open").value == mia.id


def test_choosing_another_dataset_in_the_picker_opens_it(ava):
    other = datasets.create_dataset(name="Mia")
    at = _page("pages/datasets.py")
    at.selectbox(key="datasets.open").set_value(other.id).run()
    assert [h.value for h in at.subheader] == ["Mia"]
    at.selectbox(key="datasets.open").set_value(ava.id).run()
    assert [h.value for h in at.subheader] == ["Ava"]


def test_the_check_tab_queues_the_face_fingerprint_of_the_open_dataset(ava):
    from core.jobs import lifecycle as jobs

    at = _page("pages/datasets.py")
    assert any("has no face fingerprint yet" in c.value for c in at.caption)
    at.button(key="datasets.fingerprint").click().run()
    assert not at.exception
    job = jobs.get_job(at.session_state[f"datasets.fingerprint_job.{ava.id}"])
    assert job.kind == "fingerprint" and job.payload["dataset_id"] == ava.id
