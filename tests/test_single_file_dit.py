"""Single-file DiT transformers, as ComfyUI and Civitai ship FLUX.2 [klein], Z-Image and Qwen-Image (the transformer
alone, original key names, sometimes under ``model.diffusion_model.``): a tiny one written in that layout installs
offline, paired with an installed base model's text encoder and VAE, loads through diffusers' single-file path with
0 differing tensors against its folder twin, renders the same image, shows on the Models page with its pairing, and a
generation job naming it runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from core.errors import Conflict, InvalidInput
from core.generation import requests as generation
from core.jobs import lifecycle as jobs
from core.models import JobStatus
from core.models_registry import install, registry
from core.models_registry.files import COMFY_PREFIX
from core.training.runs import resolve_base_model
from tests.apptest import open_page
from tests.tiny_dit import write_transformer_file
from workers.ml.families import get_family
from workers.models import install_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]


def _installed(job_id: str) -> None:
    jobs.execute_job(job_id, install_model)  # what the gpu queue's install-model actor runs
    assert jobs.get_job(job_id).status == JobStatus.SUCCEEDED, jobs.get_job(job_id).error


def _render(family: str, pipe) -> np.ndarray:
    """Two denoising steps (Qwen-Image's terminal shift makes a one-step schedule NaN) at 64×64, as float pixels.

    Each transformer weight gets its own 64-byte-aligned copy first: the CPU matmul kernels' summation order
    depends on where a weight starts in memory (measured: the folder model's mmapped weights, 24 bytes past a
    64-byte boundary, render 1.9e-6 away from the same weights at 16; aligned copies of both render identically)."""
    for parameter in pipe.transformer.parameters():
        parameter.data = parameter.data.clone()
    arguments = get_family(family).call_arguments("a photo of a cat", "", 1.0)
    with torch.inference_mode():
        return pipe(**arguments, num_inference_steps=2, width=64, height=64, output_type="np",
                    generator=torch.Generator().manual_seed(3)).images


@pytest.mark.parametrize(("family", "prefix"), [("flux2_klein", ""), ("z_image", COMFY_PREFIX),
                                                ("qwen_image", COMFY_PREFIX)])
def test_a_transformer_file_installs_offline_and_loads_and_renders_like_its_folder_twin(
        studio, tiny_models, tmp_path, family, prefix):
    twin = tiny_models[family]
    install.install_folder(path=str(twin), name="house")
    file = write_transformer_file(twin, tmp_path / "civitai-dit.safetensors", family, prefix=prefix)
    assert not any(key.startswith("transformer_blocks.0.attn.to_q") for key in load_file(str(file))) \
        or family == "qwen_image"  # the original layout, not diffusers' (Qwen-Image's names are diffusers' own)
    model, job = install.submit_single_file(path=str(file), base_model="house")
    assert (model.name, model.family, model.format, model.base_model) == ("civitai-dit", family, "transformer", "house")
    _installed(job.id)
    model = registry.get_model("civitai-dit")
    assert (model.status, model.precision, model.size_bytes) == ("ready", "fp32", file.stat().st_size)
    assert file.is_file()  # used in place, never copied

    plugin = get_family(family)
    installed = plugin.load_pipeline(resolve_base_model("civitai-dit"), dtype=torch.float32)
    folder = plugin.load_pipeline(str(twin), dtype=torch.float32)
    for component in ("transformer", "vae", "text_encoder"):
        ours, theirs = getattr(installed, component).state_dict(), getattr(folder, component).state_dict()
        assert ours.keys() == theirs.keys(), component
        assert [k for k in theirs if not torch.equal(ours[k], theirs[k])] == [], component
    ours, theirs = _render(family, installed), _render(family, folder)
    assert not np.isnan(theirs).any() and np.array_equal(ours, theirs)

    with pytest.raises(Conflict, match="gives its text encoder and VAE to 'civitai-dit'"):
        registry.remove_model(name="house")
    registry.remove_model(name="civitai-dit")
    assert file.is_file() and not registry.owned_path("civitai-dit").exists()


def test_a_generation_job_naming_an_installed_transformer_file_runs_on_it(studio, tiny_models, tmp_path):
    from workers.generation import generate

    file = write_transformer_file(tiny_models["z_image"], tmp_path / "zit.safetensors", "z_image")
    _, job = install.submit_single_file(path=str(file), base_model=str(tiny_models["z_image"]))
    _installed(job.id)
    table = open_page("pages/models.py").dataframe[0].value  # the Models page says what it is and its pairing
    assert table[["name", "family", "format", "paired with"]].to_dict("records") == [
        {"name": "zit", "family": "Z-Image", "format": "single file (transformer)",
         "paired with": str(tiny_models["z_image"])}]
    job = generation.submit_generation(template="tiny-z-image", base_model="zit", prompt="a cat", width=64,
                                       height=64, steps=1, seed=5)
    jobs.execute_job(job.id, generate)  # what the gpu queue's generate actor runs
    done = jobs.get_job(job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.payload["base_model"] == "zit" and done.result["images"] == 1
    assert generation.job_images(job.id)[0].meta["base_model"] == "zit"


def test_a_transformer_file_that_cannot_pair_or_fit_is_refused_clearly(studio, tiny_models, tmp_path):
    twin = tiny_models["flux2_klein"]
    file = write_transformer_file(twin, tmp_path / "klein.safetensors", "flux2_klein")
    install.install_folder(path=str(tiny_models["z_image"]), name="zbase")
    with pytest.raises(InvalidInput, match=r"'zbase' is a Z-Image model; this needs a FLUX\.2"):
        install.submit_single_file(path=str(file), base_model="zbase")
    with pytest.raises(InvalidInput, match="not installed, not a folder on this machine and not a hub id"):
        install.submit_single_file(path=str(file), base_model="nothing-here")
    assert registry.list_models().total == 1  # refusals write nothing

    # A hub id pairing that is not on this machine, offline: the install fails saying so.
    _, job = install.submit_single_file(path=str(file), name="klein-hub", base_model="owner/klein-base")
    jobs.execute_job(job.id, install_model)
    assert jobs.get_job(job.id).status == JobStatus.FAILED
    assert "not on this machine, and this machine is offline" in (registry.get_model("klein-hub").error or "")

    # Another size of the family (a wider transformer) against this base's config: the shapes are named.
    state = load_file(str(file))
    state["img_in.weight"] = torch.zeros(64, state["img_in.weight"].shape[1])
    wider = tmp_path / "wider.safetensors"
    save_file(state, str(wider))
    _, job = install.submit_single_file(path=str(wider), base_model=str(twin))
    jobs.execute_job(job.id, install_model)
    error = registry.get_model("wider").error or ""
    assert "1 of another shape (e.g. x_embedder.weight (64, 16) (config: (32, 16)))" in error, error


def test_the_bundled_transformer_configs_build_the_published_model_sizes():
    """Meta tensors only: the bundled configs (the hub's published transformer/config.json of FLUX.2-klein-4B,
    Z-Image-Turbo and Qwen-Image) build transformers of the announced 4B, 6B and 20B sizes."""
    import diffusers

    from workers.ml.single_file import TRANSFORMERS, transformer_config

    sizes = {}
    for family, class_name in TRANSFORMERS.items():
        model_class = getattr(diffusers, class_name)
        folder = transformer_config(family, "owner/not-a-folder")
        assert folder == Path(__file__).parent.parent / "workers/ml/model_configs" / family / "transformer"
        with torch.device("meta"):
            model = model_class.from_config(model_class.load_config(str(folder)))
        sizes[family] = round(sum(p.numel() for p in model.parameters()) / 1e9)
    assert sizes == {"flux2_klein": 4, "z_image": 6, "qwen_image": 20}
