"""The DiT families' LoRA downloads (FLUX.2 klein, Z-Image, Qwen-Image): the ComfyUI file and the kohya /
musubi-tuner file, judged two ways on tiny real-class transformers, alpha ≠ rank and an ``alpha_pattern`` entry
included (strength kept):

* applied the way ComfyUI applies a LoRA (each key names one weight of ComfyUI's model, ``diffusion_model.X`` or
  ``lora_unet_<X with _>``; its delta is ``alpha / rank · up @ down``, scale 1 without ``.alpha``; a diffusers
  q/k/v name lands on its row block of the fused ``qkv``), against the diffusers transformer's own PEFT deltas
  moved to ComfyUI's native layout by the rename table below, written out from ComfyUI's model code;
* re-imported through our own importer (``workers/ml/lora_import_dit.py``), every module back at its own rank.

What ComfyUI's REAL code does with these files was checked once, not at test time (ComfyUI is not installed
here): ComfyUI at upstream master of 2026-01-07 (the pollockjj/ComfyUI mirror, merge 618b803), its
``comfy.lora.model_lora_keys_unet`` + ``comfy.lora_convert.convert_lora`` + ``comfy.lora.load_lora`` +
``ModelPatcher.add_patches`` + ``comfy.lora.calculate_weight`` run on tiny ``model_base.Flux2`` / ``ZImage``
(Lumina2) / ``QwenImage`` models built from ``comfy.supported_models`` with these tiny configs: every key of both
files loads (no "lora key not loaded"), every targeted weight is patched, worst relative delta error ≤ 6.4e-4
(fp16); the former FLUX.2 file (``diffusion_model.<diffusers name>``) loaded 0 of its 44 keys. See
core/loras/README.md.
"""

from __future__ import annotations

import re

import diffusers
import pytest
import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save as save_numpy

from core.errors import InvalidInput
from core.loras.comfyui import to_comfyui
from core.loras.dit_kohya import to_kohya_dit
from core.loras.imports import detect_format
from core.loras.kohya import read_header
from core.training.params import WEIGHTS_FILE
from tests.tiny_dit import tiny_dit_transformer
from workers.ml.lora_import_dit import PIPELINES, convert

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline_hub")]

RANK, ALPHA = 4, 8  # alpha ≠ rank: an export writing alpha = rank would halve the strength
TOLERANCE = 2e-3  # the exports are fp16: each entry of up and down rounds to fp16 (relative 2^-11 each)
# peft regexes (full match): every Linear kind ComfyUI's layout has a name for, per family.
TARGETS = {
    "flux2_klein": r".*\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out|linear_in|linear_out"
                   r"|to_qkv_mlp_proj)|single_transformer_blocks\.\d+\.attn\.to_out",
    "z_image": r".*\.(to_q|to_k|to_v|to_out\.0|w1|w2|w3)|(layers|noise_refiner)\.\d+\.adaLN_modulation\.0",
    "qwen_image": r".*\.(to_q|to_k|to_v|to_out\.0|add_q_proj|to_add_out|img_mlp\.net\.2|img_mod\.1)",
}
# One module kind with its own alpha: the fused q/k/v then carry different scales.
ALPHA_PATTERN = {"flux2_klein": {"to_k": 16}, "z_image": {"to_v": 2}, "qwen_image": {"to_q": 2}}
# diffusers module → (ComfyUI's native module, row block of a fused q/k/v or None), from ComfyUI's
# comfy/ldm/flux (FLUX.2), comfy/ldm/lumina (Z-Image) and comfy/ldm/qwen_image (diffusers' names).
NATIVE = {
    "flux2_klein": [(r"^transformer_blocks\.(\d+)\.attn\.to_([qkv])$", r"double_blocks.\1.img_attn.qkv"),
                    (r"^transformer_blocks\.(\d+)\.attn\.add_([qkv])_proj$", r"double_blocks.\1.txt_attn.qkv"),
                    (r"^transformer_blocks\.(\d+)\.attn\.to_out\.0$", r"double_blocks.\1.img_attn.proj"),
                    (r"^transformer_blocks\.(\d+)\.attn\.to_add_out$", r"double_blocks.\1.txt_attn.proj"),
                    (r"^transformer_blocks\.(\d+)\.ff\.linear_in$", r"double_blocks.\1.img_mlp.0"),
                    (r"^transformer_blocks\.(\d+)\.ff\.linear_out$", r"double_blocks.\1.img_mlp.2"),
                    (r"^transformer_blocks\.(\d+)\.ff_context\.linear_in$", r"double_blocks.\1.txt_mlp.0"),
                    (r"^transformer_blocks\.(\d+)\.ff_context\.linear_out$", r"double_blocks.\1.txt_mlp.2"),
                    (r"^single_transformer_blocks\.(\d+)\.attn\.to_qkv_mlp_proj$", r"single_blocks.\1.linear1"),
                    (r"^single_transformer_blocks\.(\d+)\.attn\.to_out$", r"single_blocks.\1.linear2")],
    "z_image": [(r"^(\w+\.\d+)\.attention\.to_([qkv])$", r"\1.attention.qkv"),
                (r"^(\w+\.\d+)\.attention\.to_out\.0$", r"\1.attention.out"), (r"^(.*)$", r"\1")],
    "qwen_image": [(r"^(.*)$", r"\1")],
}


