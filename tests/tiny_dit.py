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
