"""The model manager's registry and installs: a folder registered in place, a single-file checkpoint installed
offline (0 differing tensors against its folder twin), a hub download with progress against a local server
speaking the hub's HTTP API (resumed with Range, limited in size, a clear error offline), a LoRA from a URL."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save, save_file

from core.config import reload_settings
from core.db import session_scope
from core.errors import Conflict, InvalidInput
from core.jobs import lifecycle as jobs
from core.models import Job, JobStatus
from core.models_registry import hub, install, registry
from core.models_registry.files import detect_single_file, file_header
from core.training.runs import resolve_base_model
from tests.fakes.hub import COMMIT
from tests.single_file import to_single_file
from workers.models import download_model, install_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]


def _weights(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.safetensors")}


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_folder_installs_in_place_resolves_by_name_and_is_not_removed_while_a_job_uses_it(studio, tiny_models):
    model = install.install_folder(path=str(tiny_models["sd15"]), name="house-sd15")
    assert (model.family, model.format, model.source_kind, model.status) == ("sd15", "diffusers", "folder", "ready")
    assert model.precision == "fp32" and model.size_bytes > 1_000_000
    assert resolve_base_model("house-sd15") == str(tiny_models["sd15"].resolve())
    assert resolve_base_model("owner/not-installed") == "owner/not-installed"  # hub ids keep working
    assert [m.name for m in registry.list_models().items] == ["house-sd15"]
    assert registry.disk_use().model_bytes == model.size_bytes
    with pytest.raises(Conflict, match="already installed"):
        install.install_folder(path=str(tiny_models["sd15"]), name="house-sd15")
    with pytest.raises(InvalidInput, match=r"no model_index\.json"):
        install.install_folder(path=str(tiny_models["sd15"] / "unet"), name="half")

    job = Job(kind="generate", queue="gpu", status=JobStatus.RUNNING, payload={"base_model": "house-sd15"})
    with session_scope() as session:
        session.add(job)
    with pytest.raises(Conflict, match=f"in use by job\\(s\\) {job.id[:8]}"):
        registry.remove_model(name="house-sd15")
    with session_scope() as session:
        session.get(Job, job.id).status = JobStatus.SUCCEEDED
    registry.remove_model(name="house-sd15")
    assert registry.list_models().total == 0
    assert (tiny_models["sd15"] / "model_index.json").is_file()  # a folder registered in place stays


def _sdxl_with_a_wider_second_encoder(tiny_sdxl: Path, target: Path) -> Path:
    """The tiny SDXL folder with a 48-wide second text encoder: diffusers tells SDXL's two encoders in a single
    file apart by their widths (768 vs 1280 in the real model), and the tiny builder makes both 32 wide."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    shutil.copytree(tiny_sdxl, target)
    config = CLIPTextConfig.from_pretrained(tiny_sdxl / "text_encoder_2")
    config.hidden_size, config.intermediate_size = 48, 96
    torch.manual_seed(4)
    shutil.rmtree(target / "text_encoder_2")
    CLIPTextModelWithProjection(config).save_pretrained(target / "text_encoder_2")
    return target


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_a_single_file_checkpoint_installs_offline_and_loads_with_0_differing_tensors(
        studio, tiny_models, tmp_path, family):
    import diffusers

    twin_folder = tiny_models[family] if family == "sd15" else \
        _sdxl_with_a_wider_second_encoder(tiny_models["sdxl"], tmp_path / "twin")
    checkpoint = to_single_file(twin_folder, tmp_path / "civitai-look.safetensors")
    model, job = install.submit_single_file(path=str(checkpoint), config=str(twin_folder))
    assert (model.name, model.family, model.status, model.job_id) == ("civitai-look", family, "installing", job.id)
    jobs.execute_job(job.id, install_model)  # what the gpu queue's install-model actor runs
    assert jobs.get_job(job.id).status == JobStatus.SUCCEEDED, jobs.get_job(job.id).error
    model = registry.get_model("civitai-look")
    assert (model.status, model.format, model.precision) == ("ready", "single_file", "fp32")
    assert Path(model.path) == registry.owned_path("civitai-look")

    pipeline = getattr(diffusers, "StableDiffusionPipeline" if family == "sd15" else "StableDiffusionXLPipeline")
    installed = pipeline.from_pretrained(resolve_base_model("civitai-look"))
    twin = pipeline.from_pretrained(str(twin_folder))
    components = ("unet", "vae", "text_encoder") + (("text_encoder_2",) if family == "sdxl" else ())
    for component in components:
        ours, theirs = getattr(installed, component).state_dict(), getattr(twin, component).state_dict()
        assert ours.keys() == theirs.keys()
        differing = [k for k in theirs if not torch.equal(ours[k], theirs[k])]
        assert differing == [], component

    registry.remove_model(name="civitai-look")
    assert not registry.owned_path("civitai-look").exists()  # the studio's own copy goes