def our_lora(family: str, folder) -> tuple[object, bytes]:
    """A LoRA on a tiny transformer saved as the studio saves the DiT families' (diffusers' save_lora_weights)."""
    transformer = tiny_dit_transformer(family)
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS[family], alpha_pattern=ALPHA_PATTERN[family],
                        init_lora_weights="gaussian")
    transformer.add_adapter(config)
    generator = torch.Generator().manual_seed(1)
    for name, parameter in transformer.named_parameters():
        if "lora_B" in name:
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.3
    getattr(diffusers, PIPELINES[family]).save_lora_weights(
        str(folder), transformer_lora_layers=get_peft_model_state_dict(transformer),
        transformer_lora_adapter_metadata=config.to_dict())
    return transformer, (folder / WEIGHTS_FILE).read_bytes()


def deltas_of(transformer, adapter: str = "default") -> dict[str, torch.Tensor]:
    """module → scaling · B @ A of the transformer's adapter."""
    out = {}
    for path, module in transformer.named_modules():
        if hasattr(module, "lora_A") and adapter in module.lora_A:
            out[path] = (module.scaling[adapter] * (module.lora_B[adapter].weight @ module.lora_A[adapter].weight)
                         ).detach()
    return out


def native_deltas(family: str, transformer, deltas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The diffusers deltas in ComfyUI's native layout (q/k/v stacked in that order into the fused weight)."""
    out: dict[str, torch.Tensor] = {}
    for module, delta in deltas.items():
        pattern, replacement = next((p, r) for p, r in NATIVE[family] if re.match(p, module))
        native = re.sub(pattern, replacement, module)
        qkv = re.match(pattern, module).groups()[-1] if native.endswith(".qkv") else None
        if qkv is None:
            out[native] = delta
            continue
        size = delta.shape[0]
        fused = out.setdefault(native, torch.zeros(3 * size, delta.shape[1]))
        part = "qkv".index(qkv)
        fused[part * size:(part + 1) * size] = delta
    return out


def comfy_applied(family: str, data: bytes) -> dict[str, torch.Tensor]:
    """native weight → the delta ComfyUI's loader adds at strength 1 (its documented LoRA arithmetic)."""
    tensors = {k: torch.from_numpy(v.astype("float32")) for k, v in load_numpy(data).items()}
    out: dict[str, torch.Tensor] = {}
    for key, up in tensors.items():
        match = re.match(r"^(?P<name>.+)\.(?:lora_up|lora_B)\.weight$", key)
        if match is None:
            continue
        name = match["name"]
        down = tensors[f"{name}.lora_down.weight" if key.endswith("lora_up.weight") else f"{name}.lora_A.weight"]
        scale = float(tensors[f"{name}.alpha"]) / down.shape[0] if f"{name}.alpha" in tensors else 1.0
        delta = scale * (up @ down)
        native = (name.removeprefix("diffusion_model.") if name.startswith("diffusion_model.")
                  else name.removeprefix("lora_unet_"))
        qkv = re.match(r"^(.*\.attention)\.to_([qkv])$", native) if family == "z_image" else None
        if qkv:  # ComfyUI's Lumina2 map: a diffusers q/k/v key patches its row block of attention.qkv
            fused = out.setdefault(f"{qkv[1]}.qkv", torch.zeros(3 * delta.shape[0], delta.shape[1]))
            part = "qkv".index(qkv[2])
            fused[part * delta.shape[0]:(part + 1) * delta.shape[0]] += delta
        elif family == "z_image" and native.endswith(".attention.to_out.0"):
            out[native.removesuffix(".to_out.0") + ".out"] = delta
        else:
            out[native] = delta
    return out


def flat(name: str) -> str:
    return name.replace(".", "_")


@pytest.mark.parametrize("family", list(PIPELINES))
def test_each_dit_export_moves_comfyuis_native_weights_exactly_as_our_lora_moves_the_transformer(family, tmp_path):
    transformer, ours = our_lora(family, tmp_path)
    expected = native_deltas(family, transformer, deltas_of(transformer))
    comfy, kohya = (to_comfyui(ours, family=family, base_model="m", trigger_word="ohwx", name="ava"),
                    to_kohya_dit(ours, family=family, base_model="m", trigger_word="ohwx", name="ava"))
    for export, fmt in ((comfy, "comfyui"), (kohya, "kohya")):
        tensors = load_numpy(export.data)
        assert detect_format(tensors) == fmt
        assert {str(v.dtype) for v in tensors.values()} == {"float16"}
        got = comfy_applied(family, export.data)
        names = set(got) if fmt == "comfyui" else {flat(name) for name in got}
        assert names == (set(expected) if fmt == "comfyui" else {flat(name) for name in expected}), fmt
        for native, delta in expected.items():
            applied = got[native] if fmt == "comfyui" else next(v for k, v in got.items() if flat(k) == flat(native))
            assert (applied - delta).abs().max() <= TOLERANCE * delta.abs().max(), (fmt, native)
    metadata = read_header(kohya.data)[1]
    assert (metadata["ss_network_dim"], metadata["ss_base_model_version"], metadata["studio_trigger_word"]) == \
        (str(3 * RANK if family != "qwen_image" else RANK), family, "ohwx")
    assert read_header(comfy.data)[1]["studio_lora_alpha"] == str(ALPHA)


def test_the_flux2_files_use_comfyuis_native_names_with_q_k_v_fused(tmp_path):
    _, ours = our_lora("flux2_klein", tmp_path)
    comfy = load_numpy(to_comfyui(ours, family="flux2_klein", base_model="m").data)
    kohya = load_numpy(to_kohya_dit(ours, family="flux2_klein", base_model="m").data)
    assert comfy["diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight"].shape == (3 * 32, 3 * RANK)
    assert "diffusion_model.single_blocks.0.linear1.lora_A.weight" in comfy
    assert not any("transformer_blocks" in key for key in [*comfy, *kohya])
    # q, k, v share one scale in the txt stream (alpha = scale × fused rank); in the img stream to_k has its own
    # alpha_pattern entry, so each part's up carries its scale and alpha = the fused rank.
    assert float(kohya["lora_unet_double_blocks_0_txt_attn_qkv.alpha"]) == ALPHA / RANK * 3 * RANK
    assert float(kohya["lora_unet_double_blocks_0_img_attn_qkv.alpha"]) == 3 * RANK
    assert float(kohya["lora_unet_double_blocks_0_img_mlp_0.alpha"]) == ALPHA


@pytest.mark.parametrize("family", list(PIPELINES))
def test_both_dit_exports_import_back_through_our_importer_at_their_own_rank(family, tmp_path):
    transformer, ours = our_lora(family, tmp_path)
    expected = deltas_of(transformer)
    fresh = tiny_dit_transformer(family, seed=1)
    for fmt, export in (("comfyui", to_comfyui), ("kohya", to_kohya_dit)):
        data = export(ours, family=family, base_model="m").data
        report = convert(fresh, data, family=family, directory=tmp_path / fmt)
        assert report["modules"] == {"transformer": len(expected)}, fmt
        saved = {k: torch.from_numpy(v) for k, v in load_numpy((tmp_path / fmt / WEIGHTS_FILE).read_bytes()).items()}
        assert {v.shape[0] for k, v in saved.items() if k.endswith("lora_A.weight")} == {RANK}, fmt
        fresh.load_lora_adapter(saved, prefix="transformer", adapter_name=fmt)
        got = deltas_of(fresh, fmt)
        assert got.keys() == expected.keys(), fmt
        for path, delta in expected.items():
            assert (got[path] - delta).abs().max() <= TOLERANCE * delta.abs().max(), (fmt, path)
        fresh.delete_adapters(fmt)


def test_the_dit_exports_refuse_what_they_cannot_place():
    zeros = torch.zeros(1, 1).numpy()
    with pytest.raises(InvalidInput, match=r"SD 1\.5 / SDXL use the kohya file"):
        to_comfyui(save_numpy({"x": zeros}), family="sd15", base_model="m")
    with pytest.raises(InvalidInput, match=r"not 'sd15'"):
        to_kohya_dit(save_numpy({"x": zeros}), family="sd15", base_model="m")
    for export in (to_comfyui, to_kohya_dit):
        with pytest.raises(InvalidInput, match=r"unet\.down\.lora_A\.weight"):
            export(save_numpy({"unet.down.lora_A.weight": zeros}), family="z_image", base_model="m")
        # A FLUX.2 module ComfyUI's layout has no name for (its final norm's modulation: ComfyUI swaps its halves).
        unplaced = {f"transformer.norm_out.linear.{part}.weight": zeros for part in ("lora_A", "lora_B")}
        with pytest.raises(InvalidInput, match=r"norm_out\.linear"):
            export(save_numpy(unplaced), family="flux2_klein", base_model="m")
