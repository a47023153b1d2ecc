"""Z-Image (Tongyi-MAI): ``ZImageTransformer2DModel`` (single-stream S3-DiT) conditioned on the Qwen3
encoder's penultimate hidden state (unpadded tokens only), the FLUX.1 ``AutoencoderKL`` (16 channels,
shift and scale), flow matching with shift 3. Its transformer takes t = 1 − σ and predicts the negated
velocity. Z-Image-Turbo renders in 8 steps without CFG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from workers.ml.families.base import Components
from workers.ml.families.flow import FlowFamily

MAX_SEQUENCE_LENGTH = 512


class ZImage(FlowFamily):
    name = "z_image"
    pipeline_class = "ZImagePipeline"
    img2img_class = "ZImageImg2ImgPipeline"
    text_encoder_class = "Qwen3Model"
    transformer_class = "ZImageTransformer2DModel"
    vae_class = "AutoencoderKL"

    def encode_captions(self, pipeline: Any, captions: list[str], device: str) -> list[dict[str, torch.Tensor]]:
        # Padded to one length and unpadded by the mask: a batch encodes each caption exactly as alone.
        # (A copy: the pipeline writes the chat-formatted prompts into the list it is given.)
        embeds = pipeline._encode_prompt(prompt=list(captions), device=device,
                                         max_sequence_length=MAX_SEQUENCE_LENGTH)
        return [{"embeds": row} for row in embeds]

    def conditioning(self, components: Components, cached: list[Any], images: list[Any],
                     device: str) -> dict[str, Any]:
        # Z-Image takes a list of unpadded prompt embeddings, one per image.
        dtype = next(components.denoiser.parameters()).dtype
        return {"embeds": [entry["embeds"].to(device, dtype) for entry in cached]}

    def encode_latents(self, components: Components, pixels: torch.Tensor) -> torch.Tensor:
        vae = components.vae
        latents = vae.encode(pixels.to(vae.device, dtype=vae.dtype)).latent_dist.mode()
        return (latents - vae.config.shift_factor) * vae.config.scaling_factor

    def image_tokens(self, latent_shape: Sequence[int]) -> int:
        return (int(latent_shape[-2]) // 2) * (int(latent_shape[-1]) // 2)

    def predict(self, components: Components, noisy: torch.Tensor, timesteps: torch.Tensor,
                conditioning: dict[str, Any]) -> torch.Tensor:
        dtype = next(components.denoiser.parameters()).dtype
        frames = list(noisy.to(dtype).unsqueeze(2).unbind(dim=0))  # (C, 1, h, w) per image
        output = components.denoiser(frames, 1.0 - timesteps, conditioning["embeds"], return_dict=False)[0]
        return -torch.stack(output, dim=0).squeeze(2)

    def pipeline_embeddings(self, positive: dict[str, torch.Tensor], negative: dict[str, torch.Tensor],
                            device: Any, dtype: torch.dtype) -> dict[str, Any]:
        return {"prompt_embeds": [positive["embeds"].to(device, dtype)],
                "negative_prompt_embeds": [negative["embeds"].to(device, dtype)],
                "max_sequence_length": MAX_SEQUENCE_LENGTH}


FAMILY = ZImage()
