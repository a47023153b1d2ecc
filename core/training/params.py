"""The knobs of one LoRA training run, with their valid ranges: the single source of truth.

The configs service stores them, the training page builds its form from them (ranges and help
text come from the field definitions), the trainer reads them. No torch here.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import InvalidInput, describe_validation_error
from core.training.families import FAMILY_LABELS, ModelFamily, family_spec

Optimizer = Literal["adamw", "adamw8bit", "prodigy"]
Scheduler = Literal["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"]
Precision = Literal["no", "fp16", "bf16"]
DurationUnit = Literal["steps", "epochs"]
Adapter = Literal["lora", "lokr"]
Quantization = Literal["none", "nf4", "int8", "fp8"]
TimestepSampling = Literal["uniform", "logit_normal"]

__all__ = ["FAMILY_LABELS", "ModelFamily"]  # re-exported: the catalogue lives in core.training.families
ADAPTER_LABELS: dict[str, str] = {"lora": "LoRA", "lokr": "LoKr (Kronecker product)"}
QUANTIZATION_LABELS: dict[str, str] = {"none": "none (half precision)", "nf4": "NF4 4-bit (bitsandbytes)",
                                       "int8": "int8 (bitsandbytes)", "fp8": "fp8 (torchao)"}
# The package each quantisation of the frozen base needs (import name).
QUANTIZATION_PACKAGES: dict[str, str] = {"nf4": "bitsandbytes", "int8": "bitsandbytes", "fp8": "torchao"}
OPTIMIZER_LABELS: dict[str, str] = {"adamw": "AdamW", "adamw8bit": "AdamW 8-bit", "prodigy": "Prodigy"}
# The optimizers that need an optional package, and that package's import name.
OPTIONAL_OPTIMIZERS: dict[str, str] = {"adamw8bit": "bitsandbytes", "prodigy": "prodigyopt"}

# The files of a checkpoint folder; the weights file is what ``pipeline.load_lora_weights`` looks for.
WEIGHTS_FILE = "pytorch_lora_weights.safetensors"
STATE_FILE = "training_state.pt"  # optimizer, scheduler, RNG and step: what a resume needs

DEFAULT_SAMPLE_PROMPTS = (
    "a photo of {trigger}, portrait, natural light",
    "{trigger} walking in a city street, full body",
)


def available_optimizers() -> list[str]:
    """AdamW always; 8-bit AdamW and Prodigy only where their packages are installed."""
    return [
        name for name in OPTIMIZER_LABELS
        if name not in OPTIONAL_OPTIMIZERS or importlib.util.find_spec(OPTIONAL_OPTIMIZERS[name]) is not None
    ]


class LoraParams(BaseModel):
    """Everything a training run needs besides its dataset."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # --- model ---------------------------------------------------------------------------------
    family: ModelFamily = Field("sd15", description="Architecture of the base model.")
    base_model: str = Field(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", min_length=1, max_length=500,
        description="Hugging Face hub id, a local folder, or a folder name under the studio's models directory.",
    )
    resolution: int = Field(
        512, ge=128, le=2048, multiple_of=8,
        description="Training side length in pixels; images are bucketed by aspect ratio around this area.",
    )

    # --- duration ------------------------------------------------------------------------------
    duration_unit: DurationUnit = Field("steps", description="Train for a number of steps or of epochs.")
    steps: int = Field(1500, ge=1, le=100_000, description="Optimizer steps (when training by steps).")
    epochs: int = Field(10, ge=1, le=1000, description="Passes over the dataset (when training by epochs).")
    batch_size: int = Field(1, ge=1, le=64, description="Images per step.")

    # --- optimisation --------------------------------------------------------------------------
    learning_rate: float = Field(1e-4, ge=1e-6, le=1.0, description="UNet LoRA learning rate.")
    text_encoder_lr: float = Field(5e-5, ge=1e-6, le=1.0, description="Text-encoder LoRA learning rate.")
    optimizer: Optimizer = Field("adamw", description="AdamW; 8-bit AdamW needs bitsandbytes, Prodigy prodigyopt.")
    weight_decay: float = Field(1e-2, ge=0.0, le=1.0, description="Decoupled weight decay.")
    lr_scheduler: Scheduler = Field("constant", description="How the learning rate changes over the run.")
    warmup_steps: int = Field(0, ge=0, le=10_000, description="Steps of linear warm-up at the start.")
    max_grad_norm: float = Field(1.0, ge=0.0, le=100.0, description="Gradient clipping; 0 turns it off.")

    # --- LoRA ----------------------------------------------------------------------------------
    rank: int = Field(16, ge=1, le=512, description="LoRA rank: capacity (and file size) of the adapter.")
    alpha: float = Field(16, ge=1, le=512, description="LoRA alpha: the update is scaled by alpha / rank.")
    train_text_encoder: bool = Field(
        False, description="Also train LoRA layers on the text encoder(s) (SD 1.x / SDXL only).")
    adapter: Adapter = Field(
        "lora", description="LoRA, or LoKr (a Kronecker-product adapter; often better for faces on the DiTs).")
    lokr_factor: int = Field(
        -1, ge=-1, le=64, description="LoKr: split factor of each weight (-1: the most square split).")

    # --- loss and noise ------------------------------------------------------------------------
    min_snr_gamma: float | None = Field(
        5.0, ge=0.1, le=20.0, description="Min-SNR loss weighting (5 is the paper's value); empty turns it off.",
    )
    noise_offset: float = Field(0.0, ge=0.0, le=1.0, description="Offset noise (0.05–0.1 helps very dark/bright).")
    timestep_sampling: TimestepSampling = Field(
        "logit_normal", description="Flow-matching families: how noise levels are drawn (logit-normal favours the "
        "middle, as SD3/FLUX trainers do; uniform is diffusers' script default). SD families draw uniformly.")
    caption_dropout: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of steps that train on an empty caption (helps CFG).",
    )

    # --- speed and memory ----------------------------------------------------------------------
    mixed_precision: Precision = Field("bf16", description="Precision of the frozen weights and activations.")
    gradient_checkpointing: bool = Field(False, description="Trades ~30% speed for much less activation memory.")
    quantize_base: Quantization = Field(
        "none", description="Store the frozen base model in NF4/int8 (bitsandbytes) or fp8 (torchao) to save "
        "memory; needs a CUDA GPU that supports it.")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Seed for noise, data order and caption dropout.")

    # --- samples and checkpoints -----------------------------------------------------------------
    sample_every: int = Field(250, ge=0, le=100_000, description="Render sample images every N steps; 0: never.")
    sample_prompts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SAMPLE_PROMPTS), max_length=8,
        description="Fixed prompts for samples; {trigger} is replaced by the dataset's trigger word.",
    )
    sample_seed: int = Field(1234, ge=0, le=2**32 - 1, description="One seed for all samples, so steps compare.")
    sample_steps: int = Field(20, ge=1, le=150, description="Inference steps per sample image.")
    sample_guidance: float = Field(7.0, ge=0.0, le=30.0, description="Classifier-free guidance of samples.")
    checkpoint_every: int = Field(500, ge=1, le=100_000, description="Save a checkpoint every N steps.")
    keep_checkpoints: int = Field(3, ge=1, le=100, description="How many recent checkpoints to keep.")

    @field_validator("sample_prompts")
    @classmethod
    def _clean_prompts(cls, prompts: list[str]) -> list[str]:
        cleaned = [p.strip() for p in prompts if p.strip()]
        if any(len(p) > 500 for p in cleaned):
            raise ValueError("each sample prompt must be at most 500 characters")
        return cleaned

    @model_validator(mode="after")
    def _consistent(self) -> LoraParams:
        if self.warmup_steps and self.lr_scheduler == "constant":
            raise ValueError('warm-up needs a scheduler other than "constant" (use "constant_with_warmup")')
        spec = family_spec(self.family)
        if self.train_text_encoder and not spec.text_encoder_training:
            raise ValueError(f"{spec.label} trains the transformer only: turn off train_text_encoder")
        return self

    def total_steps(self, image_count: int) -> int:
        """Optimizer steps of the run. By epochs it assumes full batches; bucketing can add a few."""
        if self.duration_unit == "steps":
            return self.steps
        return max(1, math.ceil(max(image_count, 1) / self.batch_size)) * self.epochs

    def prompts_for(self, trigger_word: str) -> list[str]:
        """The sample prompts with the trigger word filled in (prepended where a prompt lacks it)."""
        trigger = trigger_word.strip()
        prompts = []
        for prompt in self.sample_prompts:
            text = prompt.replace("{trigger}", trigger).strip(" ,")
            if trigger and trigger not in text:
                text = f"{trigger}, {text}"
            prompts.append(" ".join(text.split()))
        return prompts


def parse_params(values: dict[str, object]) -> LoraParams:
    """Validate user input into LoraParams, or raise InvalidInput naming every bad field."""
    try:
        params = LoraParams.model_validate(values)
    except ValidationError as error:
        raise InvalidInput(f"invalid training settings: {describe_validation_error(error)}") from None
    missing = OPTIONAL_OPTIMIZERS.get(params.optimizer)
    if missing and params.optimizer not in available_optimizers():
        raise InvalidInput(f"optimizer {params.optimizer!r} needs the {missing!r} package, which is not installed")
    return params
