"""Test helper: a tiny diffusers SD 1.5 or SDXL folder written back as a single-file checkpoint in the original
(CompVis/LDM) layout, the way Civitai ships checkpoints, so the single-file install has a file to install.

The name mapping is the inverse of the one diffusers applies when it reads such a file, written out here from
the two layouts' documented module names (our own code, so a wrong name shows as a failed or different load).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",  # SDXL
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
# OpenCLIP's names (SDXL's second text encoder) for transformers' CLIP layer parts.
_OPEN_CLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                    "self_attn.out_proj": "attn.out_proj"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet(rest: str) -> str:
    name, _, tail = rest.partition(".")
    return f"{_RESNET[name]}.{tail}"


def unet_key(key: str, config: dict) -> str:
    per = config["layers_per_block"] + 1  # each down block's resnets (+ its downsampler) take this many slots
    for diffusers, ldm in _UNET_TOP.items():
        if key.startswith(diffusers + "."):
            return ldm + key[len(diffusers):]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        slot = per * int(m[1]) + int(m[3]) + 1
        return f"input_blocks.{slot}.0.{_resnet(m[4])}" if m[2] == "resnets" else f"input_blocks.{slot}.1.{m[4]}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{per * (int(m[1]) + 1)}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        slot = per * int(m[1]) + int(m[3])
        return f"output_blocks.{slot}.0.{_resnet(m[4])}" if m[2] == "resnets" else f"output_blocks.{slot}.1.{m[4]}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        block = int(m[1])
        has_attention = config["up_block_types"][block].startswith("CrossAttn")
        return f"output_blocks.{per * block + per - 1}.{2 if has_attention else 1}.conv.{m[2]}"
    raise KeyError(key)


def vae_key(key: str, config: dict) -> str:
    blocks = len(config["block_out_channels"])
    key = key.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.{m[2]}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"decoder.up.{blocks - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
        return f"decoder.up.{blocks - 1 - int(m[1])}.upsample.{m[2]}"
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
        return f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[m[2]]}.{m[3]}"
    return key


def _weights(folder: Path) -> dict:
    (file,) = folder.glob("*.safetensors")
    return load_file(str(file))


def open_clip(weights: dict) -> dict:
    """A transformers CLIPTextModelWithProjection's weights in OpenCLIP's layout (q, k, v fused in in_proj)."""
    out = {"token_embedding.weight": weights["text_model.embeddings.token_embedding.weight"],
           "positional_embedding": weights["text_model.embeddings.position_embedding.weight"],
           "ln_final.weight": weights["text_model.final_layer_norm.weight"],
           "ln_final.bias": weights["text_model.final_layer_norm.bias"],
           "text_projection": weights["text_projection.weight"].T.contiguous()}
    layers = {int(k.split(".")[3]) for k in weights if k.startswith("text_model.encoder.layers.")}
    for i in sorted(layers):
        src, dst = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for end in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{end}"] = torch.cat([weights[f"{src}self_attn.{p}_proj.{end}"] for p in "qkv"])
            for ours, theirs in _OPEN_CLIP_LAYER.items():
                out[f"{dst}{theirs}.{end}"] = weights[f"{src}{ours}.{end}"]
    return out


def to_single_file(pipeline_folder: Path, target: Path) -> Path:
    """``pipeline_folder`` (a tiny SD 1.5 or SDXL diffusers folder) as one original-layout ``.safetensors``."""
    sdxl = (pipeline_folder / "text_encoder_2").is_dir()
    unet_config = json.loads((pipeline_folder / "unet" / "config.json").read_text())
    vae_config = json.loads((pipeline_folder / "vae" / "config.json").read_text())
    tensors = {}
    for key, value in _weights(pipeline_folder / "unet").items():
        tensors[f"model.diffusion_model.{unet_key(key, unet_config)}"] = value
    for key, value in _weights(pipeline_folder / "vae").items():
        name = vae_key(key, vae_config)
        if ".mid.attn_1." in name and name.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # the original attention projections are 1×1 convolutions
        tensors[f"first_stage_model.{name}"] = value
    text = "conditioner.embedders.0.transformer.text_model." if sdxl else "cond_stage_model.transformer.text_model."
    for key, value in _weights(pipeline_folder / "text_encoder").items():
        tensors[f"{text}{key.removeprefix('text_model.')}"] = value
    if sdxl:
        for key, value in open_clip(_weights(pipeline_folder / "text_encoder_2")).items():
            tensors[f"conditioner.embedders.1.model.{key}"] = value
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(target))
    return target
