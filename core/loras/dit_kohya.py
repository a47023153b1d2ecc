"""Our DiT LoRA files (FLUX.2 klein, Z-Image, Qwen-Image) in kohya's format, without torch.

``lora_unet_<native module path, dots as _>.lora_down/.lora_up.weight`` in fp16 plus an ``.alpha`` scalar, and
``ss_*`` metadata: kohya sd-scripts' convention (musubi-tuner, kohya's DiT trainer, uses it too; that it names
FLUX.2 / Z-Image modules exactly so was not checked). The native paths (``core/loras/dit_names.py``) are the
model's original ones, which ComfyUI maps for every model as ``lora_unet_<its weight name with _>``:
``lora_unet_double_blocks_0_img_attn_qkv`` (FLUX.2), ``lora_unet_layers_0_attention_qkv`` (Z-Image),
``lora_unet_transformer_blocks_0_attn_to_q`` (Qwen-Image). The ``.alpha`` holds the real alpha (for a fused
q/k/v module whose parts share one scale: scale × the fused rank; parts with different scales carry them in
their ``up`` block and alpha = rank). A module with no native place raises ``InvalidInput`` naming it.
"""

from __future__ import annotations

from core.errors import InvalidInput
from core.loras.dit_names import NATIVE_FAMILIES, diffusers_modules, native_loras
from core.loras.kohya import KohyaFile, _scalar, _ss_metadata


def to_kohya_dit(data: bytes, *, family: str, base_model: str, trigger_word: str = "", name: str = "") -> KohyaFile:
    """The kohya-format file of a DiT family's diffusers-format LoRA."""
    from safetensors.numpy import save

    if family not in NATIVE_FAMILIES:
        raise InvalidInput(f"the DiT kohya export covers {', '.join(NATIVE_FAMILIES)}, not {family!r}")
    loras = native_loras(family, diffusers_modules(data, family))
    out = {}
    for native, lora in loras.items():
        stem = "lora_unet_" + native.replace(".", "_")
        out[f"{stem}.lora_down.weight"] = lora.down.astype("float16")
        out[f"{stem}.lora_up.weight"] = lora.up.astype("float16")
        out[f"{stem}.alpha"] = _scalar(lora.alpha)
    header = _ss_metadata(family=family, base_model=base_model, trigger_word=trigger_word, name=name,
                          rank=max((lora.rank for lora in loras.values()), default=0),
                          alpha=max((lora.alpha for lora in loras.values()), default=0.0))
    return KohyaFile(data=save(out, metadata=header), modules=len(loras), keys=len(out))
