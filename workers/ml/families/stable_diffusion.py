"""What SD 1.x and SDXL share: CLIP text encoders, the 4-channel VAE, a UNet on a DDPM schedule
(epsilon or v-prediction, optional Min-SNR weighting). sd15.py and sdxl.py hold their differences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch

from core.training.params import LoraParams
from workers.ml.families.base import (
    Components,
    Family,
    FamilyError,
    freeze,
    pipeline_class_name,
    require_quantization,
)

TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


class StableDiffusionFamily(Family):
    is_xl: bool = False

    def accepted_pipeline_classes(self) -> tuple[str, ...]:
        return (self.pipeline_class, self.img2img_class or self.pipeline_class)

    def check_folder(self, model: str) -> None:
        found = pipeline_class_name(model)
        if found is None:
            return
        # An SD pipeline folder names its class: catch SD 1.5 vs SDXL mix-ups before loading gigabytes.
        is_xl = "XL" in found
        if self.is_xl and not is_xl:
            raise FamilyError(f"{model} is a {found}, not an SDXL model; choose the SD 1.5 family")
        if not self.is_xl and is_xl:
            raise FamilyError(f"{model} is an SDXL model ({found}); choose the SDXL family")

    def check_pipeline(self, model: str, pipe: Any) -> None:
        self._check_unet(model, pipe.unet)

    def _check_unet(self, model: str, unet: Any) -> None:
        is_xl = getattr(unet.config, "addition_embed_type", None) == "text_time"
        if self.is_xl and not is_xl:
            raise FamilyError(f"{model} is not an SDXL model (its UNet takes no size/crop conditioning)")
        if not self.is_xl and is_xl:
            raise FamilyError(f"{model} is an SDXL model; choose the SDXL family")

    def load_components(self, base_model: str, *, device: str, weight_dtype: torch.dtype,
                        quantize: str = "none") -> Components:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        self.check_folder(base_model)
        quantization = require_quantization(quantize, device)
        # Loaded straight into their precision (half the memory of loading fp32 and casting). The VAE stays in
        # fp32: SDXL's VAE overflows in fp16, and it only runs to cache latents and decode samples.
        tokenizers = [CLIPTokenizer.from_pretrained(base_model, subfolder="tokenizer")]
        text_encoders: list[Any] = [
            CLIPTextModel.from_pretrained(base_model, subfolder="text_encoder", dtype=weight_dtype)
        ]
        if self.is_xl:
            from transformers import CLIPTextModelWithProjection

            tokenizers.append(CLIPTokenizer.from_pretrained(base_model, subfolder="tokenizer_2"))
            text_encoders.append(CLIPTextModelWithProjection.from_pretrained(
                base_model, subfolder="text_encoder_2", dtype=weight_dtype))
        vae = AutoencoderKL.from_pretrained(base_model, subfolder="vae", dtype=torch.float32)
        options: dict[str, Any] = {"dtype": weight_dtype}
        if quantization is not None:
            options["quantization_config"] = quantization
        unet = UNet2DConditionModel.from_pretrained(base_model, subfolder="unet", **options)
        noise_scheduler = DDPMScheduler.from_pretrained(base_model, subfolder="scheduler")
        self._check_unet(base_model, unet)
        freeze([*text_encoders, vae, unet], device)
        return Components(family=self.name, tokenizers=tokenizers, text_encoders=text_encoders, vae=vae,
                          denoiser=unet, noise_scheduler=noise_scheduler)

    def lora_layers(self, peft_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """SD's diffusers layout (``lora.down``/``lora.up``), as train_text_to_image_lora.py writes it."""
        from diffusers.utils import convert_state_dict_to_diffusers

        return convert_state_dict_to_diffusers(peft_state)

    # ------------------------------------------------------------------------------- conditioning

    def tokenize(self, components: Components, captions: list[str]) -> list[torch.Tensor]:
        """Token ids of each caption, one (batch, 77) tensor per tokenizer."""
        return [
            tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                      return_tensors="pt").input_ids
            for tokenizer in components.tokenizers
        ]

    def encode_tokens(self, components: Components,
                      ids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hidden states the UNet attends to, and (SDXL) the pooled embedding of the second encoder.

        SD 1.x uses the last hidden state; SDXL the penultimate of both encoders, concatenated, exactly as
        its pipeline's encode_prompt does, so training and inference see the same conditioning.
        """
        device = components.denoiser.device
        if not self.is_xl:
            return components.text_encoders[0](ids[0].to(device), return_dict=False)[0], None
        hidden, pooled = [], None
        for encoder, token_ids in zip(components.text_encoders, ids, strict=True):
            output = encoder(token_ids.to(device), output_hidden_states=True)
            pooled = output[0]  # the projected pooled embedding (text_embeds) of the last encoder
            hidden.append(output.hidden_states[-2])
        return torch.cat(hidden, dim=-1), pooled

    def cache_captions(self, components: Components, captions: Sequence[str]) -> dict[str, Any]:
        if components.trained_text_encoders:
            # A trained encoder changes every step: keep only token ids and encode per step.
            return {caption: self.tokenize(components, [caption]) for caption in captions}
        cached: dict[str, Any] = {}
        with torch.no_grad():
            for caption in captions:
                hidden, pooled = self.encode_tokens(components, self.tokenize(components, [caption]))
                cached[caption] = (hidden[0].cpu(), None if pooled is None else pooled[0].cpu())
        return cached

    def conditioning(self, components: Components, cached: list[Any], images: list[Any],
                     device: str) -> dict[str, Any]:
        """Text conditioning of a batch and SDXL's size/crop ids."""
        if components.trained_text_encoders:
            ids = [torch.cat([entry[k] for entry in cached]) for k in range(len(components.tokenizers))]
            hidden, pooled = self.encode_tokens(components, ids)
        else:
            hidden = torch.stack([entry[0] for entry in cached]).to(device)
            # SDXL's cached embeddings always carry the pooled one (only SD 1.x's are None).
            pooled = torch.stack(cast("list[torch.Tensor]", [entry[1] for entry in cached])).to(device) \
                if self.is_xl else None
        if not self.is_xl:
            return {"hidden": hidden, "added": None}
        # SDXL's micro-conditioning, as its pipeline builds it: (original h, w, crop top, left, target h, w).
        # fp32, not the weights' dtype: bf16 would round sizes such as 3000 px to 3008.
        time_ids = torch.tensor([
            [image.original_size[1], image.original_size[0], *image.crop_top_left, image.bucket[1], image.bucket[0]]
            for image in images
        ], device=device, dtype=torch.float32)
        return {"hidden": hidden, "added": {"text_embeds": pooled, "time_ids": time_ids}}

    # ------------------------------------------------------------------------------------ latents

    def encode_latents(self, components: Components, pixels: torch.Tensor) -> torch.Tensor:
        vae = components.vae
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        # The distribution's mean, not a sample: deterministic, so a resumed run sees the same latents.
        encoded = vae.encode(pixels.to(vae.device, dtype=vae.dtype)).latent_dist.mean
        return (encoded - shift) * vae.config.scaling_factor

    def decode_latents(self, components: Components, latents: torch.Tensor) -> torch.Tensor:
        vae = components.vae
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return vae.decode(latents.float() / vae.config.scaling_factor + shift, return_dict=False)[0]

    # ---------------------------------------------------------------------------------- objective

    def train_timesteps(self, components: Components, latents: torch.Tensor, generator: torch.Generator,
                        params: LoraParams) -> torch.Tensor:
        schedule_length = components.noise_scheduler.config.num_train_timesteps
        return torch.randint(0, schedule_length, (len(latents),), generator=generator, device=latents.device)

    def eval_timesteps(self, components: Components, latent_shape: Sequence[int],
                       fractions: torch.Tensor) -> torch.Tensor:
        schedule_length = components.noise_scheduler.config.num_train_timesteps
        return (fractions * schedule_length).long().clamp(max=schedule_length - 1)

    def add_noise(self, components: Components, latents: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        return components.noise_scheduler.add_noise(latents, noise, timesteps)

    def predict(self, components: Components, noisy: torch.Tensor, timesteps: torch.Tensor,
                conditioning: dict[str, Any]) -> torch.Tensor:
        return components.denoiser(noisy, timesteps, conditioning["hidden"],
                                   added_cond_kwargs=conditioning["added"], return_dict=False)[0]

    def target(self, components: Components, latents: torch.Tensor, noise: torch.Tensor,
               timesteps: torch.Tensor) -> torch.Tensor:
        scheduler = components.noise_scheduler
        prediction_type = scheduler.config.prediction_type
        if prediction_type == "epsilon":
            return noise
        if prediction_type == "v_prediction":
            return scheduler.get_velocity(latents, noise, timesteps)
        raise FamilyError(f"unsupported prediction type {prediction_type!r} (epsilon or v_prediction)")

    def loss_weights(self, components: Components, timesteps: torch.Tensor,
                     params: LoraParams) -> torch.Tensor | None:
        """min(SNR, γ)/SNR per sample (Min-SNR, Hang et al. 2023) when γ is set."""
        gamma = params.min_snr_gamma
        if gamma is None:
            return None
        from diffusers.training_utils import compute_snr

        scheduler = components.noise_scheduler
        snr = compute_snr(scheduler, timesteps)
        weights = torch.clamp(snr, max=gamma)
        # v-prediction's loss already carries a factor SNR + 1 relative to epsilon's.
        return weights / (snr + 1) if scheduler.config.prediction_type == "v_prediction" else weights / snr

    # ----------------------------------------------------------------------------------- sampling

    def pipeline_options(self, dtype: torch.dtype) -> dict[str, Any]:
        if self.is_xl:
            return {"dtype": dtype}
        return {"dtype": dtype, "safety_checker": None, "requires_safety_checker": False}

    def sample_pipeline(self, components: Components, base_model: str) -> Any:
        import diffusers

        parts: dict[str, Any] = {"vae": components.vae, "unet": components.denoiser,
                                 "text_encoder": components.text_encoders[0], "tokenizer": components.tokenizers[0]}
        if self.is_xl:
            parts.update(text_encoder_2=components.text_encoders[1], tokenizer_2=components.tokenizers[1])
        else:
            parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        # Only the scheduler is read from disk: the same one a user's from_pretrained pipeline gets.
        return getattr(diffusers, self.pipeline_class).from_pretrained(base_model, **parts)

    def render_sample(self, components: Components, pipeline: Any, prompt: str, *, steps: int, guidance: float,
                      generator: torch.Generator, width: int, height: int,
                      cache: dict[str, Any] | None = None) -> Any:
        latents = pipeline(prompt, num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                           height=height, width=width, output_type="latent").images
        # Decoded in fp32 outside autocast: the fp32 VAE must not run in fp16 (SDXL's overflows), and the
        # pipelines themselves would hand it half-precision latents.
        with torch.autocast(latents.device.type, enabled=False):
            image = self.decode_latents(components, latents)
        return pipeline.image_processor.postprocess(image, output_type="pil")[0]
