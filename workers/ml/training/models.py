"""The diffusers/peft side of training common to every family: loading through the family module,
LoRA/LoKr adapters, optimizers and adapter state. Nothing here knows about steps, data order or
checkpoints; what differs per architecture lives in workers/ml/families/."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch

from core.training.params import OPTIONAL_OPTIMIZERS, LoraParams
from workers.ml.families import FamilyError, get_family
from workers.ml.families.base import Components
from workers.ml.families.stable_diffusion import TEXT_ENCODER_TARGETS
from workers.ml.training.api import TrainerError

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}

__all__ = ["Components"]  # re-exported: the dataclass lives with the families


def resolve_precision(requested: str, device: str, log: Callable[[str], None]) -> torch.dtype:
    """The dtype of the frozen weights: fp16/bf16 on CUDA as requested, fp32 on CPU."""
    if requested == "no":
        return torch.float32
    if not device.startswith("cuda"):
        # CPU kernels for half types are slow or missing for several ops; fp32 keeps CPU runs correct.
        log(f"mixed precision {requested} is for GPUs; training in fp32 on {device}")
        return torch.float32
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        log("this GPU has no bf16; using fp16 instead")
        return torch.float16
    return _DTYPES[requested]


def load_components(base_model: str, family: str, *, device: str, weight_dtype: torch.dtype,
                    quantize: str = "none") -> Components:
    """The family's parts (see workers/ml/families), all frozen, on ``device``."""
    try:
        return get_family(family).load_components(base_model, device=device, weight_dtype=weight_dtype,
                                                  quantize=quantize)
    except FamilyError as error:
        raise TrainerError(str(error)) from error
    except (OSError, ValueError) as error:
        # Not a folder, not a diffusers layout, or a hub id while offline: a retry cannot help.
        raise TrainerError(f"could not load base model {base_model!r} ({family}): {error}") from error


def _adapter_config(params: LoraParams, targets: list[str]) -> Any:
    """peft's LoRA (gaussian init, B = 0) or LoKr (Kronecker factors, w2 = 0): both start as a no-op."""
    from peft import LoKrConfig, LoraConfig

    # peft annotates lora_alpha/alpha as int; it scales by alpha / r and takes any number.
    if params.adapter == "lokr":
        return LoKrConfig(r=params.rank, alpha=params.alpha, target_modules=targets,  # type: ignore[arg-type]
                          decompose_factor=params.lokr_factor)
    return LoraConfig(r=params.rank, lora_alpha=params.alpha,  # type: ignore[arg-type]
                      init_lora_weights="gaussian", target_modules=targets)


def add_lora(components: Components, params: LoraParams) -> None:
    """The adapter (LoRA or LoKr) on the denoiser's attention, per its family (and the SD text encoders
    when trained); trainable params in fp32."""
    from diffusers.training_utils import cast_training_params

    family = get_family(components.family)
    # The init draws from the global generator: seeding it makes the start a function of the seed.
    torch.manual_seed(params.seed)
    components.denoiser.add_adapter(_adapter_config(params, family.lora_target_modules(components.denoiser)))
    if params.train_text_encoder:
        for encoder in components.text_encoders:
            encoder.add_adapter(_adapter_config(params, TEXT_ENCODER_TARGETS))
        components.trained_text_encoders = list(components.text_encoders)
    # Adam's updates on fp16/bf16 parameters would round away; only the (small) adapter weights are upcast.
    cast_training_params([components.denoiser, *components.trained_text_encoders], dtype=torch.float32)


def enable_gradient_checkpointing(components: Components) -> None:
    components.denoiser.enable_gradient_checkpointing()
    for encoder in components.trained_text_encoders:
        # Non-reentrant checkpointing passes gradients to LoRA weights even though the inputs are frozen.
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def build_optimizer(params: LoraParams, components: Components,
                    log: Callable[[str], None] = lambda _: None) -> torch.optim.Optimizer:
    """AdamW, 8-bit AdamW (bitsandbytes) or Prodigy (prodigyopt), with the text encoders' own learning rate."""
    groups: list[dict[str, Any]] = [{"params": trainable_parameters(components.denoiser),
                                     "lr": params.learning_rate}]
    text_parameters = [p for e in components.trained_text_encoders for p in trainable_parameters(e)]
    if text_parameters:
        groups.append({"params": text_parameters, "lr": params.text_encoder_lr})
    if params.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=params.weight_decay)
    package = OPTIONAL_OPTIMIZERS[params.optimizer]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise TrainerError(f"optimizer {params.optimizer!r} needs the {package!r} package, which is not installed "
                           f"(pip install {package})") from None
    if params.optimizer == "adamw8bit":
        device = str(next(components.denoiser.parameters()).device)
        if not device.startswith("cuda"):
            raise TrainerError(f"optimizer 'adamw8bit' needs a CUDA GPU; this run is on {device} (choose adamw)")
        return module.optim.AdamW8bit(groups, weight_decay=params.weight_decay)
    # Prodigy estimates the step size itself; its learning rate is a multiplier, usually 1.0.
    if params.learning_rate < 0.1:
        log(f"Prodigy's learning rate multiplies the step size it finds; {params.learning_rate:g} makes "
            "training very slow (1.0 is usual)")
    return module.Prodigy(groups, weight_decay=params.weight_decay)


def build_lr_scheduler(params: LoraParams, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    from diffusers.optimization import get_scheduler

    return get_scheduler(params.lr_scheduler, optimizer, num_warmup_steps=params.warmup_steps,
                         num_training_steps=total_steps)


def lora_state_dicts(components: Components) -> dict[str, dict[str, torch.Tensor]]:
    """peft-format LoRA weights of every adapted module (for exact resume)."""
    from peft.utils import get_peft_model_state_dict

    states = {}
    for name, module in components.lora_modules().items():
        weights = get_peft_model_state_dict(module, save_embedding_layers=False)
        states[name] = {key: value.detach().to("cpu", copy=True) for key, value in weights.items()}
    return states


def load_lora_state_dicts(components: Components, states: dict[str, dict[str, torch.Tensor]]) -> None:
    from peft.utils import set_peft_model_state_dict

    modules = components.lora_modules()
    if set(states) != set(modules):
        raise TrainerError(f"the checkpoint holds LoRA weights for {sorted(states)}, this run trains {sorted(modules)}")
    for name, module in modules.items():
        result = set_peft_model_state_dict(module, states[name], adapter_name="default")
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise TrainerError(f"the checkpoint's {name} LoRA does not fit this model ({unexpected[0]} …)")


def save_lora_weights(components: Components, directory: str) -> None:
    """pytorch_lora_weights.safetensors in diffusers format, with the adapters' config as metadata
    (without it load_lora_weights would assume alpha = rank)."""
    get_family(components.family).save_lora(components, directory)