def test_single_files_are_recognised_by_their_keys_and_others_refused_by_name(tmp_path):
    def header(*keys: str) -> dict:
        path = tmp_path / "x.safetensors"
        save_file({k: torch.zeros(1) for k in keys}, str(path))
        return file_header(path)[0]

    unet = "model.diffusion_model.input_blocks.0.0.weight"
    assert detect_single_file(header(unet, "cond_stage_model.transformer.text_model.embeddings.token_embedding"
                                           ".weight")) == "sd15"
    assert detect_single_file(header(unet, "conditioner.embedders.1.model.token_embedding.weight")) == "sdxl"
    # The DiT families' transformer-only files (ComfyUI's layout, prefixed or not) install paired with a base.
    assert detect_single_file(header("double_blocks.0.img_attn.qkv.weight", "single_stream_modulation.lin.weight")) \
        == "flux2_klein"
    assert detect_single_file(header("model.diffusion_model.layers.0.adaLN_modulation.0.weight",
                                     "model.diffusion_model.cap_pad_token")) == "z_image"
    assert detect_single_file(header("transformer_blocks.0.img_mod.1.weight")) == "qwen_image"
    with pytest.raises(InvalidInput, match=r"FLUX\.2 \[dev\]"):
        detect_single_file(header("single_stream_modulation.lin.weight", "guidance_in.in_layer.weight"))
    with pytest.raises(InvalidInput, match="Lumina-style transformer that is not Z-Image"):
        detect_single_file(header("layers.0.adaLN_modulation.0.weight"))
    with pytest.raises(InvalidInput, match="Stable Diffusion 2"):
        detect_single_file(header(unet, "cond_stage_model.model.token_embedding.weight"))
    with pytest.raises(InvalidInput, match="first keys: lora_unet_a"):
        detect_single_file(header("lora_unet_a.lora_down.weight"))
    pickle = tmp_path / "model.safetensors"
    pickle.write_bytes(b"\x80\x04\x95" + b"\0" * 64)
    with pytest.raises(InvalidInput, match="not a safetensors file"):
        file_header(pickle)


def test_a_hub_download_shows_progress_fetches_only_what_diffusers_loads_and_installs(hub_studio, tiny_models):
    model, job = install.submit_hub(repo_id="studio/tiny-sd15")
    assert (model.name, model.source_kind, model.status) == ("studio/tiny-sd15", "hub", "installing")
    jobs.execute_job(job.id, download_model)  # what the cpu queue's download-model actor runs
    done = jobs.get_job(job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert (done.progress, done.progress_message) == (1.0, "installed")
    model = registry.get_model("studio/tiny-sd15")
    assert (model.status, model.family, model.precision) == ("ready", "sd15", "fp32")
    folder = Path(model.path)
    assert _weights(folder) == _weights(tiny_models["sd15"])
    assert (folder / hub.COMMIT_FILE).read_text() == COMMIT
    fetched = {call.path.split(f"/resolve/{COMMIT}/", 1)[1] for call in hub_studio.calls_to("file")}
    assert "v1-5-pruned.safetensors" not in fetched and not any(".bin" in p or ".fp16." in p for p in fetched)
    assert resolve_base_model("studio/tiny-sd15") == str(folder)  # training and generation get the download


def test_an_interrupted_download_resumes_with_a_range_request_and_checks_the_hash(hub_studio, tiny_models, tmp_path):
    plan = hub.plan_download("studio/tiny-sd15")
    weights = next(f for f in plan.files if f.path == "unet/diffusion_pytorch_model.safetensors")
    original = (tiny_models["sd15"] / weights.path).read_bytes()
    folder = tmp_path / "download"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "diffusion_pytorch_model.safetensors.part").write_bytes(original[:1000])
    seen: list[int] = []
    hub.download(plan, folder, on_progress=lambda done, total, name: seen.append(done))
    assert (folder / weights.path).read_bytes() == original
    ranged = [c for c in hub_studio.calls_to("file") if c.path.endswith(weights.path)]
    assert [c.headers.get("range") for c in ranged] == ["bytes=1000-"] and ranged[0].status == 206
    assert seen == sorted(seen) and seen[-1] == plan.total_bytes

    # A second run finds every file complete: nothing is fetched again.
    hub_studio.clear()
    hub.download(plan, folder, on_progress=lambda *_: None)
    assert hub_studio.calls_to("file") == []

    # A part file whose bytes differ from the hub's fails the SHA-256 check and is discarded.
    (folder / weights.path).unlink()
    (folder / "unet" / "diffusion_pytorch_model.safetensors.part").write_bytes(b"\0" * 1000)
    with pytest.raises(InvalidInput, match="SHA-256 differs"):
        hub.download(plan, folder, on_progress=lambda *_: None)
    assert not (folder / "unet" / "diffusion_pytorch_model.safetensors.part").exists()


