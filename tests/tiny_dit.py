"""Test-only tiny DiT transformers (FLUX.2 klein, Z-Image, Qwen-Image) for the LoRA format tests: the real
diffusers 0.42.1 classes with small configs, random weights, no pipeline around them. (The family plug-ins build
their own tiny pipelines in workers/ml/tiny_models.py; these only give the LoRA tests real module names.)"""

from __future__ import annotations

from typing import Any


def tiny_dit_transformer(family: str, *, seed: int = 0) -> Any:
    import torch
    from diffusers import Flux2Transformer2DModel, QwenImageTransformer2DModel, ZImageTransformer2DModel

    torch.manual_seed(seed)
    if family == "qwen_image":
        return QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                           attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                           axes_dims_rope=(8, 4, 4))
    if family == "z_image":
        return ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32,
                                        n_layers=2, n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=16,
                                        axes_dims=[8, 4, 4], axes_lens=[256, 32, 32])
    if family == "flux2_klein":
        return Flux2Transformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                       attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                       axes_dims_rope=(4, 4, 4, 4))
    raise ValueError(family)


# --- a diffusers transformer written back in its family's original single-file layout -------------------------
# diffusers 0.42.1 converts these layouts on load (loaders/single_file_utils.py:
# convert_flux2_transformer_checkpoint_to_diffusers, convert_z_image_transformer_checkpoint_to_diffusers; Qwen-Image's
# original names are diffusers' own) but ships no converter the other way, so the inverse is written out here from
# the converters' name tables: our code, so a wrong name shows as a refused or different load.
COMFY_PREFIX = "model.diffusion_model."
_FLUX2_NAMES = {  # diffusers → BFL's names (flux2 reference code), outside the blocks
    "time_guidance_embed.timestep_embedder.linear_1.": "time_in.in_layer.",
    "time_guidance_embed.timestep_embedder.linear_2.": "time_in.out_layer.",
    "double_stream_modulation_img.linear.": "double_stream_modulation_img.lin.",
    "double_stream_modulation_txt.linear.": "double_stream_modulation_txt.lin.",
    "single_stream_modulation.linear.": "single_stream_modulation.lin.",
    "x_embedder.": "img_in.", "context_embedder.": "txt_in.", "proj_out.": "final_layer.linear.",
}
_FLUX2_DOUBLE = {"attn.norm_q.weight": "img_attn.norm.query_norm.scale", "attn.norm_k.weight":
                 "img_attn.norm.key_norm.scale", "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
                 "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale", "attn.to_out.0.weight":
                 "img_attn.proj.weight", "attn.to_add_out.weight": "txt_attn.proj.weight",
                 "ff.linear_in.weight": "img_mlp.0.weight", "ff.linear_out.weight": "img_mlp.2.weight",
                 "ff_context.linear_in.weight": "txt_mlp.0.weight", "ff_context.linear_out.weight": "txt_mlp.2.weight"}
_FLUX2_SINGLE = {"attn.to_qkv_mlp_proj.weight": "linear1.weight", "attn.to_out.weight": "linear2.weight",
                 "attn.norm_q.weight": "norm.query_norm.scale", "attn.norm_k.weight": "norm.key_norm.scale"}
_Z_IMAGE_NAMES = {"all_x_embedder.2-1.": "x_embedder.", "all_final_layer.2-1.": "final_layer.",
                  ".attention.to_out.0.": ".attention.out.", ".attention.norm_q.": ".attention.q_norm.",
                  ".attention.norm_k.": ".attention.k_norm."}


def _flux2_original(state: dict[str, Any]) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {}
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")}
    for n in sorted(blocks):
        src, dst = f"transformer_blocks.{n}.", f"double_blocks.{n}."
        out[f"{dst}img_attn.qkv.weight"] = torch.cat([state.pop(f"{src}attn.to_{p}.weight") for p in "qkv"])
        out[f"{dst}txt_attn.qkv.weight"] = torch.cat([state.pop(f"{src}attn.add_{p}_proj.weight") for p in "qkv"])
        for ours, theirs in _FLUX2_DOUBLE.items():
            out[dst + theirs] = state.pop(src + ours)
    singles = {int(k.split(".")[1]) for k in state if k.startswith("single_transformer_blocks.")}
    for n in sorted(singles):
        for ours, theirs in _FLUX2_SINGLE.items():
            out[f"single_blocks.{n}.{theirs}"] = state.pop(f"single_transformer_blocks.{n}.{ours}")
    shift, scale = state.pop("norm_out.linear.weight").chunk(2)  # diffusers keeps (scale, shift); BFL (shift, scale)
    out["final_layer.adaLN_modulation.1.weight"] = torch.cat([scale, shift])
    for key, value in state.items():
        for ours, theirs in _FLUX2_NAMES.items():
            if key.startswith(ours):
                key = theirs + key[len(ours):]
                break
        out[key] = value
    return out


def _z_image_original(state: dict[str, Any]) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {}
    for key in [k for k in state if k.endswith(".attention.to_q.weight")]:
        stem = key.removesuffix("to_q.weight")
        out[f"{stem}qkv.weight"] = torch.cat([state.pop(f"{stem}to_{p}.weight") for p in "qkv"])
    for key, value in state.items():
        for ours, theirs in _Z_IMAGE_NAMES.items():
            key = key.replace(ours, theirs)
        out[key] = value
    return out


def original_transformer(family: str, state: dict[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """A diffusers transformer state dict under its family's original names (ComfyUI's ``prefix`` optional)."""
    state = dict(state)
    converted = {"flux2_klein": _flux2_original, "z_image": _z_image_original}.get(family, dict)(state)
    return {prefix + key: value.contiguous() for key, value in converted.items()}


def write_transformer_file(pipeline_folder: Any, target: Any, family: str, *, prefix: str = "") -> Any:
    """The transformer of a tiny pipeline folder as one original-layout ``.safetensors`` (a ComfyUI
    "diffusion_models" file); returns ``target``."""
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    (weights,) = (Path(pipeline_folder) / "transformer").glob("*.safetensors")
    save_file(original_transformer(family, load_file(str(weights)), prefix=prefix), str(target))
    return target
