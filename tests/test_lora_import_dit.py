"""Community LoRAs for the DiT families: files in each format the community writes (diffusers/PEFT, ComfyUI and
ai-toolkit, kohya/musubi-tuner, OneTrainer), with the real module names of FLUX.2 klein, Z-Image and Qwen-Image
(tiny transformers of the real classes), import and apply exactly the reference deltas W += alpha/rank · B @ A;
keys naming no module are refused by name."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save

from core.errors import InvalidInput
from core.loras.imports import detect_format
from core.training.params import WEIGHTS_FILE
from tests.tiny_dit import tiny_dit_transformer
from workers.ml.lora_import_dit import convert

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]

RANK, ALPHA = 4, 2.0
TOLERANCE = 1e-5  # fp32 weights of magnitude ~1: float summation order only
MODULES = {
    "qwen_image": ["transformer_blocks.0.attn.to_q", "transformer_blocks.1.img_mlp.net.2",
                   "transformer_blocks.0.attn.add_k_proj"],
    "z_image": ["layers.0.attention.to_q", "layers.1.feed_forward.w2", "layers.0.attention.to_out.0"],
    "flux2_klein": ["transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_out",
                    "transformer_blocks.0.ff.linear_in"],
}
# format → (how a module's key stem is written, down/up names, whether the file carries alpha), written out from
# each tool's documented names so the test does not reuse the code under test.
FORMATS = {
    "diffusers": (lambda p: f"transformer.{p}", ("lora_A.weight", "lora_B.weight"), False),
    "peft": (lambda p: f"base_model.model.{p}", ("lora_A.weight", "lora_B.weight"), False),
    "comfyui": (lambda p: f"diffusion_model.{p}", ("lora_A.weight", "lora_B.weight"), False),  # also ai-toolkit
    "kohya": (lambda p: "lora_unet_" + p.replace(".", "_"), ("lora_down.weight", "lora_up.weight"), True),
    "onetrainer": (lambda p: "lora_transformer_" + p.replace(".", "_"), ("lora_down.weight", "lora_up.weight"), True),
}


@pytest.fixture(scope="module")
def transformers() -> dict[str, object]:
    return {family: tiny_dit_transformer(family) for family in MODULES}


def community_file(transformer, family: str, fmt: str) -> tuple[bytes, dict[str, torch.Tensor]]:
    stem, (down_name, up_name), has_alpha = FORMATS[fmt]
    generator = torch.Generator().manual_seed(5)
    tensors, deltas = {}, {}
    for path in MODULES[family]:
        out_features, in_features = transformer.get_submodule(path).weight.shape
        down = torch.randn(RANK, in_features, generator=generator) * 0.3
        up = torch.randn(out_features, RANK, generator=generator) * 0.3
        tensors[f"{stem(path)}.{down_name}"], tensors[f"{stem(path)}.{up_name}"] = down, up
        if has_alpha:
            tensors[f"{stem(path)}.alpha"] = torch.tensor(ALPHA)
        deltas[path] = (ALPHA / RANK if has_alpha else 1.0) * (up @ down)
    return save(tensors), deltas


@pytest.mark.parametrize("family", list(MODULES))
def test_each_community_format_imports_and_applies_the_reference_deltas(family, transformers, tmp_path):
    transformer = transformers[family]
    base = {path: transformer.get_submodule(path).weight.detach().clone() for path in MODULES[family]}
    for fmt in FORMATS:
        data, deltas = community_file(transformer, family, fmt)
        assert detect_format(load_file_keys(data)) == fmt
        report = convert(transformer, data, family=family, directory=tmp_path / fmt)
        assert report["modules"] == {"transformer": len(deltas)}, fmt
        # The saved file, applied as generation applies it (diffusers' adapter, fused), moves each weight by its delta.
        saved = load_file(str(tmp_path / fmt / WEIGHTS_FILE))
        assert all(key.startswith("transformer.") for key in saved)
        transformer.load_lora_adapter(saved, prefix="transformer", adapter_name="check")
        transformer.fuse_lora(adapter_names=["check"])
        try:
            for path, delta in deltas.items():
                moved = transformer.get_submodule(path).weight.detach() - base[path]
                assert (moved - delta).abs().max() <= TOLERANCE, (fmt, path)
        finally:
            transformer.unfuse_lora()
            transformer.delete_adapters("check")
            with torch.no_grad():  # unfusing subtracts in float: put the exact base weights back
                for path, weight in base.items():
                    transformer.get_submodule(path).weight.copy_(weight)


def load_file_keys(data: bytes) -> list[str]:
    from core.loras.kohya import read_header

    return list(read_header(data)[0])


def test_keys_naming_no_module_or_another_family_are_refused_by_name(transformers, tmp_path):
    qwen_file, _ = community_file(transformers["qwen_image"], "qwen_image", "kohya")
    with pytest.raises(InvalidInput, match=r"lora_unet_transformer_blocks_1_img_mlp_net_2\.lora_down\.weight"):
        convert(transformers["z_image"], qwen_file, family="z_image", directory=tmp_path)
    wrong = save({"transformer.layers.0.attention.to_q.lora_A.weight": torch.zeros(RANK, 7),
                  "transformer.layers.0.attention.to_q.lora_B.weight": torch.zeros(32, RANK)})
    with pytest.raises(InvalidInput, match=r"another shape.*layers\.0\.attention\.to_q\.lora_A\.weight"):
        convert(transformers["z_image"], wrong, family="z_image", directory=tmp_path)
    assert not (tmp_path / WEIGHTS_FILE).exists()
