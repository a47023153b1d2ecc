"""What every model family module provides, and the parts the flow-matching families share.

A family turns the trainer's and the generator's generic steps into its architecture's calls:

    load → encode captions (cached; DiT text encoders unloaded after) → encode latents
    → draw timesteps, add noise, predict, target (its training objective) → sample → save the LoRA

The trainer (workers/ml/training/engine.py) owns steps, data order, RNG and checkpoints; a family
owns tensors' meaning. Families are registered by import in ``workers/ml/families/__init__.py``.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.errors import InvalidInput, PermanentJobError
from core.training.families import FamilySpec, family_spec
from core.training.params import QUANTIZATION_PACKAGES, LoraParams
from workers.ml.single_file import TransformerInstall, transformer_install

# One caption's cached text conditioning, on the CPU: the family decides the keys.
Conditioning = dict[str, torch.Tensor]


class FamilyError(PermanentJobError):
    """A model or option that cannot work with this family (wrong architecture, missing package, no GPU)."""


@dataclass
class Components:
    """One base model split into the parts training needs. ``denoiser`` is the UNet (SD) or the transformer."""

    # The models are diffusers/transformers classes, typed Any: their mixins' methods (add_adapter, config,
    # gradient checkpointing) resolve through torch.nn.Module.__getattr__ for a type checker.
    family: str
    tokenizers: list[Any]
    text_encoders: list[Any]
    vae: Any
    denoiser: Any
    noise_scheduler: Any
    denoiser_name: str = "unet"
    trained_text_encoders: list[Any] = field(default_factory=list)

    @property
    def unet(self) -> Any:
        """The SD name of the denoiser (kept for callers written before the DiT families)."""
        return self.denoiser

    @property
    def is_sdxl(self) -> bool:
        return self.family == "sdxl"

    def lora_modules(self) -> dict[str, Any]:
        """Name → module for every module with an adapter, named as the pipeline's save_lora_weights expects."""
        modules = {self.denoiser_name: self.denoiser}
        names = ["text_encoder", "text_encoder_2"]
        for name, encoder in zip(names, self.text_encoders, strict=False):
            if encoder in self.trained_text_encoders:
                modules[name] = encoder
        return modules


def pipeline_class_name(model: str) -> str | None:
    """The ``_class_name`` a local pipeline folder's model_index.json names (None for a hub id or no folder)."""
    index = Path(model) / "model_index.json"
    if not index.is_file():
        return None
    try:
        return str(json.loads(index.read_text()).get("_class_name", "")) or None
    except (OSError, ValueError):
        return None


