"""The diffusers/transformers side of training: loading a Stable Diffusion family, LoRA adapters,
optimizers and prompt encoding. Nothing here knows about steps, data order or checkpoints."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.training.params import OPTIONAL_OPTIMIZERS, LoraParams
from workers.ml.training.api import TrainerError

UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Components:
    """One Stable Diffusion model, split into the parts training needs (SD 1.x: one text encoder)."""

    # The models are diffusers/transformers classes, typed Any: their mixins' methods (add_adapter, config,
    # gradient checkpointing) resolve through torch.nn.Module.__getattr__ for a type checker.
    family: str
    tokenizers: list[Any]
    text_encoders: list[Any]
    vae: Any
    unet: Any
    noise_scheduler: Any
    trained_text_encoders: list[Any] = field(default_factory=list)

    @property
    def is_sdxl(self) -> bool:
        return self.family == "sdxl"

    def lora_modules(self) -> dict[str, Any]:
        """Name → module for every module with a LoRA adapter, named as save_lora_weights expects."""
        modules = {"unet": self.unet}
        names = ["text_encoder", "text_encoder_2"]
        for name, encoder in zip(names, self.text_encoders, strict=False):
            if encoder in self.trained_text_encoders:
                modules[name] = encoder
        return modules


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


def load_components(base_model: str, family: str, *, device: str, weight_dtype: torch.dtype) -> Components:
    """Tokenizer(s), text encoder(s), VAE, UNet and the DDPM noise scheduler, all frozen, on ``device``."""
    _check_family(base_model, family)
    try:
        return _load_components(base_model, family, device=device, weight_dtype=weight_dtype)
    except (OSError, ValueError) as error:
        # Not a folder, not a diffusers layout, or a hub id while offline: a retry cannot help.
        raise TrainerError(f"could not load base model {base_model!r} ({family}): {error}") from error


def _check_family(base_model: str, family: str) -> None:
    """A local pipeline folder names its class: catch SD 1.5 vs SDXL mix-ups before loading gigabytes."""
    index = Path(base_model) / "model_index.json"
    if not index.is_file():
        return  # a hub id (or not a pipeline folder): loading says what is wrong
    try:
        pipeline = str(json.loads(index.read_text()).get("_class_name", ""))
    except (OSError, ValueError):
        return
    is_xl = "XL" in pipeline
    if family == "sdxl" and not is_xl:
        raise TrainerError(f"{base_model} is a {pipeline}, not an SDXL model; choose the SD 1.5 family")
    if family == "sd15" and is_xl:
        raise TrainerError(f"{base_model} is an SDXL model ({pipeline}); choose the SDXL family")


def _load_components(base_model: str, family: str, *, device: str, weight_dtype: torch.dtype) -> Components:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    # Loaded straight into their precision (half the memory of loading fp32 and casting). The VAE stays in
    # fp32: SDXL's VAE overflows in fp16, and it only runs to cache latents and decode samples.
    tokenizers = [CLIPTokenizer.from_pretrained(base_model, subfolder="tokenizer")]
    text_encoders: list[torch.nn.Module] = [
        CLIPTextModel.from_pretrained(base_model, subfolder="text_encoder", dtype=weight_dtype)
    ]
    if family == "sdxl":
        tokenizers.append(CLIPTokenizer.from_pretrained(base_model, subfolder="tokenizer_2"))
        text_encoders.append(CLIPTextModelWithProjection.from_pretrained(base_model, subfolder="text_encoder_2",
                                                                         dtype=weight_dtype))
    vae = AutoencoderKL.from_pretrained(base_model, subfolder="vae", dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(base_model, subfolder="unet", dtype=weight_dtype)
    noise_scheduler = DDPMScheduler.from_pretrained(base_model, subfolder="scheduler")
    if family == "sdxl" and getattr(unet.config, "addition_embed_type", None) != "text_time":
        raise TrainerError(f"{base_model} is not an SDXL model (its UNet takes no size/crop conditioning)")
    if family == "sd15" and getattr(unet.config, "addition_embed_type", None) == "text_time":
        raise TrainerError(f"{base_model} is an SDXL model; choose the SDXL family")

    for module in (*text_encoders, vae, unet):
        module.requires_grad_(False)
        module.eval()
        module.to(device)
    return Components(family=family, tokenizers=tokenizers, text_encoders=text_encoders, vae=vae, unet=unet,
                      noise_scheduler=noise_scheduler)


def add_lora(components: Components, params: LoraParams) -> None:
    """LoRA on the UNet's attention (and the text encoders' when trained); trainable params in fp32."""
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    # The gaussian init draws from the global generator: seeding it makes the start a function of the seed.
    torch.manual_seed(params.seed)
    # peft annotates lora_alpha as int; it scales by alpha / r and takes any number.
    components.unet.add_adapter(LoraConfig(r=params.rank, lora_alpha=params.alpha,  # type: ignore[arg-type]
                                           init_lora_weights="gaussian", target_modules=UNET_TARGETS))
    if params.train_text_encoder:
        for encoder in components.text_encoders:
            encoder.add_adapter(LoraConfig(r=params.rank, lora_alpha=params.alpha,  # type: ignore[arg-type]
                                           init_lora_weights="gaussian", target_modules=TEXT_ENCODER_TARGETS))
        components.trained_text_encoders = list(components.text_encoders)
    # Adam's updates on fp16/bf16 parameters would round away; only the (small) LoRA weights are upcast.
    cast_training_params([components.unet, *components.trained_text_encoders], dtype=torch.float32)


def enable_gradient_checkpointing(components: Components) -> None:
    components.unet.enable_gradient_checkpointing()
    for encoder in components.trained_text_encoders:
        # Non-reentrant checkpointing passes gradients to LoRA weights even though the inputs are frozen.
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def build_optimizer(params: LoraParams, components: Components,
                    log: Callable[[str], None] = lambda _: None) -> torch.optim.Optimizer:
    """AdamW, 8-bit AdamW (bitsandbytes) or Prodigy (prodigyopt), with the text encoders' own learning rate."""
    groups: list[dict[str, Any]] = [{"params": trainable_parameters(components.unet), "lr": params.learning_rate}]
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


