"""Installed base models are the choices where a model is picked: the LoRA config editor and the new-run wizard
(Training) and the request form (Generate) offer the installed models of the config's or template's family, with
family and format shown; a job naming one stores its name and the worker loads it through the same code as any
model. A reference that can never load (not installed, not a folder, not a hub id; another family; still
installing) is refused before any job is written; an uninstalled hub id is still queued (the worker downloads it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.datasets import datasets
from core.errors import InvalidInput
from core.generation import requests as generation
from core.jobs import lifecycle as jobs
from core.jobs import logs as joblogs
from core.models import JobStatus
from core.models_registry import install, registry
from core.training import runs as training
from core.training.configs import get_config_by_name, get_default_config
from tests.apptest import click, open_page, rerun
from tests.factories import image_bytes

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]


def _folder(root: Path, name: str, pipeline: str) -> Path:
    """A diffusers folder as the registry reads it (model_index.json; pickers never load weights)."""
    folder = root / name
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
    return folder


@pytest.fixture
def installed(studio, tmp_path):
    install.install_folder(path=str(_folder(tmp_path, "a", "StableDiffusionPipeline")), name="house-sd15")
    install.install_folder(path=str(_folder(tmp_path, "b", "StableDiffusionXLPipeline")), name="house-sdxl")
    registry.begin_install(name="half-sd15", family="sd15", source_kind="hub", source="o/half", fmt="diffusers")
    dataset = datasets.create_dataset(name="Ava", trigger_word="ohwx woman")
    datasets.import_files(dataset.id, [("0.png", image_bytes(seed=1))])
    return dataset


def test_the_config_editor_and_the_wizard_offer_the_installed_models_of_the_family(installed):
    default = get_default_config()  # SD 1.5 Standard
    at = open_page("pages/training.py", **{"training.section": "configs"})
    picker = at.selectbox(key=f"training.configs.edit.{default.id}.base_model.installed")
    # Ready models of the config's family only, with family and format; the hub id it names stays typed.
    assert picker.options == ["house-sd15 · Stable Diffusion 1.x · diffusers folder", "Hub id or folder…"]
    assert picker.value == "" and at.text_input(key=f"training.configs.edit.{default.id}.base_model").value == \
        "stable-diffusion-v1-5/stable-diffusion-v1-5"
    picker.set_value("house-sd15").run()
    at = click(at, "training.configs.save")
    assert get_config_by_name(default.name).params["base_model"] == "house-sd15"

    at = open_page("pages/training.py", **{"training.dataset_id": installed.id})
    at = click(at, "training.wizard.next.1")
    at = click(at, "training.wizard.next.2")
    assert at.selectbox(key=f"training.wizard.p{default.id}.base_model.installed").value == "house-sd15"
    at = click(at, "training.wizard.next.3")
    at = click(at, "training.wizard.next.4")
    [run] = training.list_runs().items
    assert run.payload["params"]["base_model"] == "house-sd15"


def test_the_generate_form_offers_the_templates_family_and_submits_the_chosen_model(installed):
    at = open_page("pages/generate.py")
    at.selectbox(key="generate.template").set_value("tiny-lora").run()
    picker = at.selectbox(key="generate.base_model.tiny-lora")
    assert picker.options == ["The template's own", "house-sd15 · Stable Diffusion 1.x · diffusers folder"]
    assert picker.help.endswith("or the template's own: tiny-sd15.")
    picker.set_value("house-sd15").run()
    at.text_area(key=next(t.key for t in at.text_area if t.label == "Prompt")).input("at the beach")
    at = rerun(at)
    at = click(at, "generate.submit")
    [job] = generation.list_generations().items
    assert (job.payload["base_model"], job.payload["family"]) == ("house-sd15", "sd15")
    at.selectbox(key="generate.template").set_value("sdxl-lora").run()
    assert at.selectbox(key="generate.base_model.sdxl-lora").options == [
        "The template's own", "house-sdxl · Stable Diffusion XL · diffusers folder"]


def test_a_base_model_that_can_never_load_is_refused_before_a_job_is_written(installed, tmp_path):
    refusals = {
        "nothing-here": "is not installed, not a folder on this machine and not a hub id",
        "house-sdxl": "is a Stable Diffusion XL model; this needs a Stable Diffusion 1.x one",
        "half-sd15": "is installing; choose a ready model",
        str(_folder(tmp_path, "c", "ZImagePipeline")): "is a Z-Image folder",
    }
    base = {**get_default_config().params}
    for name, why in refusals.items():
        with pytest.raises(InvalidInput, match=why):
            training.submit_training(dataset_id=installed.id, params={**base, "base_model": name})
        with pytest.raises(InvalidInput, match=why):
            generation.submit_generation(template="tiny-lora", prompt="a cat", base_model=name)
    assert jobs.list_jobs().total == 0  # nothing written
    # A hub id that is not installed is queued as before: the GPU worker downloads it.
    assert training.submit_training(dataset_id=installed.id, params={**base, "base_model": "owner/new-model"})
    assert generation.submit_generation(template="tiny-lora", prompt="a cat", base_model="owner/new-model")


def test_a_generation_job_naming_an_installed_single_file_checkpoint_loads_it(studio, tiny_models, tmp_path):
    from tests.single_file import to_single_file
    from workers.generation import generate
    from workers.models import install_model

    checkpoint = to_single_file(tiny_models["sd15"], tmp_path / "civitai-look.safetensors")
    _, job = install.submit_single_file(path=str(checkpoint), config=str(tiny_models["sd15"]))
    jobs.execute_job(job.id, install_model)
    assert registry.get_model("civitai-look").status == "ready"
    job = generation.submit_generation(template="tiny-lora", prompt="a cat", base_model="civitai-look", width=64,
                                       height=64, steps=2, seed=3, loras=[])
    jobs.execute_job(job.id, generate)  # what the gpu queue's generate actor runs
    done = jobs.get_job(job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    logged = " ".join(entry.message for entry in joblogs.read_logs(job.id).entries)
    assert done.result["images"] == 1 and f"model {registry.owned_path('civitai-look')} (sd15)" in logged
