"""LoRA configs on real databases: presets, validation, names, the one default, clone, delete guard."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from core.datasets.datasets import create_dataset, import_files
from core.db import session_scope
from core.errors import Conflict, InvalidInput
from core.jobs import lifecycle as jobs
from core.models import LoraConfig
from core.training import configs as lora_configs
from core.training.params import LoraParams, available_optimizers, parse_params
from tests.factories import image_bytes

both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


def _defaults() -> list[str]:
    return [c.name for c in lora_configs.list_configs(page_size=100).items if c.is_default]


@both_databases
def test_first_start_seeds_the_presets_with_one_default(studio):
    configs = {c.name: lora_configs.params_of(c) for c in lora_configs.list_configs(page_size=100).items}
    dits = {"flux2_klein": ("FLUX.2 klein", "tiny-flux2-klein"), "z_image": ("Z-Image", "tiny-z-image"),
            "qwen_image": ("Qwen-Image", "tiny-qwen-image")}  # migration 0012: three VRAM tiers and a tiny one each
    assert set(configs) == {"SD 1.5 Standard", "SD 1.5 High Quality", "SDXL Standard", "Tiny (offline demo)"} | {
        name for label, _ in dits.values()
        for name in (f"{label} 16 GB", f"{label} 24 GB", f"{label} 80 GB", f"Tiny {label} (offline test)")}
    for family, (label, tiny_model) in dits.items():
        assert {configs[f"{label} {tier} GB"].family for tier in (16, 24, 80)} == {family}
        tiny = configs[f"Tiny {label} (offline test)"]
        assert (tiny.family, tiny.base_model) == (family, tiny_model)
    assert _defaults() == ["SD 1.5 Standard"]
    sd15, hq, sdxl = configs["SD 1.5 Standard"], configs["SD 1.5 High Quality"], configs["SDXL Standard"]
    assert (sd15.resolution, hq.resolution, sdxl.resolution) == (512, 768, 1024)
    assert sd15.base_model == hq.base_model == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert sdxl.base_model == "stabilityai/stable-diffusion-xl-base-1.0" and sdxl.family == "sdxl"
    for params in (sd15, hq, sdxl):
        assert (params.rank, params.alpha, params.learning_rate, params.steps) == (16, 16, 1e-4, 1500)
    tiny = configs["Tiny (offline demo)"]
    assert tiny.base_model == "tiny-sd15" and tiny.mixed_precision == "no" and tiny.steps <= 100


@pytest.mark.parametrize(("field", "value", "message"), [
    ("steps", 0, "steps"), ("steps", 100_001, "steps"), ("epochs", 1001, "epochs"),
    ("learning_rate", 2.0, "learning_rate"), ("learning_rate", 1e-7, "learning_rate"),
    ("batch_size", 65, "batch_size"), ("resolution", 100, "resolution"), ("resolution", 516, "multiple of 8"),
    ("resolution", 4096, "resolution"), ("rank", 513, "rank"), ("alpha", 0, "alpha"),
    ("mixed_precision", "fp8", "mixed_precision"), ("optimizer", "sgd", "optimizer"),
    ("caption_dropout", 1.5, "caption_dropout"), ("unknown_knob", 1, "unknown_knob"),
])
def test_out_of_range_params_are_refused_with_the_field_named(field, value, message):
    with pytest.raises(InvalidInput, match=message):
        parse_params({field: value})


def test_warmup_needs_a_scheduler_that_warms_up():
    with pytest.raises(InvalidInput, match="warm-up"):
        parse_params({"warmup_steps": 10, "lr_scheduler": "constant"})
    assert parse_params({"warmup_steps": 10, "lr_scheduler": "cosine"}).warmup_steps == 10


def test_optional_optimizers_are_offered_only_when_installed():
    offered = available_optimizers()
    assert offered[0] == "adamw"
    for optimizer, package in {"adamw8bit": "bitsandbytes", "prodigy": "prodigyopt"}.items():
        if optimizer not in offered:
            with pytest.raises(InvalidInput, match=package):
                parse_params({"optimizer": optimizer})


def test_epochs_turn_into_steps_by_dataset_size():
    params = LoraParams(duration_unit="epochs", epochs=3, batch_size=4)
    assert params.total_steps(10) == 9 and LoraParams(steps=77).total_steps(10) == 77


def test_sample_prompts_get_the_trigger_word():
    params = LoraParams(sample_prompts=["a photo of {trigger} smiling", "beach at sunset", "  "])
    assert params.prompts_for("ohwx") == ["a photo of ohwx smiling", "ohwx, beach at sunset"]


@both_databases
def test_names_are_unique_and_edits_are_validated(studio):
    config = lora_configs.create_config(name="Mine", params={"rank": 32})
    assert lora_configs.params_of(config).rank == 32
    with pytest.raises(Conflict, match="already exists"):
        lora_configs.create_config(name="Mine", params={})
    other = lora_configs.create_config(name="Other", params={})
    with pytest.raises(Conflict, match="already exists"):
        lora_configs.update_config(other.id, name="Mine", params={})
    with pytest.raises(InvalidInput, match="rank"):
        lora_configs.update_config(other.id, name="Other", params={"rank": 0})
    assert lora_configs.params_of(lora_configs.get_config(other.id)).rank == 16, "a refused edit changes nothing"
    with pytest.raises(InvalidInput):
        lora_configs.create_config(name="  ", params={})


@both_databases
def test_exactly_one_default_even_when_switching(studio):
    mine = lora_configs.create_config(name="Mine", params={}, make_default=True)
    assert _defaults() == ["Mine"]
    preset = lora_configs.get_config_by_name("SDXL Standard")
    lora_configs.set_default_config(preset.id)
    assert _defaults() == ["SDXL Standard"] and lora_configs.get_default_config().id == preset.id
    with pytest.raises(IntegrityError), session_scope() as session:  # the database itself refuses two
        session.execute(update(LoraConfig).where(LoraConfig.id == mine.id).values(is_default=True))
    assert _defaults() == ["SDXL Standard"]


@both_databases
def test_clone_copies_params_under_a_free_name_and_is_not_default(studio):
    source = lora_configs.get_default_config()
    first, second = lora_configs.clone_config(source.id), lora_configs.clone_config(source.id)
    assert (first.name, second.name) == ("SD 1.5 Standard (copy)", "SD 1.5 Standard (copy 2)")
    assert first.params == source.params and not first.is_default and not first.preset


@both_databases
def test_delete_is_refused_for_the_default_and_while_a_job_uses_the_config(studio):
    dataset = create_dataset(name="Ava", trigger_word="ohwx")
    import_files(dataset.id, [("a.png", image_bytes(seed=1))])
    config = lora_configs.create_config(name="In use", params={})
    with pytest.raises(Conflict, match="default"):
        lora_configs.delete_config(lora_configs.get_default_config().id)

    job = jobs.create_job("train", {"dataset_id": dataset.id, "config_id": config.id})
    with pytest.raises(Conflict, match="queued or running"):
        lora_configs.delete_config(config.id)
    assert lora_configs.get_config(config.id).name == "In use"

    jobs.cancel_job(job.id)
    lora_configs.delete_config(config.id)
    assert "In use" not in {c.name for c in lora_configs.list_configs().items}


@both_databases
def test_lists_are_paginated_by_name(studio):
    seeded = lora_configs.list_configs().total  # the presets
    for index in range(7):
        lora_configs.create_config(name=f"zz {index}", params={})
    everything = [c.name for c in lora_configs.list_configs(page_size=100).items]
    assert everything[seeded:] == [f"zz {index}" for index in range(7)]  # by name: after every preset
    page = lora_configs.list_configs(page=2, page_size=5)
    assert page.total == seeded + 7 and page.pages == -(-(seeded + 7) // 5)
    assert [c.name for c in page.items] == everything[5:10]
