"""Estimate a training run's peak GPU memory before it is submitted.

A model of four parts, each from a published figure rather than a measurement of ours:
frozen weights (parameter counts of the published architectures × bytes per parameter), the
LoRA's trainable state (weights, gradients and optimizer moments in fp32), activations (per
image, proportional to pixel count, divided by ~3.5 with gradient checkpointing; per-image
figures from diffusers' and kohya's reported LoRA runs), and the CUDA context and allocator
slack. It is a guide with roughly ±25% error, good for "will this fit on a 24 GB card".
Measured peaks for the real architectures come from ``bench/train.py`` on a GPU machine.

The DiT families (FLUX.2 [klein], Z-Image, Qwen-Image) cache their prompt embeddings and unload the
(multi-billion-parameter) LLM text encoder before training, so their peak is the larger of two phases:
caching (text encoder + VAE) and training (transformer + LoRA + activations). Their activation figures
are first guesses scaled from the transformers' widths and token counts, not measurements: no GPU was
lent when they were written; replace them with ``bench/train.py --device cuda`` peaks when one is.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.training.params import LoraParams

GIB = 1024**3


@dataclass(frozen=True)
class FamilyProfile:
    unet_params: float
    text_encoder_params: float  # both encoders for SDXL
    vae_params: float
    # Trainable LoRA parameters per unit of rank on the UNet attention projections.
    lora_params_per_rank: float
    text_lora_params_per_rank: float
    # Activation memory of one image at the family's native side, half precision, no checkpointing.
    activation_gib_native: float
    native_side: int
    # False where the text encoder is unloaded after caching embeddings (the DiT families).
    text_encoder_resident: bool = True


PROFILES: dict[str, FamilyProfile] = {
    # SD 1.5: 860 M UNet, 123 M CLIP-L, 84 M VAE. A rank-4 attention LoRA has ~0.8 M parameters.
    "sd15": FamilyProfile(860e6, 123e6, 84e6, 0.2e6, 0.06e6, 3.2, 512),
    # SDXL: 2.57 G UNet, 123 M CLIP-L + 695 M OpenCLIP-bigG, 84 M VAE. Rank 4 ≈ 11.6 M parameters.
    "sdxl": FamilyProfile(2567e6, 818e6, 84e6, 2.9e6, 0.4e6, 14.0, 1024),
    # FLUX.2 [klein] 4B: 3.9 G transformer (5 double + 20 single blocks, width 3072), Qwen3-4B text encoder,
    # 84 M VAE. LoRA on to_q/k/v/out + the single blocks' fused projections: ~1.05 M parameters per rank.
    "flux2_klein": FamilyProfile(3.9e9, 4.0e9, 84e6, 1.05e6, 0.0, 10.0, 1024, text_encoder_resident=False),
    # Z-Image: 6.15 G S3-DiT transformer (width 3840, 30 + 4 refiner layers), Qwen3-4B, the 84 M FLUX.1 VAE.
    "z_image": FamilyProfile(6.15e9, 4.0e9, 84e6, 1.04e6, 0.0, 14.0, 1024, text_encoder_resident=False),
    # Qwen-Image: 20.4 G MMDiT (60 layers, width 3072), Qwen2.5-VL-7B (8.3 G), 127 M VAE. ~1.47 M per rank.
    "qwen_image": FamilyProfile(20.4e9, 8.3e9, 127e6, 1.47e6, 0.0, 30.0, 1024, text_encoder_resident=False),
}
# Bytes per frozen parameter of a quantised base (NF4 keeps a scale per 64 weights: ~4.5 bits).
QUANTIZED_BYTES = {"nf4": 0.56, "int8": 1.0, "fp8": 1.0}
CHECKPOINTING_FACTOR = 3.5  # activation memory saved by gradient checkpointing
CUDA_OVERHEAD_GIB = 1.2  # context, cuDNN/cuBLAS workspaces and allocator fragmentation


@dataclass(frozen=True)
class VramEstimate:
    weights_gib: float
    trainable_gib: float
    activations_gib: float
    overhead_gib: float

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.trainable_gib + self.activations_gib + self.overhead_gib

    def rows(self) -> list[tuple[str, float]]:
        return [
            ("frozen weights", self.weights_gib),
            ("LoRA weights, gradients, optimizer", self.trainable_gib),
            ("activations", self.activations_gib),
            ("CUDA context and slack", self.overhead_gib),
        ]


def estimate_vram(params: LoraParams) -> VramEstimate:
    profile = PROFILES[params.family]
    half = params.mixed_precision in ("fp16", "bf16")
    weight_bytes = 2 if half else 4
    denoiser_bytes = QUANTIZED_BYTES.get(params.quantize_base, weight_bytes)
    if profile.text_encoder_resident:
        frozen = (profile.unet_params + profile.text_encoder_params) * denoiser_bytes \
            + profile.vae_params * weight_bytes
    else:
        # The peak of either phase: caching (text encoder, VAE) or training (transformer).
        frozen = max(profile.text_encoder_params * denoiser_bytes + profile.vae_params * weight_bytes,
                     profile.unet_params * denoiser_bytes)

    lora_params = profile.lora_params_per_rank * params.rank
    if params.train_text_encoder:
        lora_params += profile.text_lora_params_per_rank * params.rank
    # fp32 weight + gradient + two moments (8-bit AdamW keeps its moments in one byte each).
    per_param = 4 + 4 + (2 if params.optimizer == "adamw8bit" else 8)
    trainable = lora_params * per_param

    pixels = (params.resolution / profile.native_side) ** 2
    activations = profile.activation_gib_native * GIB * pixels * params.batch_size
    if not half:
        activations *= 2
    if params.gradient_checkpointing:
        activations /= CHECKPOINTING_FACTOR
    if params.train_text_encoder:
        activations *= 1.1  # the text encoder's own activations, small next to the UNet's
    return VramEstimate(
        weights_gib=frozen / GIB,
        trainable_gib=trainable / GIB,
        activations_gib=activations / GIB,
        overhead_gib=CUDA_OVERHEAD_GIB,
    )
