"""Generation templates: the shipped files, the schema's clear errors, and adding one by dropping a file."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from api.routes import api_routes
from core.config import PROJECT_ROOT
from core.errors import NotFound
from core.generation.templates import (
    SCHEDULERS,
    TemplateError,
    default_template,
    get_template,
    load_templates,
    scheduler_key,
)
from tests.conftest import TEST_API_TOKEN

SHIPPED = PROJECT_ROOT / "workflows" / "generation"
VALID = {"family": "sd15", "base_model": "tiny-sd15", "scheduler": "euler_a", "steps": 20, "cfg": 6.5,
         "width": 512, "height": 768, "negative_prompt": "blurry", "lora_strength": 0.7}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    folder = tmp_path / "generation"
    folder.mkdir()
    monkeypatch.setenv("STUDIO_TEMPLATES_DIR", str(folder))
    from core.config import reload_settings

    reload_settings()
    yield folder
    monkeypatch.delenv("STUDIO_TEMPLATES_DIR")
    reload_settings()


def _write(folder, name, data):
    path = folder / name
    path.write_text(json.dumps(data) if name.endswith(".json") else data if isinstance(data, str)
                    else "\n".join(f"{k}: {json.dumps(v)}" for k, v in data.items()))
    return path


def test_the_shipped_templates_are_valid_and_cover_both_families_and_the_tiny_model():
    catalogue = load_templates(SHIPPED)
    assert catalogue.errors == {}
    assert {"sd15-lora", "sdxl-lora", "tiny-lora"} <= set(catalogue.templates)
    assert catalogue.templates["sd15-lora"].family == "sd15"
    assert catalogue.templates["sdxl-lora"].family == "sdxl"
    assert catalogue.templates["sdxl-lora"].width == 1024
    assert catalogue.templates["sd15-lora"].scheduler == "dpmpp_2m_karras", "named as people know it in the file"
    assert catalogue.templates["tiny-lora"].base_model == "tiny-sd15"


def test_a_valid_yaml_or_json_file_loads_with_every_field(folder):
    _write(folder, "portrait.yaml", VALID)
    _write(folder, "square.json", {**VALID, "width": 256, "height": 256})
    portrait = get_template("portrait")
    assert portrait.model_dump(include=set(VALID)) == VALID
    assert get_template("square").width == 256


@pytest.mark.parametrize(("change", "fragment"), [
    ({"scheduler": "eulr"}, "unknown scheduler 'eulr'; choose one of: euler_a (Euler a)"),
    ({"width": 500}, "width: 500 is not a multiple of 8"),
    ({"height": 4096}, "height"),
    ({"steps": 0}, "steps"),
    ({"steps": 151}, "steps"),
    ({"cfg": 31}, "cfg"),
    ({"base_model": ""}, "missing base model"),
    ({"base_model": None}, "missing base model"),
    ({"family": "sd3"}, "family"),
    ({"lora_strength": 3}, "lora_strength"),
    ({"sampler": "ddim"}, "sampler"),
])
def test_a_broken_template_is_refused_with_its_file_and_field_named(folder, change, fragment):
    _write(folder, "broken.yaml", {**VALID, **change})
    with pytest.raises(TemplateError) as refused:
        get_template("broken")
    assert str(refused.value).startswith("broken.yaml: ")
    assert fragment in str(refused.value)


def test_a_missing_base_model_field_is_named(folder):
    _write(folder, "nomodel.yaml", {k: v for k, v in VALID.items() if k != "base_model"})
    with pytest.raises(TemplateError, match=r"nomodel\.yaml: base_model"):
        get_template("nomodel")


@pytest.mark.parametrize(("name", "text", "fragment"), [
    ("list.yaml", "- a\n- b\n", "a mapping of fields"),
    ("bad.yaml", "family: [unclosed\n", "cannot read it"),
    ("bad.json", "{not json", "cannot read it"),
    ("Bad Name.yaml", "family: sd15\n", "lower case"),
    ("other.yaml", "name: something-else\nfamily: sd15\nbase_model: x\n", "differs from the file name"),
])
def test_unreadable_files_are_reported_and_do_not_hide_the_others(folder, name, text, fragment):
    _write(folder, "good.yaml", VALID)
    (folder / name).write_text(text)
    catalogue = load_templates()
    assert list(catalogue.templates) == ["good"]
    assert fragment in catalogue.errors[name]


def test_dropping_a_file_adds_a_template_without_a_restart(folder):
    _write(folder, "first.yaml", VALID)
    assert [t.name for t in load_templates().templates.values()] == ["first"]
    _write(folder, "second.yaml", {**VALID, "family": "sdxl", "width": 1024, "height": 1024})
    assert get_template("second").family == "sdxl"
    with pytest.raises(NotFound, match="known templates: first, second"):
        get_template("third")


def test_the_default_template_prefers_the_family_lora_template(folder):
    _write(folder, "a-sdxl.yaml", {**VALID, "family": "sdxl"})
    _write(folder, "sdxl-lora.yaml", {**VALID, "family": "sdxl"})
    _write(folder, "sd15-other.yaml", VALID)
    assert default_template("sdxl").name == "sdxl-lora"
    assert default_template("sd15").name == "sd15-other"
    assert default_template(None).name == "a-sdxl"


def test_schedulers_are_accepted_by_key_or_by_their_usual_name():
    assert scheduler_key("DPM++ 2M Karras") == "dpmpp_2m_karras"
    assert scheduler_key("euler a") == "euler_a"
    assert all(scheduler_key(key) == key and scheduler_key(label) == key for key, label in SCHEDULERS.items())
    with pytest.raises(ValueError, match="unknown scheduler"):
        scheduler_key("k_lms")


def test_the_api_lists_templates_and_the_refused_files(studio, folder):
    _write(folder, "good.yaml", VALID)
    _write(folder, "broken.yaml", {**VALID, "width": 100})
    with TestClient(Starlette(routes=api_routes())) as client:
        assert client.get("/api/templates").status_code == 401
        body = client.get("/api/templates", headers={"Authorization": f"Bearer {TEST_API_TOKEN}"}).json()
    assert [t["name"] for t in body["templates"]] == ["good"]
    assert body["templates"][0]["negative_prompt"] == "blurry"
    assert "not a multiple of 8" in body["errors"]["broken.yaml"]