def test_a_download_over_the_size_limit_or_offline_fails_clearly_and_fetches_nothing(hub_studio, monkeypatch):
    monkeypatch.setenv("STUDIO_MODEL_DOWNLOAD_MAX_GB", "0.001")  # 1 MiB; the tiny model is larger
    reload_settings()
    _, job = install.submit_hub(repo_id="studio/tiny-sd15", name="too-big")
    jobs.execute_job(job.id, download_model)
    failed = jobs.get_job(job.id)
    assert failed.status == JobStatus.FAILED and "the limit is 0.001 GiB" in (failed.error or "")
    assert registry.get_model("too-big").status == "failed"
    assert hub_studio.calls_to("file") == [] and not registry.owned_path("too-big").exists()

    with pytest.raises(InvalidInput, match="no such model on the hub"):
        hub.plan_download("studio/missing")
    monkeypatch.setenv("STUDIO_HUB_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    reload_settings()
    with pytest.raises(hub.HubUnreachable, match="looks offline"):
        hub.plan_download("studio/tiny-sd15")
    with pytest.raises(InvalidInput, match="not a hub id"):
        install.submit_hub(repo_id="../etc/passwd")


def test_a_lora_from_a_url_is_fetched_within_the_limit_and_checked_like_an_upload(hub_studio, monkeypatch):
    good = save({"lora_unet_x.lora_down.weight": torch.zeros(4)})
    hub_studio.files = {"look.safetensors": good, "model.ckpt": good, "checkpoint.safetensors":
                        save({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)})}
    data, name = install.fetch_lora(f"{hub_studio.url}/files/look.safetensors")
    assert (data, name) == (good, "look.safetensors")
    with pytest.raises(InvalidInput, match="the limit is"):
        install.fetch_lora(f"{hub_studio.url}/files/look.safetensors", max_bytes=len(good) - 1)
    with pytest.raises(InvalidInput, match=r"only \.safetensors"):
        install.import_lora_from_url(f"{hub_studio.url}/files/model.ckpt", base_model="tiny-sd15")
    with pytest.raises(InvalidInput, match="foreign key"):
        install.import_lora_from_url(f"{hub_studio.url}/files/checkpoint.safetensors", base_model="tiny-sd15")
    with pytest.raises(InvalidInput, match="only http"):
        install.fetch_lora("file:///etc/passwd")
    job = install.import_lora_from_url(f"{hub_studio.url}/files/look.safetensors", base_model="tiny-sd15")
    assert job.kind == "import-lora" and job.payload["source_format"] == "kohya"
    assert hashlib.sha256(good).hexdigest() in job.payload["upload_key"]


def test_the_bundled_config_folders_build_the_published_models_and_the_real_clip_tokenizer(studio):
    """Shapes only (meta tensors, no memory): the parameter counts of SD 1.5's and SDXL base 1.0's published
    components, and CLIP's real token ids, so a real checkpoint converts offline with these folders."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from workers.ml.single_file import config_folder

    def count(model) -> int:
        return sum(p.numel() for p in model.parameters())

    published = {"sd15": (859_520_964, 83_653_863, 123_060_480), "sdxl": (2_567_463_684, 83_653_863, 123_060_480)}
    for family, (unet, vae, text) in published.items():
        folder = config_folder(family)
        with init_empty_weights():
            assert count(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))) == unet
            assert count(AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))) == vae
            assert count(CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))) == text
            if family == "sdxl":
                config = CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
                assert count(CLIPTextModelWithProjection(config)) == 694_659_840
        assert (folder / "tokenizer" / "tokenizer.json").is_file()  # vocabulary + merges (transformers 5)
    tokenizer = CLIPTokenizer.from_pretrained(config_folder("sd15") / "tokenizer")
    assert tokenizer("a photo of ohwx").input_ids[:4] == [49406, 320, 1125, 539]
    assert json.loads((config_folder("sdxl") / "tokenizer_2" / "tokenizer_config.json").read_text())["pad_token"] \
        == "!"