class Family(ABC):
    """One architecture. Stateless: every method takes the Components it works on."""

    name: str
    pipeline_class: str
    """diffusers class of the text-to-image pipeline (the one a base model folder is saved as)."""
    img2img_class: str | None = None
    lora_targets: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")

    @property
    def spec(self) -> FamilySpec:
        return family_spec(self.name)

    # ------------------------------------------------------------------------------------ loading

    def check_folder(self, model: str) -> None:
        """Refuse a local pipeline folder of another family before loading gigabytes of it."""
        found = pipeline_class_name(model)
        if found is not None and found not in self.accepted_pipeline_classes():
            raise FamilyError(f"{model} is a {found}, not a {self.spec.label} model; choose its family instead")

    def accepted_pipeline_classes(self) -> tuple[str, ...]:
        return (self.pipeline_class,)

    def lora_target_modules(self, denoiser: Any) -> list[str]:
        """Module names (peft suffixes) the adapter wraps in the denoiser."""
        return list(self.lora_targets)

    def load_pipeline(self, model: str, *, dtype: torch.dtype) -> Any:
        """The base pipeline from a hub id or a diffusers folder: the entry point generation and the
        model manager load a base model through. Raises FamilyError when it is not this family's."""
        import diffusers

        self.check_folder(model)
        install = self.transformer_install(model)
        if install is not None:
            return self.load_paired_pipeline(model, install, dtype=dtype)
        try:
            pipe = getattr(diffusers, self.pipeline_class).from_pretrained(model, **self.pipeline_options(dtype))
        except (OSError, ValueError, TypeError) as error:
            # Not a folder, not a diffusers layout, the other family, or a hub id while offline.
            raise FamilyError(f"could not load base model {model!r} ({self.name}): {error}") from error
        self.check_pipeline(model, pipe)
        return pipe

    def transformer_install(self, model: str) -> TransformerInstall | None:
        """The transformer-only install ``model`` names (workers/ml/single_file.py), checked to be this family's."""
        try:
            install = transformer_install(model)
        except InvalidInput as error:
            raise FamilyError(str(error)) from error
        if install is not None and install.family != self.name:
            raise FamilyError(f"{model} is a {install.family} transformer, not a {self.spec.label} model; choose its "
                              "family instead")
        return install

    def load_paired_pipeline(self, model: str, install: TransformerInstall, *, dtype: torch.dtype) -> Any:
        raise FamilyError(f"{self.spec.label} has no transformer-only installs ({model})")

    def pipeline_options(self, dtype: torch.dtype) -> dict[str, Any]:
        return {"dtype": dtype}

    def check_pipeline(self, model: str, pipe: Any) -> None:
        """Raise FamilyError when a loaded pipeline is not really this family's (e.g. SD 1.x vs XL)."""
        return None

    @abstractmethod
    def load_components(self, base_model: str, *, device: str, weight_dtype: torch.dtype,
                        quantize: str = "none") -> Components:
        """Tokenizer(s), text encoder(s), VAE, denoiser and the training noise scheduler, frozen, on ``device``."""

    # ------------------------------------------------------------------------------- conditioning

    @abstractmethod
    def cache_captions(self, components: Components, captions: Sequence[str]) -> dict[str, Any]:
        """Caption → what the training step needs of it (embeddings on the CPU; SD: token ids when the
        text encoders train, since they change every step)."""

    @abstractmethod
    def conditioning(self, components: Components, cached: list[Any], images: list[Any],
                     device: str) -> dict[str, Any]:
        """The keyword arguments of ``predict`` for one batch, from its captions' cached entries."""

    def release_text_encoders(self, components: Components) -> None:
        """After caching: drop frozen text encoders the training step no longer needs (the DiTs' LLMs)."""
        return None

    # ------------------------------------------------------------------------------------ latents

    @abstractmethod
    def encode_latents(self, components: Components, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] → the normalised latents the denoiser trains on, (B, C, h, w)."""

    # ---------------------------------------------------------------------------------- objective

    @abstractmethod
    def train_timesteps(self, components: Components, latents: torch.Tensor, generator: torch.Generator,
                        params: LoraParams) -> torch.Tensor:
        """One noise level per batch item, drawn from ``generator`` only (resume replays it exactly)."""

    @abstractmethod
    def eval_timesteps(self, components: Components, latent_shape: Sequence[int],
                       fractions: torch.Tensor) -> torch.Tensor:
        """Fixed noise levels at quantiles ``fractions`` ∈ [0, 1) of the schedule, for the eval loss."""

    @abstractmethod
    def add_noise(self, components: Components, latents: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def predict(self, components: Components, noisy: torch.Tensor, timesteps: torch.Tensor,
                conditioning: dict[str, Any]) -> torch.Tensor:
        """The denoiser's output in the latents' layout (B, C, h, w)."""

    @abstractmethod
    def target(self, components: Components, latents: torch.Tensor, noise: torch.Tensor,
               timesteps: torch.Tensor) -> torch.Tensor: ...

    def loss_weights(self, components: Components, timesteps: torch.Tensor,
                     params: LoraParams) -> torch.Tensor | None:
        """Per-sample loss weights (None: uniform)."""
        return None

    # ----------------------------------------------------------------------------------- sampling

    def call_arguments(self, prompt: str, negative_prompt: str, cfg: float) -> dict[str, Any]:
        """The pipeline's prompt and guidance keyword arguments for a generation request."""
        return {"prompt": prompt, "negative_prompt": negative_prompt or None, "guidance_scale": cfg}

    @abstractmethod
    def sample_pipeline(self, components: Components, base_model: str) -> Any:
        """The family's pipeline around the in-memory modules (adapters active)."""

    @abstractmethod
    def render_sample(self, components: Components, pipeline: Any, prompt: str, *, steps: int, guidance: float,
                      generator: torch.Generator, width: int, height: int,
                      cache: dict[str, Any] | None = None) -> Any:
        """One PIL image for ``prompt``; families that drop their text encoders read it from ``cache``."""

    # ------------------------------------------------------------------------------------- saving

    def save_lora(self, components: Components, directory: str) -> None:
        """pytorch_lora_weights.safetensors in diffusers format, with each adapter's config as metadata
        (without it load_lora_weights would assume alpha = rank, and could not rebuild a LoKr)."""
        import diffusers
        from peft.utils import get_peft_model_state_dict

        layers: dict[str, Any] = {}
        for name, module in components.lora_modules().items():
            layers[f"{name}_lora_layers"] = self.lora_layers(get_peft_model_state_dict(module,
                                                                                       save_embedding_layers=False))
            layers[f"{name}_lora_adapter_metadata"] = module.peft_config["default"].to_dict()
        getattr(diffusers, self.pipeline_class).save_lora_weights(directory, safe_serialization=True, **layers)

    def load_lora(self, pipe: Any, path: Path, adapter_name: str | None = None) -> None:
        """Load a LoRA/LoKr file (``pytorch_lora_weights.safetensors`` or another name) into a pipeline."""
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter_name)

    def lora_layers(self, peft_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The saved key layout: peft's own (``lora_A``/``lora_B``), as diffusers' DiT LoRA scripts write it."""
        return peft_state


def require_quantization(quantize: str, device: str) -> Any:
    """The diffusers quantisation config for the frozen denoiser, or None for "none".

    NF4/int8 need bitsandbytes and fp8 torchao, all on a CUDA GPU: anywhere else this raises a
    FamilyError naming the option (never a silent full-precision fallback).
    """
    if quantize == "none":
        return None
    if not device.startswith("cuda"):
        raise FamilyError(f"quantize_base={quantize!r} needs a CUDA GPU; this run is on {device} "
                          "(set quantize_base to none)")
    package = QUANTIZATION_PACKAGES[quantize]
    try:
        importlib.import_module(package)
    except ImportError:
        raise FamilyError(f"quantize_base={quantize!r} needs the {package!r} package, which is not installed "
                          f"(pip install {package})") from None
    import diffusers

    if quantize == "fp8":
        if torch.cuda.get_device_capability(device) < (8, 9):
            raise FamilyError(f"quantize_base='fp8' needs a GPU with fp8 support (Ada/Hopper or newer); "
                              f"{torch.cuda.get_device_name(device)} has none")
        return diffusers.TorchAoConfig("float8wo_e4m3")
    if quantize == "nf4":
        return diffusers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                            bnb_4bit_compute_dtype=torch.bfloat16)
    return diffusers.BitsAndBytesConfig(load_in_8bit=True)


def freeze(modules: Sequence[Any], device: str) -> None:
    for module in modules:
        module.requires_grad_(False)
        module.eval()
        if not getattr(module, "is_quantized", False):  # quantised weights are placed at load
            module.to(device)
