"""Stable Diffusion 1.x: one CLIP-L text encoder (last hidden state), 4-channel VAE, epsilon UNet."""

from __future__ import annotations

from workers.ml.families.stable_diffusion import StableDiffusionFamily


class SD15(StableDiffusionFamily):
    name = "sd15"
    pipeline_class = "StableDiffusionPipeline"
    img2img_class = "StableDiffusionImg2ImgPipeline"
    is_xl = False


FAMILY = SD15()
