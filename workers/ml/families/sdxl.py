"""Stable Diffusion XL: CLIP-L + OpenCLIP-bigG (penultimate states concatenated, pooled projection) and
the size/crop micro-conditioning; the VAE stays in fp32 (it overflows in fp16)."""

from __future__ import annotations

from workers.ml.families.stable_diffusion import StableDiffusionFamily


class SDXL(StableDiffusionFamily):
    name = "sdxl"
    pipeline_class = "StableDiffusionXLPipeline"
    img2img_class = "StableDiffusionXLImg2ImgPipeline"
    is_xl = True


FAMILY = SDXL()