def tokenize(components: Components, captions: list[str]) -> list[torch.Tensor]:
    """Token ids of each caption, one (batch, 77) tensor per tokenizer."""
    return [
        tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                  return_tensors="pt").input_ids
        for tokenizer in components.tokenizers
    ]


def encode_tokens(components: Components, ids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hidden states the UNet attends to, and (SDXL) the pooled embedding of the second encoder.

    SD 1.x uses the last hidden state; SDXL the penultimate of both encoders, concatenated, exactly as
    its pipeline's encode_prompt does, so training and inference see the same conditioning.
    """
    device = components.unet.device
    if not components.is_sdxl:
        return components.text_encoders[0](ids[0].to(device), return_dict=False)[0], None
    hidden, pooled = [], None
    for encoder, token_ids in zip(components.text_encoders, ids, strict=True):
        output = encoder(token_ids.to(device), output_hidden_states=True)
        pooled = output[0]  # the projected pooled embedding (text_embeds) of the last encoder
        hidden.append(output.hidden_states[-2])
    return torch.cat(hidden, dim=-1), pooled


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
    """pytorch_lora_weights.safetensors in diffusers format, with the adapters' rank/alpha metadata
    (without it load_lora_weights would assume alpha = rank)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers: dict[str, Any] = {}
    for name, module in components.lora_modules().items():
        layers[f"{name}_lora_layers"] = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(module, save_embedding_layers=False))
        layers[f"{name}_lora_adapter_metadata"] = module.peft_config["default"].to_dict()
    pipeline_class = StableDiffusionXLPipeline if components.is_sdxl else StableDiffusionPipeline
    pipeline_class.save_lora_weights(directory, safe_serialization=True, **layers)
