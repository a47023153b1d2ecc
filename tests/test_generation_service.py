"""Generation requests without a worker: resolution into a complete payload, trigger words, LoRA
checks, PNG metadata, "reuse these settings", and the prompt library."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from api.routes import api_routes
from core.datasets.datasets import create_dataset, import_files
from core.db import session_scope
from core.errors import Conflict, InvalidInput
from core.generation import prompt_library
from core.generation import requests as generation
from core.generation.requests import GeneratePayload
from core.generation.templates import get_template
from core.jobs import lifecycle as jobs
from core.library import assets
from core.library.assets import AssetSource
from core.models import Character, Job
from core.training import runs as training
from tests.conftest import TEST_API_TOKEN
from tests.factories import image_bytes

both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def ava(studio):
    with session_scope() as session:
        character = Character(name="Ava", trigger_word="ohwx woman")
        session.add(character)
        session.flush()
        character_id = character.id
    dataset = create_dataset(name="Ava", trigger_word="ohwx woman")
    import_files(dataset.id, [(f"{i}.png", image_bytes(64, 64, seed=i)) for i in range(2)])
    return character_id, dataset


def _lora(tmp_path, dataset, *, family="sd15", character_id=None, step=10):
    job = training.submit_training(dataset_id=dataset.id)
    with session_scope() as session:
        row = session.get(Job, job.id)
        row.character_id = character_id
        if family == "sdxl":
            row.payload = {**row.payload, "params": {**row.payload["params"], "family": "sdxl"}}
        session.add(row)
    folder = tmp_path / f"{job.id}-{step}"
    folder.mkdir()
    (folder / training.WEIGHTS_FILE).write_bytes(b"weights")
    return training.register_checkpoint(jobs.get_job(job.id), step=step, directory=folder, final=True, loss=0.1)


def _job_count() -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(Job)).scalar_one()


@both_databases
def test_a_request_is_stored_with_every_value_filled_from_the_template(ava, tmp_path):
    _, dataset = ava
    lora = _lora(tmp_path, dataset)
    job = generation.submit_generation(template="tiny-lora", prompt="at the beach", loras=[{"lora_id": lora.id}])
    payload = GeneratePayload.model_validate(job.payload)
    template = get_template("tiny-lora")
    assert job.kind == "generate" and job.queue == "gpu"
    assert (payload.steps, payload.cfg, payload.scheduler) == (template.steps, template.cfg, template.scheduler)
    assert (payload.width, payload.height, payload.negative_prompt) == (128, 128, template.negative_prompt)
    assert payload.base_model == "tiny-sd15" and payload.family == "sd15"
    assert payload.loras[0].strength == template.lora_strength
    assert payload.batch_size == template.batch_size
    assert isinstance(payload.seed, int) and 0 <= payload.seed < 2**32, "the seed is chosen and stored up front"
    assert payload.prompt == "ohwx woman, at the beach", "the LoRA's trigger word is put in"


def test_overrides_win_and_a_seed_given_is_kept(ava, tmp_path):
    job = generation.submit_generation(template="tiny-lora", prompt="p", loras=[], steps=3, cfg=1.5, width=64,
                                       height=96, scheduler="DDIM", seed=1234, negative_prompt="", count=5)
    assert {k: job.payload[k] for k in ("steps", "cfg", "width", "height", "scheduler", "seed", "negative_prompt",
                                        "count")} == {"steps": 3, "cfg": 1.5, "width": 64, "height": 96,
                                                      "scheduler": "ddim", "seed": 1234, "negative_prompt": "",
                                                      "count": 5}


@pytest.mark.parametrize(("prompt", "triggers", "expected"), [
    ("at the beach", ["ohwx"], "ohwx, at the beach"),
    ("OHWX at the beach", ["ohwx"], "OHWX at the beach"),
    ("ohwxy at the beach", ["ohwx"], "ohwx, ohwxy at the beach"),
    ("photo", ["a", "b", "a", ""], "a, b, photo"),
    ("photo of ohwx woman", ["ohwx woman"], "photo of ohwx woman"),
])
def test_trigger_words_are_added_only_when_missing(prompt, triggers, expected):
    assert generation.insert_trigger_words(prompt, triggers) == expected


def test_trigger_insertion_can_be_turned_off(ava, tmp_path):
    lora = _lora(tmp_path, ava[1])
    job = generation.submit_generation(template="tiny-lora", prompt="plain", loras=[{"lora_id": lora.id}],
                                       insert_trigger=False)
    assert job.payload["prompt"] == "plain"


@both_databases
def test_bad_requests_are_refused_and_write_no_job(ava, tmp_path):
    _, dataset = ava
    sdxl = _lora(tmp_path, dataset, family="sdxl")
    sd15 = _lora(tmp_path, dataset, step=20)
    before = _job_count()
    cases = [
        (dict(template="tiny-lora", loras=[{"lora_id": sdxl.id}]), "is for sdxl but template 'tiny-lora' is for sd15"),
        (dict(template="tiny-lora", loras=[{"lora_id": 9999}]), "LoRA 9999 does not exist"),
        (dict(template="tiny-lora", loras=[{"lora_id": sd15.id}, {"lora_id": sd15.id, "strength": 0.5}]),
         "listed twice"),
        (dict(template="no-such-template"), "no generation template 'no-such-template'"),
        (dict(template="tiny-lora", width=100), "not a multiple of 8"),
        (dict(template="tiny-lora", scheduler="k_euler"), "unknown scheduler"),
        (dict(template="tiny-lora", init_asset_id=4242), "asset 4242 does not exist"),
        (dict(template="tiny-lora", collection_id=77), "collection 77"),
    ]
    for fields, fragment in cases:
        with pytest.raises(InvalidInput) as refused:
            generation.submit_generation(prompt="p", **fields)
        assert fragment in str(refused.value), fields
    with pytest.raises(InvalidInput, match="prompt"):
        generation.submit_generation(template="tiny-lora", prompt="   ")
    with pytest.raises(InvalidInput, match="strength"):
        jobs.create_job("generate", {"prompt": "p", "loras": [{"lora_id": sd15.id, "strength": 5}]})
    assert _job_count() == before


def test_without_loras_named_the_characters_promoted_lora_is_used(ava, tmp_path):
    character_id, dataset = ava
    older = _lora(tmp_path, dataset, character_id=character_id, step=10)
    promoted = _lora(tmp_path, dataset, character_id=character_id, step=20)
    training.promote_lora(promoted.id)
    job = generation.submit_generation(template="tiny-lora", prompt="p", character_id=character_id)
    assert [lora["lora_id"] for lora in job.payload["loras"]] == [promoted.id] != [older.id]
    assert job.character_id == character_id
    bare = generation.submit_generation(template="tiny-lora", prompt="p", character_id=character_id, loras=[])
    assert bare.payload["loras"] == [] and bare.payload["prompt"] == "p"


def test_the_default_template_follows_the_loras_family(ava, tmp_path):
    sdxl = _lora(tmp_path, ava[1], family="sdxl")
    job = generation.submit_generation(prompt="p", loras=[{"lora_id": sdxl.id, "strength": 0.4}])
    assert job.payload["template"] == "sdxl-lora" and job.payload["width"] == 1024
    assert job.payload["loras"] == [{"lora_id": sdxl.id, "strength": 0.4}]


def test_img2img_needs_an_image_asset_that_is_not_in_the_trash(ava, tmp_path):
    image = assets.store_image("uploads/start.png", image_bytes(64, 64), source=AssetSource.UPLOAD)
    job = generation.submit_generation(template="tiny-lora", prompt="p", init_asset_id=image.id,
                                       img2img_strength=0.3)
    assert job.payload["init_asset_id"] == image.id and job.payload["img2img_strength"] == 0.3
    with pytest.raises(InvalidInput, match="runs no denoising step"):
        generation.submit_generation(template="tiny-lora", prompt="p", init_asset_id=image.id, img2img_strength=0.05,
                                     steps=10)
    lora_file = _lora(tmp_path, ava[1])
    lora_asset = assets.find_asset(lora_file.key)
    with pytest.raises(InvalidInput, match="not an image"):
        generation.submit_generation(template="tiny-lora", prompt="p", init_asset_id=lora_asset.id)


def test_png_metadata_round_trips_and_reads_like_automatic1111(ava, tmp_path):
    lora = _lora(tmp_path, ava[1])
    job = generation.submit_generation(template="tiny-lora", prompt="red dress", loras=[{"lora_id": lora.id,
                                                                                        "strength": 0.75}], seed=7)
    payload = GeneratePayload.model_validate(job.payload)
    uses = generation.lora_uses(payload)
    picture = Image.new("RGB", (128, 128), (200, 30, 30))
    asset = generation.save_generated_image(jobs.get_job(job.id), payload, uses, index=2, image=picture)
    png = assets.read_asset(asset)
    assert generation.read_png_metadata(png) == asset.meta
    assert asset.meta["seed"] == 9, "image 2 of a job with seed 7"
    assert asset.meta["loras"][0]["dataset_id"] == ava[1].id and asset.dataset_id == ava[1].id
    assert (asset.width, asset.height, asset.source, asset.prompt) == (128, 128, "generated", payload.prompt)
    parameters = Image.open(io.BytesIO(png)).text["parameters"]
    assert parameters.startswith(f"{payload.prompt} <lora:{lora.name}:0.75>\nNegative prompt: blurry\n")
    assert "Steps: 12, Sampler: Euler a, CFG scale: 5, Seed: 9, Size: 128x128, Model: tiny-sd15" in parameters
    assert generation.saved_indexes(job.id) == {2}
    again = generation.save_generated_image(jobs.get_job(job.id), payload, uses, index=2, image=picture)
    assert again.id == asset.id and [a.id for a in generation.job_images(job.id)] == [asset.id]
    assert assets.read_thumbnail(asset)[:3] == b"\xff\xd8\xff", "a JPEG thumbnail is stored beside it"


def test_reusing_an_images_settings_makes_the_same_request(ava, tmp_path):
    lora = _lora(tmp_path, ava[1])
    first = generation.submit_generation(template="tiny-lora", prompt="p", loras=[{"lora_id": lora.id}], seed=40,
                                         count=3, steps=4)
    payload = GeneratePayload.model_validate(first.payload)
    picture = Image.new("RGB", (128, 128))
    third = generation.save_generated_image(jobs.get_job(first.id), payload, generation.lora_uses(payload), index=2,
                                            image=picture)
    again = generation.submit_generation(**generation.reuse_request(third.meta))
    assert again.payload["seed"] == 42 and again.payload["count"] == 1
    same = ("prompt", "negative_prompt", "steps", "cfg", "scheduler", "width", "height", "template", "loras")
    assert {k: again.payload[k] for k in same} == {k: first.payload[k] for k in same}


def test_a_generation_is_started_over_the_api_by_template_name(ava, tmp_path):
    lora = _lora(tmp_path, ava[1])
    with TestClient(Starlette(routes=api_routes())) as client:
        auth = {"Authorization": f"Bearer {TEST_API_TOKEN}"}
        created = client.post("/api/jobs", headers=auth, json={"kind": "generate", "payload": {
            "template": "tiny-lora", "prompt": "n8n says hi", "loras": [{"lora_id": lora.id}], "count": 2}})
        refused = client.post("/api/jobs", headers=auth, json={"kind": "generate", "payload": {
            "template": "nope", "prompt": "x"}})
    assert created.status_code == 201, created.text
    assert created.json()["payload"]["prompt"] == "ohwx woman, n8n says hi"
    assert refused.status_code == 422 and "no generation template 'nope'" in refused.json()["error"]


def test_the_prompt_library_keeps_named_snippets_apart_by_box(studio):
    light = prompt_library.create_snippet(name="Golden hour", text="golden hour,   warm light")
    prompt_library.create_snippet(name="No text", text="text, watermark", negative=True)
    assert light.text == "golden hour, warm light"
    assert [s.name for s in prompt_library.list_snippets(negative=False).items] == ["Golden hour"]
    assert [s.name for s in prompt_library.list_snippets(negative=True).items] == ["No text"]
    with pytest.raises(Conflict):
        prompt_library.create_snippet(name="Golden hour", text="again")
    with pytest.raises(InvalidInput):
        prompt_library.create_snippet(name=" ", text="x")
    assert prompt_library.insert_snippet("ohwx, beach", light.text) == "ohwx, beach, golden hour, warm light"
    assert prompt_library.insert_snippet("ohwx, golden hour, warm light", light.text) == \
        "ohwx, golden hour, warm light", "a snippet already there is not added twice"
    prompt_library.delete_snippet(light.id)
    assert prompt_library.list_snippets().total == 1


def test_reference_images_go_only_to_a_family_that_edits_from_them(ava, tmp_path):
    image = assets.store_image("uploads/ref.png", image_bytes(64, 64), source=AssetSource.UPLOAD)
    job = generation.submit_generation(template="tiny-flux2-klein", prompt="p", loras=[],
                                       reference_asset_ids=[image.id])
    assert job.payload["reference_asset_ids"] == [image.id] and job.payload["family"] == "flux2_klein"
    meta = generation.image_metadata(GeneratePayload.model_validate(job.payload), [], job_id=job.id, index=0)
    assert generation.reuse_request(meta)["reference_asset_ids"] == [image.id], "reuse keeps the references"
    with pytest.raises(InvalidInput, match="Z-Image takes no reference image"):
        generation.submit_generation(template="tiny-z-image", prompt="p", loras=[], reference_asset_ids=[image.id])
    with pytest.raises(InvalidInput, match="reference image: asset 4242 does not exist"):
        generation.submit_generation(template="tiny-flux2-klein", prompt="p", loras=[], reference_asset_ids=[4242])
    with pytest.raises(InvalidInput, match=r"FLUX\.2 \[klein\] 4B has no img2img pipeline"):
        generation.submit_generation(template="tiny-flux2-klein", prompt="p", loras=[], init_asset_id=image.id)
