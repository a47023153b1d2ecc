"""The Generate page under AppTest, on real services: the form follows the template, submits a complete
request, and the result cards reuse settings, start img2img, collect and hand images to the video page."""

from __future__ import annotations

import pytest
from PIL import Image

from core.datasets.datasets import create_dataset, import_files
from core.generation import prompt_library
from core.generation import requests as generation
from core.generation.requests import GeneratePayload
from core.generation.templates import get_template
from core.jobs import lifecycle as jobs
from core.library.collections import create_collection, list_collections
from core.training import runs as training
from tests.apptest import ROOT, open_page, rerun
from tests.factories import image_bytes
from ui.generate import FORM, strength_field
from ui.widgets import VIDEO_HANDOFF_KEY


def field(at, name: str) -> str:
    """The key of a form field the page loads values into (it moves with each load: ui.generate)."""
    return FORM.key(name, at.session_state)


@pytest.fixture
def lora(studio, tmp_path):
    dataset = create_dataset(name="Ava", trigger_word="ohwx woman")
    import_files(dataset.id, [("0.png", image_bytes(64, 64))])
    job = jobs.get_job(training.submit_training(dataset_id=dataset.id, name="Ava v1").id)
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / training.WEIGHTS_FILE).write_bytes(b"weights")
    lora = training.register_checkpoint(job, step=60, directory=folder, final=True, loss=0.1)
    return training.promote_lora(lora.id)


def _generated(lora, *, count: int = 2, seed: int = 5) -> list:
    job = generation.submit_generation(template="tiny-lora", prompt="at the beach", seed=seed, count=count,
                                       loras=[{"lora_id": lora.id, "strength": 0.6}])
    payload = GeneratePayload.model_validate(job.payload)
    uses = generation.lora_uses(payload)
    return [generation.save_generated_image(jobs.get_job(job.id), payload, uses, index=i,
                                            image=Image.new("RGB", (128, 128), (40 * i, 90, 200)))
            for i in range(count)]


def test_the_form_starts_from_the_promoted_loras_template_and_submits_a_complete_request(lora):
    at = open_page("pages/generate.py")
    template = get_template("sd15-lora")
    assert at.selectbox(key="generate.template").value == "sd15-lora"
    assert at.multiselect(key=field(at, "loras")).value == [lora.id], "the promoted LoRA is picked by default"
    assert at.number_input(key=field(at, "steps")).value == template.steps
    assert at.text_area(key=field(at, "negative")).value == template.negative_prompt

    at.selectbox(key="generate.template").set_value("tiny-lora")
    rerun(at)
    assert at.number_input(key=field(at, "steps")).value == get_template("tiny-lora").steps
    assert at.number_input(key=field(at, "width")).value == 128, "picking a template loads its settings"

    at.text_area(key=field(at, "prompt")).input("red dress, city at night")
    at.slider(key=field(at, strength_field(lora.id))).set_value(0.45)
    at.number_input(key=field(at, "count")).set_value(3)
    at.button(key="generate.submit").click()
    rerun(at)
    [job] = generation.list_generations().items
    assert job.payload["prompt"] == "ohwx woman, red dress, city at night"
    assert job.payload["loras"] == [{"lora_id": lora.id, "strength": 0.45}]
    assert (job.payload["count"], job.payload["width"], job.payload["template"]) == (3, 128, "tiny-lora")
    assert isinstance(job.payload["seed"], int), "a random seed is chosen and stored"
    assert "ohwx woman, red dress, city at night" in [t.value for t in at.text]


def test_an_empty_prompt_is_refused_on_the_page_and_queues_nothing(lora):
    at = open_page("pages/generate.py")
    at.button(key="generate.submit").click()
    rerun(at)
    assert any("prompt" in e.value for e in at.error)
    assert generation.list_generations().total == 0


def test_a_fixed_seed_is_submitted_as_given(lora):
    at = open_page("pages/generate.py")
    at.text_area(key=field(at, "prompt")).input("p")
    at.segmented_control(key=field(at, "seed_mode")).set_value("Fixed")
    rerun(at)
    at.number_input(key=field(at, "seed")).set_value(31337)
    at.button(key="generate.submit").click()
    rerun(at)
    assert generation.list_generations().items[0].payload["seed"] == 31337


def test_snippets_from_the_prompt_library_are_inserted_and_saved(lora):
    snippet = prompt_library.create_snippet(name="Golden hour", text="golden hour, warm light")
    at = open_page("pages/generate.py")
    at.text_area(key=field(at, "prompt")).input("ohwx woman, beach")
    at.selectbox(key="generate.prompt.snippet").set_value(snippet.id)
    at.button(key="generate.prompt.insert").click()
    rerun(at)
    assert at.text_area(key=field(at, "prompt")).value == "ohwx woman, beach, golden hour, warm light"
    at.text_area(key=field(at, "negative")).input("text, watermark")
    at.text_input(key="generate.negative.snippet_name").input("No text")
    at.button(key="generate.negative.save").click()
    rerun(at)
    assert [s.text for s in prompt_library.list_snippets(negative=True).items] == ["text, watermark"]


