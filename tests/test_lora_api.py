"""LoRA files over HTTP and the CLI: a community file imported through the API, its job run by the import-lora
handler, becomes a LoRA row, which downloads in kohya format; a trained LoRA downloads in both formats, a DiT
LoRA also in ComfyUI's; refusals change nothing."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.numpy import load as load_numpy
from safetensors.torch import save
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.testclient import TestClient
from typer.testing import CliRunner

from api.routes import api_routes
from core.db import session_scope
from core.jobs import lifecycle as jobs
from core.loras.kohya import read_header
from core.models import Job, JobStatus, LoraModel
from core.training import runs as training
from core.training.params import WEIGHTS_FILE, LoraParams
from tests.conftest import TEST_API_TOKEN
from tests.test_lora_export import make_lora
from tests.test_lora_export_dit import our_lora
from workers.cli import app as cli_app
from workers.lora_import import import_lora

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]
AUTH = {"Authorization": f"Bearer {TEST_API_TOKEN}"}


@pytest.fixture
def client(studio):
    with TestClient(Starlette(routes=api_routes())) as test_client:
        yield test_client


@pytest.fixture
def tiny_studio(studio, tiny_models):
    studio.models_dir.mkdir(parents=True, exist_ok=True)
    (studio.models_dir / "tiny-sd15").symlink_to(tiny_models["sd15"], target_is_directory=True)
    return studio


def kohya_file(tiny_models) -> bytes:
    """A kohya LoRA on two real module names of the tiny SD 1.5 (an attention projection and a LoCon conv)."""
    generator = torch.Generator().manual_seed(5)
    shapes = {"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q": ((4, 64), (64, 4)),
              "lora_unet_down_blocks_0_resnets_1_conv1": ((4, 32, 3, 3), (32, 4, 1, 1))}
    tensors = {}
    for name, (down, up) in shapes.items():
        tensors[f"{name}.lora_down.weight"] = torch.randn(down, generator=generator)
        tensors[f"{name}.lora_up.weight"] = torch.randn(up, generator=generator)
        tensors[f"{name}.alpha"] = torch.tensor(2.0)
    return save(tensors)


def _loras() -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(LoraModel)).scalar_one()


def test_a_kohya_lora_imported_over_the_api_becomes_a_lora_that_downloads_in_kohya_format(
        client, tiny_studio, tiny_models):
    data = kohya_file(tiny_models)
    answer = client.post("/api/loras/import?base_model=tiny-sd15&family=sd15&name=Civitai%20look"
                         "&trigger_word=cvt&file_name=look.safetensors", content=data, headers=AUTH)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    jobs.execute_job(job_id, import_lora)  # what the gpu queue's import-lora actor runs (in this process)
    job = jobs.get_job(job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["source_format"] == "kohya" and job.result["modules"] == {"unet": 2}
    lora = training.get_lora(job.result["lora_id"])
    assert (lora.name, lora.family, lora.trigger_word, lora.final) == ("Civitai look", "sd15", "cvt", True)
    assert lora.base_model == "tiny-sd15"  # recorded as given, like a training run's

    exported = client.get(f"/api/loras/{lora.id}/file", headers=AUTH)
    assert exported.status_code == 200
    assert 'filename="Civitai-look-kohya.safetensors"' in exported.headers["content-disposition"]
    tensors = load_numpy(exported.content)
    assert set(tensors) == set(load_numpy(data))  # every key kept, kohya names unchanged
    assert read_header(exported.content)[1]["ss_tag_frequency"] == '{"studio": {"cvt": 1}}'


def test_imports_that_are_not_safetensors_or_have_foreign_keys_are_refused_and_change_nothing(client, studio):
    before_jobs, before_loras = jobs.list_jobs(page_size=1).total, _loras()
    pickle = client.post("/api/loras/import?base_model=tiny-sd15&file_name=lora.ckpt", content=b"\x80\x04 pickle",
                         headers=AUTH)
    assert pickle.status_code == 422 and "only .safetensors" in pickle.json()["error"]
    foreign = save({"model.diffusion_model.out.2.weight": torch.zeros(1)})
    answer = client.post("/api/loras/import?base_model=tiny-sd15&file_name=x.safetensors", content=foreign,
                         headers=AUTH)
    assert answer.status_code == 422 and "model.diffusion_model.out.2.weight" in answer.json()["error"]
    assert client.post("/api/loras/import?file_name=x.safetensors", content=foreign,
                       headers=AUTH).status_code == 422  # base_model is required
    assert client.post("/api/loras/import?base_model=m", content=foreign).status_code == 401
    assert (jobs.list_jobs(page_size=1).total, _loras()) == (before_jobs, before_loras)


def test_a_trained_lora_downloads_in_both_formats_over_the_api_and_the_cli(client, studio, tiny_models, tmp_path):
    folder = tmp_path / "trained"
    make_lora(tiny_models["sd15"], "sd15", folder)
    params = LoraParams(family="sd15", base_model="tiny-sd15", rank=4, alpha=8)
    job = Job(kind="train", queue="gpu", status=JobStatus.SUCCEEDED, payload={
        "dataset_id": 999, "config_id": None, "params": params.model_dump(mode="json"), "name": "Ava"})
    with session_scope() as session:
        session.add(job)
    lora = training.register_checkpoint(jobs.get_job(job.id), step=8, directory=folder, final=True, loss=0.1)

    ours = client.get(f"/api/loras/{lora.id}/file?format=diffusers", headers=AUTH)
    assert ours.content == (folder / WEIGHTS_FILE).read_bytes()
    kohya = client.get(f"/api/loras/{lora.id}/file", headers=AUTH)
    assert any(key.startswith("lora_te_text_model_encoder_layers_0_") for key in load_numpy(kohya.content))
    assert client.get(f"/api/loras/{lora.id}/file?format=ckpt", headers=AUTH).status_code == 422
    assert client.get("/api/loras/999999/file", headers=AUTH).status_code == 404

    result = CliRunner().invoke(cli_app, ["lora-export", str(lora.id), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = tmp_path / "Ava-final-kohya.safetensors"
    assert result.output.strip() == str(written)
    # safetensors orders the metadata as it likes: the same file is the same tensors and metadata.
    assert read_header(written.read_bytes()) == read_header(kohya.content)
    shutil.rmtree(folder)


def test_a_trained_flux2_lora_downloads_in_kohya_and_comfyui_format_over_the_api_and_the_cli(client, studio, tmp_path):
    folder = tmp_path / "trained"
    folder.mkdir()
    our_lora("flux2_klein", folder)
    params = LoraParams(family="flux2_klein", base_model="black-forest-labs/FLUX.2-klein-base-4B", rank=4, alpha=8)
    job = Job(kind="train", queue="gpu", status=JobStatus.SUCCEEDED, payload={
        "dataset_id": 999, "config_id": None, "params": params.model_dump(mode="json"), "name": "Kai"})
    with session_scope() as session:
        session.add(job)
    lora = training.register_checkpoint(jobs.get_job(job.id), step=8, directory=folder, final=True, loss=0.1)

    kohya = client.get(f"/api/loras/{lora.id}/file", headers=AUTH)
    assert 'filename="Kai-final-kohya.safetensors"' in kohya.headers["content-disposition"]
    keys = set(load_numpy(kohya.content))
    assert "lora_unet_double_blocks_0_img_attn_qkv.alpha" in keys and all(k.startswith("lora_unet_") for k in keys)
    comfy = client.get(f"/api/loras/{lora.id}/file?format=comfyui", headers=AUTH)
    assert 'filename="Kai-final-comfyui.safetensors"' in comfy.headers["content-disposition"]
    assert "diffusion_model.single_blocks.0.linear1.lora_A.weight" in load_numpy(comfy.content)

    result = CliRunner().invoke(cli_app, ["lora-export", str(lora.id), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert read_header((tmp_path / "Kai-final-kohya.safetensors").read_bytes()) == read_header(kohya.content)
    shutil.rmtree(folder)
