"""What the flow-matching DiT families share (FLUX.2 [klein], Z-Image, Qwen-Image).

The objective, as in diffusers' train_dreambooth_lora_{flux2_klein,z_image,qwen_image}.py: draw a
noise level σ ∈ [0, 1], mix ``x_σ = (1 − σ)·x + σ·ε``, and regress the transformer's output onto the
velocity ``ε − x`` with a plain MSE. σ is drawn uniformly or logit-normally (SD3's "logit_normal"),
then shifted as the family's scheduler shifts it at inference: a fixed shift (Z-Image: 3), or the
resolution-dependent one of a dynamic-shifting scheduler (FLUX.2, Qwen-Image), so training spends its
steps on the noise levels sampling will visit at that image size.

The LLM text encoders run once per caption while caching and are then dropped: training holds only
the transformer (and the VAE for samples). Samples are rendered from cached prompt embeddings.
"""

from __future__ import annotations

import gc
import math
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import torch

from core.errors import InvalidInput
from core.training.params import LoraParams
from workers.ml.families.base import Components, Family, FamilyError, freeze, require_quantization
from workers.ml.single_file import TransformerInstall, load_transformer

ENCODE_BATCH = 8  # captions per text-encoder call while caching


class FlowFamily(Family):
    text_encoder_class: str
    transformer_class: str
    vae_class: str

    # ------------------------------------------------------------------------------------ loading

    def load_components(self, base_model: str, *, device: str, weight_dtype: torch.dtype,
                        quantize: str = "none") -> Components:
        import diffusers
        import transformers

        self.check_folder(base_model)
        quantization = require_quantization(quantize, device)
        install = self.transformer_install(base_model)
        source = install.base_model if install is not None else base_model  # text encoder, VAE, scheduler
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, subfolder="tokenizer")
            text_encoder = getattr(transformers, self.text_encoder_class).from_pretrained(
                source, subfolder="text_encoder", dtype=weight_dtype)
            # The VAE runs only to cache latents and decode samples: fp32 keeps both exact.
            vae = getattr(diffusers, self.vae_class).from_pretrained(source, subfolder="vae", dtype=torch.float32)
            scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(source, subfolder="scheduler")
        except OSError as error:
            if install is None:
                raise
            raise FamilyError(self._missing_base(base_model, install, error)) from error
        options: dict[str, Any] = {"dtype": weight_dtype}
        if quantization is not None:
            options["quantization_config"] = quantization
        if install is not None:
            transformer = self._single_file_transformer(install, dtype=weight_dtype, quantization=quantization)
        else:
            transformer = getattr(diffusers, self.transformer_class).from_pretrained(
                base_model, subfolder="transformer", **options)
        freeze([text_encoder, vae, transformer], device)
        return Components(family=self.name, tokenizers=[tokenizer], text_encoders=[text_encoder], vae=vae,
                          denoiser=transformer, noise_scheduler=scheduler, denoiser_name="transformer")

    def _single_file_transformer(self, install: TransformerInstall, *, dtype: torch.dtype,
                                 quantization: Any = None) -> Any:
        try:
            return load_transformer(install, dtype=dtype, quantization=quantization)
        except (InvalidInput, OSError, ValueError) as error:
            raise FamilyError(f"could not load the transformer file {install.transformer.name}: {error}") from error

    def _missing_base(self, model: str, install: TransformerInstall, error: Exception) -> str:
        return (f"{model}: the text encoder and VAE of {install.transformer.name} come from "
                f"{install.base_model!r}, which could not be loaded ({type(error).__name__}: {error}). Without "
                "network access install that base model on the Models page first, or pair the file with an "
                "installed one")

    def load_paired_pipeline(self, model: str, install: TransformerInstall, *, dtype: torch.dtype) -> Any:
        """The family's pipeline around the single-file transformer, the rest from the paired base model."""
        import diffusers

        transformer = self._single_file_transformer(install, dtype=dtype)
        try:
            pipe = getattr(diffusers, self.pipeline_class).from_pretrained(
                install.base_model, transformer=transformer, **self.pipeline_options(dtype))
        except (OSError, ValueError, TypeError) as error:
            raise FamilyError(self._missing_base(model, install, error)) from error
        self.check_pipeline(model, pipe)
        return pipe

    # ------------------------------------------------------------------------------- conditioning

    def _encoding_pipeline(self, components: Components) -> Any:
        """The family's pipeline holding only the text encoder: its encode_prompt is what inference uses."""
        import diffusers

        return getattr(diffusers, self.pipeline_class)(
            scheduler=None, vae=None, transformer=None, text_encoder=components.text_encoders[0],
            tokenizer=components.tokenizers[0])

    @abstractmethod
    def encode_captions(self, pipeline: Any, captions: list[str], device: str) -> list[dict[str, torch.Tensor]]:
        """Each caption's conditioning (batch dimension dropped), as the pipeline computes it."""

    def cache_captions(self, components: Components, captions: Sequence[str]) -> dict[str, Any]:
        pipeline = self._encoding_pipeline(components)
        device = str(components.text_encoders[0].device)
        cached: dict[str, Any] = {}
        with torch.no_grad():
            for start in range(0, len(captions), ENCODE_BATCH):
                chunk = list(captions[start:start + ENCODE_BATCH])
                for caption, entry in zip(chunk, self.encode_captions(pipeline, chunk, device), strict=True):
                    cached[caption] = {key: value.detach().float().cpu() for key, value in entry.items()}
        return cached

    def release_text_encoders(self, components: Components) -> None:
        """Drop the LLM: billions of parameters that training and cached-embedding samples never use."""
        components.text_encoders.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ---------------------------------------------------------------------------------- objective

    @abstractmethod
    def image_tokens(self, latent_shape: Sequence[int]) -> int:
        """The transformer's image sequence length for latents of this (…, h, w) shape."""

    def shifted_sigmas(self, components: Components, u: torch.Tensor, latent_shape: Sequence[int]) -> torch.Tensor:
        """Noise levels σ for quantiles u ∈ [0, 1], with the family scheduler's shift at this resolution."""
        scheduler = components.noise_scheduler
        config = scheduler.config
        if config.use_dynamic_shifting:
            # FLUX-style: the shift grows linearly with the number of image tokens (base → max).
            tokens = self.image_tokens(latent_shape)
            slope = (config.max_shift - config.base_shift) / (config.max_image_seq_len - config.base_image_seq_len)
            mu = config.base_shift + slope * (tokens - config.base_image_seq_len)
            u = u.clamp(min=1e-6)  # the exponential shift divides by u
            if config.time_shift_type == "linear":
                return mu / (mu + (1 / u - 1))
            return math.exp(mu) / (math.exp(mu) + (1 / u - 1))
        shift = float(config.shift)
        return shift * u / (1 + (shift - 1) * u)

    def train_timesteps(self, components: Components, latents: torch.Tensor, generator: torch.Generator,
                        params: LoraParams) -> torch.Tensor:
        count, device = len(latents), latents.device
        if params.timestep_sampling == "logit_normal":
            u = torch.sigmoid(torch.randn(count, generator=generator, device=device))
        else:
            u = torch.rand(count, generator=generator, device=device)
        return self.shifted_sigmas(components, u, latents.shape)

    def eval_timesteps(self, components: Components, latent_shape: Sequence[int],
                       fractions: torch.Tensor) -> torch.Tensor:
        return self.shifted_sigmas(components, fractions, latent_shape)

    def add_noise(self, components: Components, latents: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        sigmas = timesteps.view(-1, *([1] * (latents.ndim - 1))).to(latents.dtype)
        return (1.0 - sigmas) * latents + sigmas * noise

    def target(self, components: Components, latents: torch.Tensor, noise: torch.Tensor,
               timesteps: torch.Tensor) -> torch.Tensor:
        return noise - latents

    # ----------------------------------------------------------------------------------- sampling

    def sample_pipeline(self, components: Components, base_model: str) -> Any:
        import diffusers

        scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(components.noise_scheduler.config)
        return getattr(diffusers, self.pipeline_class)(
            scheduler=scheduler, vae=components.vae, transformer=components.denoiser, text_encoder=None,
            tokenizer=None)

    def render_sample(self, components: Components, pipeline: Any, prompt: str, *, steps: int, guidance: float,
                      generator: torch.Generator, width: int, height: int,
                      cache: dict[str, Any] | None = None) -> Any:
        if cache is None or prompt not in cache or "" not in cache:
            raise RuntimeError("the sample prompts' embeddings were not cached")
        device = components.denoiser.device
        embeddings = self.pipeline_embeddings(cache[prompt], cache[""], device,
                                              dtype=next(components.denoiser.parameters()).dtype)
        return pipeline(num_inference_steps=steps, generator=generator, width=width, height=height,
                        output_type="pil", **embeddings, **self.guidance_arguments(guidance)).images[0]

    @abstractmethod
    def pipeline_embeddings(self, positive: dict[str, torch.Tensor], negative: dict[str, torch.Tensor],
                            device: Any, dtype: torch.dtype) -> dict[str, Any]:
        """The pipeline's prompt-embedding keyword arguments for one prompt and its (empty) negative."""

    def guidance_arguments(self, guidance: float) -> dict[str, Any]:
        return {"guidance_scale": guidance}

