"""Qwen-Image: ``QwenImageTransformer2DModel`` (MMDiT, 2×2 patches), Qwen2.5-VL text encoder (last
hidden state after a fixed system prompt, with an attention mask), the video-style
``AutoencoderKLQwenImage`` (one frame; latents normalised by its per-channel mean/std). CFG is
"true CFG" (``true_cfg_scale``): a second pass with the negative prompt."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from workers.ml.families.base import Components
from workers.ml.families.flow import FlowFamily


class QwenImage(FlowFamily):
    name = "qwen_image"
    pipeline_class = "QwenImagePipeline"
    img2img_class = "QwenImageImg2ImgPipeline"
    text_encoder_class = "Qwen2_5_VLForConditionalGeneration"
    transformer_class = "QwenImageTransformer2DModel"
    vae_class = "AutoencoderKLQwenImage"

    def encode_captions(self, pipeline: Any, captions: list[str], device: str) -> list[dict[str, torch.Tensor]]:
        # One at a time: the pipeline pads a batch to its longest caption, which inference never does.
        entries = []
        for caption in captions:
            embeds, mask = pipeline.encode_prompt(prompt=caption, device=device)
            # The pipeline returns no mask when every token counts.
            entries.append({"embeds": embeds[0],
                            "mask": torch.ones(embeds.shape[1], dtype=torch.long) if mask is None else mask[0]})
        return entries

    def conditioning(self, components: Components, cached: list[Any], images: list[Any],
                     device: str) -> dict[str, Any]:
        # Captions differ in length: pad to the longest, the mask hides the padding.
        dtype = next(components.denoiser.parameters()).dtype
        length = max(entry["embeds"].shape[0] for entry in cached)
        embeds = torch.zeros(len(cached), length, cached[0]["embeds"].shape[1])
        mask = torch.zeros(len(cached), length, dtype=torch.long)
        for row, entry in enumerate(cached):
            size = entry["embeds"].shape[0]
            embeds[row, :size] = entry["embeds"]
            mask[row, :size] = entry["mask"].long()
        return {"embeds": embeds.to(device, dtype), "mask": mask.to(device)}

    def _statistics(self, components: Components, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config = components.vae.config
        mean = torch.tensor(config.latents_mean).view(1, config.z_dim, 1, 1, 1).to(like.device, like.dtype)
        std = torch.tensor(config.latents_std).view(1, config.z_dim, 1, 1, 1).to(like.device, like.dtype)
        return mean, std

    def encode_latents(self, components: Components, pixels: torch.Tensor) -> torch.Tensor:
        vae = components.vae
        # A one-frame video: (B, 3, 1, H, W).
        latents = vae.encode(pixels.to(vae.device, dtype=vae.dtype)[:, :, None]).latent_dist.mode()
        mean, std = self._statistics(components, latents)
        return ((latents - mean) / std)[:, :, 0]

    def _vae_scale(self, components: Components) -> int:
        return 2 ** len(components.vae.temperal_downsample)

    def image_tokens(self, latent_shape: Sequence[int]) -> int:
        return (int(latent_shape[-2]) // 2) * (int(latent_shape[-1]) // 2)

    def predict(self, components: Components, noisy: torch.Tensor, timesteps: torch.Tensor,
                conditioning: dict[str, Any]) -> torch.Tensor:
        from diffusers import QwenImagePipeline

        batch, channels, height, width = noisy.shape
        packed = QwenImagePipeline._pack_latents(noisy, batch, channels, height, width)
        output = components.denoiser(
            hidden_states=packed.to(conditioning["embeds"].dtype), encoder_hidden_states=conditioning["embeds"],
            encoder_hidden_states_mask=conditioning["mask"], timestep=timesteps,
            img_shapes=[(1, height // 2, width // 2)] * batch, return_dict=False)[0]
        scale = self._vae_scale(components)
        return QwenImagePipeline._unpack_latents(output, height * scale, width * scale, scale)[:, :, 0]

    def pipeline_embeddings(self, positive: dict[str, torch.Tensor], negative: dict[str, torch.Tensor],
                            device: Any, dtype: torch.dtype) -> dict[str, Any]:
        return {"prompt_embeds": positive["embeds"][None].to(device, dtype),
                "prompt_embeds_mask": positive["mask"][None].to(device),
                "negative_prompt_embeds": negative["embeds"][None].to(device, dtype),
                "negative_prompt_embeds_mask": negative["mask"][None].to(device)}

    def call_arguments(self, prompt: str, negative_prompt: str, cfg: float) -> dict[str, Any]:
        # True CFG runs only with a negative prompt; Qwen's own examples pass " " for "none".
        return {"prompt": prompt, "negative_prompt": negative_prompt or (" " if cfg > 1 else None),
                "true_cfg_scale": cfg}

    def load_lora(self, pipe: Any, path: Path, adapter_name: str | None = None) -> None:
        # diffusers 0.42's Qwen-Image loader insists on "lora" in every key, though the transformer's own
        # adapter loader builds LoKr (``lokr_w1``/``lokr_w2``) from the saved config: LoKr files go there.
        state, metadata = pipe.lora_state_dict(str(path.parent), weight_name=path.name, return_lora_metadata=True)
        if not any(".lokr_" in key for key in state):
            super().load_lora(pipe, path, adapter_name)
            return
        pipe.load_lora_into_transformer(state, transformer=pipe.transformer, adapter_name=adapter_name,
                                        metadata=metadata, _pipeline=pipe)

    def guidance_arguments(self, guidance: float) -> dict[str, Any]:
        # Qwen-Image is not guidance-distilled: its CFG is the second (negative) pass, true_cfg_scale.
        return {"true_cfg_scale": guidance}


FAMILY = QwenImage()