def test_result_cards_reuse_settings_and_start_img2img(lora):
    first, second = _generated(lora)
    at = open_page("pages/generate.py")
    captions = [c.value for c in at.caption]
    assert any("seed 6 · CFG" in c and "12 steps" in c for c in captions), captions  # the card's two lines
    at.button(key=f"generate.reuse.{second.id}").click()
    rerun(at)
    assert at.text_area(key=field(at, "prompt")).value == "ohwx woman, at the beach"
    assert at.segmented_control(key=field(at, "seed_mode")).value == "Fixed"
    assert at.number_input(key=field(at, "seed")).value == 6
    assert at.selectbox(key="generate.template").value == "tiny-lora"
    assert at.slider(key=field(at, strength_field(lora.id))).value == 0.6

    at.button(key=f"generate.start.{first.id}").click()
    rerun(at)
    at.slider(key=field(at, "img2img_strength")).set_value(0.3)
    at.button(key="generate.submit").click()
    rerun(at)
    newest = generation.list_generations().items[0]
    assert newest.payload["init_asset_id"] == first.id and newest.payload["img2img_strength"] == 0.3
    assert newest.payload["seed"] == 6 and newest.payload["count"] == 1


def test_selected_images_go_to_a_collection_and_to_the_video_page(lora):
    first, second = _generated(lora)
    collection = create_collection(name="Beach week")
    at = open_page("pages/generate.py")
    at.selectbox(key=f"generate.collection.{first.id}").set_value(collection.id)
    at.button(key=f"generate.collect.{first.id}").click()
    rerun(at)
    assert list_collections().items[0].id == collection.id
    from core.library.assets import AssetFilter, list_assets

    assert [a.id for a in list_assets(AssetFilter(collection_id=collection.id)).items] == [first.id]

    at.checkbox(key=f"generate.select.{first.id}").check()
    at.checkbox(key=f"generate.select.{second.id}").check()
    rerun(at)
    at.button(key="generate.to_video").click()
    rerun(at)
    assert sorted(at.session_state[VIDEO_HANDOFF_KEY]) == sorted([first.id, second.id])
    assert at.title[0].value == "Videos"


def test_a_refused_template_file_is_listed_and_the_others_still_work(lora, tmp_path, monkeypatch):
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "tiny-lora.yaml").write_text((ROOT / "workflows/generation/tiny-lora.yaml").read_text())
    (folder / "broken.yaml").write_text("family: sd15\nbase_model: x\nwidth: 100\n")
    monkeypatch.setenv("STUDIO_TEMPLATES_DIR", str(folder))
    from core.config import reload_settings

    reload_settings()
    at = open_page("pages/generate.py")
    assert at.selectbox(key="generate.template").options == ["Tiny (offline demo) (tiny-lora)"]
    assert any("broken.yaml: width: 100 is not a multiple of 8" in t.value for t in at.text)


def test_the_new_families_templates_are_listed_and_offer_only_their_own_sampler(studio):
    at = open_page("pages/generate.py")
    options = at.selectbox(key="generate.template").options
    for name in ("z-image-turbo", "flux2-klein", "qwen-image", "tiny-z-image"):
        assert any(option.endswith(f"({name})") for option in options), name
    assert at.selectbox(key="generate.template").value == "sd15-lora", "no LoRA promoted: the default family"

    at.selectbox(key="generate.template").set_value("tiny-z-image")
    rerun(at)
    assert at.selectbox(key=field(at, "scheduler")).options == ["Flow Euler"]
    assert at.number_input(key=field(at, "steps")).value == get_template("tiny-z-image").steps
    at.text_area(key=field(at, "prompt")).input("at the beach")
    at.button(key="generate.submit").click()
    rerun(at)
    [job] = generation.list_generations().items
    assert (job.payload["family"], job.payload["scheduler"], job.payload["template"]) == \
        ("z_image", "flow_euler", "tiny-z-image")


def test_with_klein_the_characters_reference_images_condition_the_request_and_can_be_left_out(studio):
    """Reference-image consistency (issue 23, point 5): a FLUX.2 [klein] template offers the current character's
    reference images; on, they go into the request (the likeness scoring of results is the generation job's)."""
    from core.characters.characters import current_character
    from core.characters.references import add_reference_image

    character = current_character()
    ids = [add_reference_image(character_id=character.id, data=image_bytes(64, 64, seed=seed),
                               filename=f"face{seed}.png").id for seed in (1, 2)]
    at = open_page("pages/generate.py")
    at.selectbox(key="generate.template").set_value("tiny-z-image")
    rerun(at)
    assert not [t for t in at.toggle if "reference image" in t.label]  # Z-Image does not edit from references
    at.selectbox(key="generate.template").set_value("tiny-flux2-klein")
    rerun(at)
    [toggle] = [t for t in at.toggle if "reference image" in t.label]
    assert toggle.value and "2 reference image(s)" in toggle.label
    at.text_area(key=field(at, "prompt")).input("at the beach")
    at.button(key="generate.submit").click()
    rerun(at)
    [job] = generation.list_generations().items
    assert job.payload["reference_asset_ids"] == ids

    [toggle] = [t for t in at.toggle if "reference image" in t.label]
    toggle.set_value(False)
    rerun(at)
    at.button(key="generate.submit").click()
    rerun(at)
    latest = generation.list_generations().items[0]
    assert latest.id != job.id and not latest.payload.get("reference_asset_ids")
