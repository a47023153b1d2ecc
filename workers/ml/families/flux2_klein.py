"""FLUX.2 [klein]: ``Flux2Transformer2DModel`` (double- and single-stream blocks), Qwen3 text encoder
(hidden states 9, 18 and 27 stacked), ``AutoencoderKLFlux2`` whose latents are patchified 2×2 and
normalised by the VAE's batch-norm running mean/std. The pipeline edits from reference images
(``image=``), each placed at its own time coordinate. Train the base model (FLUX.2-klein-base-4B);
the distilled FLUX.2-klein-4B renders in 4 steps without CFG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from workers.ml.families.base import Components
from workers.ml.families.flow import FlowFamily

MAX_SEQUENCE_LENGTH = 512  # the pipeline's default: training conditions on the same padded length


class Flux2Klein(FlowFamily):
    name = "flux2_klein"
    pipeline_class = "Flux2KleinPipeline"
    text_encoder_class = "Qwen3ForCausalLM"
    transformer_class = "Flux2Transformer2DModel"
    vae_class = "AutoencoderKLFlux2"

    def lora_target_modules(self, denoiser: Any) -> list[str]:
        # diffusers' klein script: attention of the double blocks, the single blocks' fused QKV+MLP input
        # and their output projections (named one by one: "to_out" alone would also match the double
        # blocks' to_out ModuleList).
        singles = len(denoiser.single_transformer_blocks)
        return ["to_k", "to_q", "to_v", "to_out.0", "to_qkv_mlp_proj",
                *(f"single_transformer_blocks.{i}.attn.to_out" for i in range(singles))]

    def encode_captions(self, pipeline: Any, captions: list[str], device: str) -> list[dict[str, torch.Tensor]]:
        # Every caption is padded to the same length: a batch encodes each exactly as alone.
        embeds, _ = pipeline.encode_prompt(prompt=captions, device=device, max_sequence_length=MAX_SEQUENCE_LENGTH)
        return [{"embeds": row} for row in embeds]

    def conditioning(self, components: Components, cached: list[Any], images: list[Any],
                     device: str) -> dict[str, Any]:
        from diffusers import Flux2KleinPipeline

        dtype = next(components.denoiser.parameters()).dtype
        embeds = torch.stack([entry["embeds"] for entry in cached]).to(device, dtype)
        return {"embeds": embeds, "text_ids": Flux2KleinPipeline._prepare_text_ids(embeds).to(device)}

    def _bn(self, components: Components, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vae = components.vae
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(like.device, like.dtype)
        return mean, std

    def encode_latents(self, components: Components, pixels: torch.Tensor) -> torch.Tensor:
        from diffusers import Flux2KleinPipeline

        vae = components.vae
        latents = vae.encode(pixels.to(vae.device, dtype=vae.dtype)).latent_dist.mode()
        latents = Flux2KleinPipeline._patchify_latents(latents)
        mean, std = self._bn(components, latents)
        return (latents - mean) / std

    def image_tokens(self, latent_shape: Sequence[int]) -> int:
        return int(latent_shape[-2]) * int(latent_shape[-1])  # already patchified: one token per latent pixel

    def predict(self, components: Components, noisy: torch.Tensor, timesteps: torch.Tensor,
                conditioning: dict[str, Any]) -> torch.Tensor:
        from diffusers import Flux2KleinPipeline

        transformer = components.denoiser
        height, width = noisy.shape[-2:]
        packed = Flux2KleinPipeline._pack_latents(noisy)
        ids = Flux2KleinPipeline._prepare_latent_ids(noisy).to(noisy.device)
        output = transformer(hidden_states=packed.to(conditioning["embeds"].dtype), timestep=timesteps, guidance=None,
                             encoder_hidden_states=conditioning["embeds"], txt_ids=conditioning["text_ids"],
                             img_ids=ids, return_dict=False)[0]
        return Flux2KleinPipeline._unpack_latents_with_ids(output[:, :packed.size(1)], ids, height, width)

    def call_arguments(self, prompt: str, negative_prompt: str, cfg: float) -> dict[str, Any]:
        # The klein pipeline has no negative prompt (CFG of the base model runs against an empty one).
        return {"prompt": prompt, "guidance_scale": cfg}

    def pipeline_embeddings(self, positive: dict[str, torch.Tensor], negative: dict[str, torch.Tensor],
                            device: Any, dtype: torch.dtype) -> dict[str, Any]:
        return {"prompt_embeds": positive["embeds"][None].to(device, dtype),
                "negative_prompt_embeds": negative["embeds"][None].to(device, dtype),
                "max_sequence_length": MAX_SEQUENCE_LENGTH}


FAMILY = Flux2Klein()
