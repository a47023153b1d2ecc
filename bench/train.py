"""LoRA training benchmark: our trainer vs a minimal loop in the style of diffusers' train_text_to_image_lora.py.

Both sides train the same LoRA (UNet attention, same rank) on the same model, images, batch size,
resolution, precision, loss (min-SNR γ=5) and number of steps, each in a fresh child process of
this run (so peak memory is measured cleanly). The reference does what the diffusers scripts do
every step: VAE-encode the batch and run the text encoder(s); ours cached both once. The reference
gets its pixels decoded and cropped once (in its favour: the diffusers script decodes per step).
Steps/s is steady state: the first --warmup steps are not timed. Wall time includes model loading,
data preparation and caching (ours also computes its eval loss at the start and the end).

    .venv/bin/python bench/train.py                                  # tiny random SD 1.5, CPU, 128 px
    .venv/bin/python bench/train.py --family sdxl                    # tiny random SDXL
    .venv/bin/python bench/train.py --random-weights sd15 --device cuda          # real SD 1.5 size, 512 px
    .venv/bin/python bench/train.py --random-weights sdxl --device cuda --batch 1 # real SDXL size, 1024 px
    .venv/bin/python bench/train.py --model stable-diffusion-v1-5/stable-diffusion-v1-5 --resolution 512
    .venv/bin/python bench/train.py --family z_image                 # tiny random Z-Image (also flux2_klein,
                                                                     # qwen_image), CPU, 128 px

For the flow-matching families (flux2_klein, z_image, qwen_image) the reference follows diffusers'
train_dreambooth_lora_{flux2_klein,z_image,qwen_image}.py with per-image captions: every step it
VAE-encodes the batch and runs the LLM text encoder on the captions, draws σ from the scheduler's
table uniformly (the scripts' default weighting "none") and regresses on ε − x with a plain MSE;
ours caches latents and embeddings once and also samples σ uniformly here, so both do the same math.
Only tiny random models are built for them (no real-size random-weight builder: no GPU was lent).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/queue.py would shadow the standard
# library's `queue` module (which torch imports). Put the project root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse
import json
import os
import subprocess
import tempfile
import time
from typing import Any

import numpy as np
from PIL import Image

PROJECTED_STEPS = 1500
MIN_SNR_GAMMA = 5.0
LEARNING_RATE = 1e-4

# Published configs of the real architectures (stable-diffusion-v1-5, stable-diffusion-xl-base-1.0),
# so --random-weights builds full-size models with random weights: no download.
SD15_UNET = {
    "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "attention_head_dim": 8,
    "cross_attention_dim": 768, "sample_size": 64, "in_channels": 4, "out_channels": 4, "norm_num_groups": 32,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SDXL_UNET = {
    "block_out_channels": [320, 640, 1280], "layers_per_block": 2, "attention_head_dim": [5, 10, 20],
    "cross_attention_dim": 2048, "sample_size": 128, "in_channels": 4, "out_channels": 4, "norm_num_groups": 32,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10], "use_linear_projection": True,
    "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
VAE = {
    "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4, "norm_num_groups": 32,
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
CLIP_L = {  # SD 1.5's text encoder and SDXL's first
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 768,
}
CLIP_BIG_G = {  # SDXL's second text encoder (with projection)
    "vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
    "num_attention_heads": 20, "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 1280,
}


# --------------------------------------------------------------------------------------- models


def build_random_weights(family: str, path: Path) -> Path:
    """The real SD 1.5 / SDXL architecture with random weights, saved (fp16, to halve the disk) as a pipeline."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from workers.ml.tiny_models import tiny_clip_tokenizer

    torch.manual_seed(0)
    # A small tokenizer is enough: cost depends on the 77-token sequence, not on the vocabulary.
    tokenizer = tiny_clip_tokenizer()
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,  # type: ignore[attr-defined]
           "pad_token_id": tokenizer.pad_token_id}  # type: ignore[attr-defined]
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    if family == "sd15":
        pipeline: Any = StableDiffusionPipeline(
            vae=AutoencoderKL(**VAE, scaling_factor=0.18215), unet=UNet2DConditionModel(**SD15_UNET),
            text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids)), tokenizer=tokenizer, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    else:
        pipeline = StableDiffusionXLPipeline(
            vae=AutoencoderKL(**VAE, scaling_factor=0.13025, force_upcast=True),
            unet=UNet2DConditionModel(**SDXL_UNET),
            text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids)),
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIG_G, **ids)),
            tokenizer=tokenizer, tokenizer_2=tiny_clip_tokenizer(), scheduler=scheduler,
        )
    pipeline.to(torch.float16).save_pretrained(path)
    return path


def build_model(args: argparse.Namespace, folder: Path) -> tuple[str, str]:
    """(model, description) for the chosen options."""
    if args.model:
        return args.model, args.model
    if args.random_weights:
        return str(build_random_weights(args.random_weights, folder / f"random-{args.random_weights}")), \
            f"real {args.random_weights} architecture, random weights"
    from workers.ml import tiny_models

    build = getattr(tiny_models, f"build_tiny_{args.family}")
    return str(build(folder / f"tiny-{args.family}")), f"tiny random {args.family} (built locally)"


def make_images(count: int, size: int, folder: Path) -> list[tuple[Path, str]]:
    """The studio's demo pictures, square (so every image lands in the square bucket on both sides), with captions."""
    from core.datasets.demo_data import generate_demo_images

    examples = [example(folder, index) for index in range(count)]
    for (path, _), (_, png) in zip(examples, generate_demo_images(count, size=size), strict=True):
        path.write_bytes(png)
    return examples


def example(folder: Path, index: int) -> tuple[Path, str]:
    """Where image ``index`` lives and its caption (the parent writes them, the children read them)."""
    return folder / f"{index}.png", f"ohwx woman, picture {index}, detailed photo"


# --------------------------------------------------------------------------------- the two sides


class StepClock:
    """Step timestamps and, on CUDA, the FLOPs of one warm-up step (counted once, not timed)."""

    def __init__(self, device: str, warmup: int) -> None:
        self.device, self.warmup = device, warmup
        self.times: list[float] = []
        self.flops: int | None = None  # counted on CUDA only
        self._counter: Any = None

    def tick(self, step: int) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops, self._counter = self._counter.get_total_flops(), None
        self.times.append(time.perf_counter())
        if self.device.startswith("cuda") and step == self.warmup - 1:
            from torch.utils.flop_counter import FlopCounterMode

            # Counts the next step (the last warm-up one): the counter slows it, so it is never timed.
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()

    def steady_steps_per_second(self) -> float:
        timed = self.times[self.warmup - 1:]
        return (len(timed) - 1) / (timed[-1] - timed[0])


def run_ours(args: argparse.Namespace, images: list[tuple[Path, str]]) -> dict[str, Any]:
    from core.training.params import LoraParams
    from workers.ml.training import LoraTrainer, NullHooks, TrainerConfig, TrainingExample

    clock = StepClock(args.device, args.warmup)

    class Hooks(NullHooks):
        setup_end = 0.0

        def stage(self, name: str) -> None:
            if name == "train":
                self.setup_end = time.perf_counter()

        def on_step(self, step: int, total_steps: int, epoch: int, loss: float, lr: float) -> None:
            clock.tick(step)

    flow = args.family in FLOW_FAMILIES
    params = LoraParams(family=args.family, base_model="bench", resolution=args.resolution, rank=args.rank,
                        alpha=args.rank, learning_rate=LEARNING_RATE, steps=args.warmup + args.steps,
                        batch_size=args.batch, mixed_precision=args.precision,
                        min_snr_gamma=None if flow else MIN_SNR_GAMMA, timestep_sampling="uniform",
                        sample_every=0, checkpoint_every=100_000, seed=0)
    with tempfile.TemporaryDirectory() as work:
        config = TrainerConfig(params=params, base_model=args.model_path, work_dir=Path(work), device=args.device)
        hooks = Hooks()
        started = time.perf_counter()
        result = LoraTrainer(config, [TrainingExample(path, caption) for path, caption in images], hooks).run()
    return {"wall_s": result.seconds, "setup_s": hooks.setup_end - started,
            "steps_per_s": clock.steady_steps_per_second(), "peak_memory_mb": result.peak_memory_mb,
            "memory_kind": result.memory_kind, "flops_per_step": clock.flops, "final_loss": result.final_loss}


FLOW_FAMILIES = ("flux2_klein", "z_image", "qwen_image")
# family → (pipeline, text encoder, VAE, transformer) classes, as the diffusers scripts load them.
FLOW_CLASSES = {
    "flux2_klein": ("Flux2KleinPipeline", "Qwen3ForCausalLM", "AutoencoderKLFlux2", "Flux2Transformer2DModel"),
    "z_image": ("ZImagePipeline", "Qwen3Model", "AutoencoderKL", "ZImageTransformer2DModel"),
    "qwen_image": ("QwenImagePipeline", "Qwen2_5_VLForConditionalGeneration", "AutoencoderKLQwenImage",
                   "QwenImageTransformer2DModel"),
}


def run_reference_flow(args: argparse.Namespace, images: list[tuple[Path, str]]) -> dict[str, Any]:
    """The per-step work of diffusers' train_dreambooth_lora_<family>.py (per-image captions), no accelerate."""
    import diffusers
    import torch
    import torch.nn.functional as F
    import transformers
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    from workers.ml.training.memory import MemoryTracker

    memory = MemoryTracker(args.device)
    started = time.perf_counter()
    device, family, model = args.device, args.family, args.model_path
    pipeline_name, encoder_name, vae_name, transformer_name = FLOW_CLASSES[family]
    pipeline_class = getattr(diffusers, pipeline_name)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model, subfolder="tokenizer")
    text_encoder = getattr(transformers, encoder_name).from_pretrained(model, subfolder="text_encoder").to(device)
    vae = getattr(diffusers, vae_name).from_pretrained(model, subfolder="vae").to(device)
    transformer = getattr(diffusers, transformer_name).from_pretrained(model, subfolder="transformer").to(device)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(model, subfolder="scheduler")
    for module in (text_encoder, vae, transformer):
        module.requires_grad_(False)
    encoder_pipe = pipeline_class(scheduler=None, vae=None, transformer=None, text_encoder=text_encoder,
                                  tokenizer=tokenizer)
    targets = ["to_k", "to_q", "to_v", "to_out.0"]
    if family == "flux2_klein":  # the klein script's default layers
        targets += ["to_qkv_mlp_proj", *(f"single_transformer_blocks.{i}.attn.to_out"
                                         for i in range(len(transformer.single_transformer_blocks)))]
    torch.manual_seed(0)
    transformer.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                       target_modules=targets))
    cast_training_params(transformer, dtype=torch.float32)
    lora_layers = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(lora_layers, lr=LEARNING_RATE, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    pixels, captions = [], []
    for path, caption in images:
        with Image.open(path) as opened:
            image = opened.convert("RGB").resize((args.resolution, args.resolution), Image.Resampling.BILINEAR)
        pixels.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1))
        captions.append(caption)

    def encode_latents(pixel_values: torch.Tensor) -> torch.Tensor:
        if family == "flux2_klein":
            latents = pipeline_class._patchify_latents(vae.encode(pixel_values).latent_dist.mode())
            mean = vae.bn.running_mean.view(1, -1, 1, 1)
            std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
            return (latents - mean) / std
        if family == "z_image":
            return (vae.encode(pixel_values).latent_dist.mode() - vae.config.shift_factor) * vae.config.scaling_factor
        latents = vae.encode(pixel_values[:, :, None]).latent_dist.mode()
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(device)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(device)
        return ((latents - mean) / std)[:, :, 0]

    def predict(noisy: torch.Tensor, sigmas: torch.Tensor, batch_captions: list[str]) -> torch.Tensor:
        height, width = noisy.shape[-2:]
        if family == "flux2_klein":
            embeds, text_ids = encoder_pipe.encode_prompt(prompt=batch_captions, device=device)
            packed = pipeline_class._pack_latents(noisy)
            ids = pipeline_class._prepare_latent_ids(noisy).to(device)
            out = transformer(hidden_states=packed, timestep=sigmas, guidance=None, encoder_hidden_states=embeds,
                              txt_ids=text_ids, img_ids=ids, return_dict=False)[0]
            return pipeline_class._unpack_latents_with_ids(out[:, :packed.size(1)], ids, height, width)
        if family == "z_image":
            embeds = encoder_pipe._encode_prompt(prompt=batch_captions, device=device)
            out = transformer(list(noisy.unsqueeze(2).unbind(0)), 1 - sigmas, embeds, return_dict=False)[0]
            return -torch.stack(out).squeeze(2)
        embeds, mask = encoder_pipe.encode_prompt(prompt=batch_captions, device=device)
        packed = pipeline_class._pack_latents(noisy, len(noisy), noisy.shape[1], height, width)
        out = transformer(hidden_states=packed, encoder_hidden_states=embeds, encoder_hidden_states_mask=mask,
                          timestep=sigmas, img_shapes=[(1, height // 2, width // 2)] * len(noisy),
                          return_dict=False)[0]
        scale = 2 ** len(vae.temperal_downsample)
        return pipeline_class._unpack_latents(out, height * scale, width * scale, scale)[:, :, 0]

    total = args.warmup + args.steps
    clock = StepClock(device, args.warmup)
    setup_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    transformer.train()
    losses = []
    for step in range(1, total + 1):
        batch = rng.choice(len(images), size=args.batch, replace=False)
        with torch.no_grad():
            latents = encode_latents(torch.stack([pixels[i] for i in batch]).to(device))
        noise = torch.randn_like(latents)
        indices = (torch.rand(len(batch)) * scheduler.config.num_train_timesteps).long()
        sigmas = scheduler.sigmas[indices].to(device)
        noisy = (1 - sigmas.view(-1, 1, 1, 1)) * latents + sigmas.view(-1, 1, 1, 1) * noise
        prediction = predict(noisy, sigmas, [captions[i] for i in batch])
        loss = F.mse_loss(prediction.float(), (noise - latents).float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora_layers, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        clock.tick(step)
    return {"wall_s": time.perf_counter() - started, "setup_s": setup_s,
            "steps_per_s": clock.steady_steps_per_second(), "peak_memory_mb": memory.peak_mb(),
            "memory_kind": memory.kind, "flops_per_step": clock.flops, "final_loss": float(np.mean(losses[-10:]))}


def run_reference(args: argparse.Namespace, images: list[tuple[Path, str]]) -> dict[str, Any]:
    """The per-step work of diffusers' train_text_to_image_lora(_sdxl).py, without accelerate."""
    if args.family in FLOW_FAMILIES:
        return run_reference_flow(args, images)
    import contextlib

    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params, compute_snr
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from workers.ml.training.memory import MemoryTracker

    memory = MemoryTracker(args.device)
    started = time.perf_counter()
    device, sdxl = args.device, args.family == "sdxl"
    cuda = device.startswith("cuda")
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.precision, torch.float32) \
        if cuda else torch.float32
    model = args.model_path
    tokenizers = [CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")]
    text_encoders = [CLIPTextModel.from_pretrained(model, subfolder="text_encoder")]
    if sdxl:
        tokenizers.append(CLIPTokenizer.from_pretrained(model, subfolder="tokenizer_2"))
        text_encoders.append(CLIPTextModelWithProjection.from_pretrained(model, subfolder="text_encoder_2"))
    vae = AutoencoderKL.from_pretrained(model, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
    noise_scheduler = DDPMScheduler.from_pretrained(model, subfolder="scheduler")
    for module in (unet, vae, *text_encoders):
        module.requires_grad_(False)
    unet.to(device, dtype=weight_dtype)
    # The SD 1.5 script casts the VAE to the weight dtype; the SDXL one keeps it in fp32 (fp16 overflows).
    vae.to(device, dtype=torch.float32 if sdxl else weight_dtype)
    for encoder in text_encoders:
        encoder.to(device, dtype=weight_dtype)
    torch.manual_seed(0)
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    cast_training_params(unet, dtype=torch.float32)
    lora_layers = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(lora_layers, lr=LEARNING_RATE, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    total = args.warmup + args.steps
    lr_scheduler = get_scheduler("constant", optimizer, num_warmup_steps=0, num_training_steps=total)

    # Resize + centre crop + normalise, like the script's transforms (decoded once here, per step there).
    pixels, captions = [], []
    for path, caption in images:
        with Image.open(path) as opened:
            image = opened.convert("RGB").resize((args.resolution, args.resolution), Image.Resampling.BILINEAR)
        pixels.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1))
        captions.append(caption)
    ids = [t(captions, max_length=t.model_max_length, padding="max_length", truncation=True,
             return_tensors="pt").input_ids for t in tokenizers]
    size = args.resolution
    time_ids = torch.tensor([[size, size, 0, 0, size, size]], device=device, dtype=weight_dtype)
    autocast = torch.autocast("cuda", dtype=weight_dtype) if cuda and weight_dtype != torch.float32 \
        else contextlib.nullcontext()
    clock = StepClock(device, args.warmup)
    setup_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    unet.train()
    losses = []
    for step in range(1, total + 1):
        batch = rng.choice(len(images), size=args.batch, replace=False)
        pixel_values = torch.stack([pixels[i] for i in batch]).to(device)
        with autocast:
            latents = vae.encode(pixel_values.to(vae.dtype)).latent_dist.sample() * vae.config.scaling_factor
            latents = latents.to(weight_dtype)
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(batch),), device=device)
            noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
            batch_ids = [i[batch].to(device) for i in ids]
            if sdxl:
                hidden, pooled = [], None
                for encoder, token_ids in zip(text_encoders, batch_ids, strict=True):
                    output = encoder(token_ids, output_hidden_states=True)
                    pooled = output[0]  # the last encoder's projected pooled embedding
                    hidden.append(output.hidden_states[-2])
                added = {"text_embeds": pooled, "time_ids": time_ids.repeat(len(batch), 1)}
                prediction = unet(noisy_latents, timesteps, torch.cat(hidden, dim=-1), added_cond_kwargs=added,
                                  return_dict=False)[0]
            else:
                prediction = unet(noisy_latents, timesteps, text_encoders[0](batch_ids[0], return_dict=False)[0],
                                  return_dict=False)[0]
        snr = compute_snr(noise_scheduler, timesteps)
        weights = torch.stack([snr, MIN_SNR_GAMMA * torch.ones_like(timesteps)], dim=1).min(dim=1)[0] / snr
        loss = F.mse_loss(prediction.float(), noise.float(), reduction="none").mean(dim=[1, 2, 3])
        loss = (loss * weights).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora_layers, 1.0)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        clock.tick(step)
    return {"wall_s": time.perf_counter() - started, "setup_s": setup_s,
            "steps_per_s": clock.steady_steps_per_second(), "peak_memory_mb": memory.peak_mb(),
            "memory_kind": memory.kind, "flops_per_step": clock.flops, "final_loss": float(np.mean(losses[-10:]))}


# ------------------------------------------------------------------------------------------- main


def _child(args: argparse.Namespace, side: str, images: list[tuple[Path, str]]) -> dict[str, Any]:
    """Runs one side in a fresh interpreter: its own allocator, its own peak memory."""
    command = [sys.executable, __file__, "--side", side, "--model-path", args.model_path, "--family", args.family,
               "--resolution", str(args.resolution), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--batch", str(args.batch), "--device", args.device, "--precision", args.precision,
               "--rank", str(args.rank), "--images-dir", str(images[0][0].parent), "--images", str(len(images))]
    env = dict(os.environ)
    if Path(args.model_path).exists():
        env["HF_HUB_OFFLINE"] = "1"  # a local folder: never ask the hub
    output = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if output.returncode != 0:
        raise SystemExit(f"{side} failed:\n{output.stderr[-4000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def _print_table(args: argparse.Namespace, description: str, results: dict[str, dict[str, Any]]) -> None:
    import torch

    cuda = args.device.startswith("cuda")
    gpu = f" · {torch.cuda.get_device_name(args.device)}" if cuda else ""
    print(f"\nLoRA training benchmark · {description} · {args.family} · {args.device}{gpu} · "
          f"precision {args.precision} · {os.cpu_count()} CPU · torch {torch.__version__} · {args.resolution} px · "
          f"batch {args.batch} · rank {args.rank} · {args.steps} timed steps after {args.warmup} warm-up\n")
    header = ["loop", "steps/s", "s/step", "peak memory MB", "wall s (load+cache+train)"]
    if cuda:
        header += ["TFLOP/s", f"{PROJECTED_STEPS:,} steps"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("-" * (len(h) + 2) for h in header) + "|")
    for name, row in (("ours (cached latents + text)", results["ours"]),
                      ("reference (encode every step)", results["reference"])):
        cells = [name, f"{row['steps_per_s']:.2f}", f"{1 / row['steps_per_s']:.3f}", f"{row['peak_memory_mb']:.0f}",
                 f"{row['wall_s']:.1f}"]
        if cuda:
            minutes = (row["setup_s"] + PROJECTED_STEPS / row["steps_per_s"]) / 60
            flops = row["flops_per_step"] or 0
            cells += [f"{flops * row['steps_per_s'] / 1e12:.1f}", f"{minutes:.1f} min"]
        print("| " + " | ".join(cells) + " |")
    ours, reference = results["ours"], results["reference"]
    ratio = ["ours / reference", f"{ours['steps_per_s'] / reference['steps_per_s']:.2f}x",
             f"{reference['steps_per_s'] / ours['steps_per_s']:.2f}x",
             f"{ours['peak_memory_mb'] / max(reference['peak_memory_mb'], 1e-9):.2f}x",
             f"{ours['wall_s'] / reference['wall_s']:.2f}x"]
    if cuda:
        ratio += ["", ""]
    print("| " + " | ".join(ratio) + " |")
    print(f"\nmemory: {ours['memory_kind']}; final loss (mean of last 10 steps): ours {ours['final_loss']:.4f}, "
          f"reference {reference['final_loss']:.4f}")
    if not cuda:
        print("no GPU: CPU figures only (no GPU figure is estimated from them)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --family, --random-weights: what build_model() reads (shared with bench/generate.py)."""
    parser.add_argument("--model", help="hub id or folder (default: a tiny random model built in a temp folder)")
    parser.add_argument("--family", choices=["sd15", "sdxl", *FLOW_FAMILIES], default="sd15")
    parser.add_argument("--random-weights", choices=["sd15", "sdxl"],
                        help="build the real SD 1.5 / SDXL architecture with random weights (for a GPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--resolution", type=int, help="default: 128 tiny, 512 SD 1.5, 1024 SDXL")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (at least 2)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--precision", choices=["no", "fp16", "bf16"], help="default: bf16 on cuda, no on cpu")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--side", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--images-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.warmup = max(2, args.warmup)

    if args.side:  # a child: run one side, print one JSON line
        # Import everything either side may import lazily, so the measured memory growth is the run's own.
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline  # noqa: F401
        from peft import LoraConfig  # noqa: F401

        import workers.ml.training  # noqa: F401

        images = [example(Path(args.images_dir), i) for i in range(args.images)]
        print(json.dumps((run_ours if args.side == "ours" else run_reference)(args, images)))
        return

    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.precision = args.precision or ("bf16" if args.device.startswith("cuda") else "no")
    if args.random_weights:
        args.family = args.random_weights
    if args.resolution is None:
        real = args.model or args.random_weights
        args.resolution = (1024 if args.family == "sdxl" else 512) if real else 128
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        args.model_path, description = build_model(args, folder)
        (folder / "images").mkdir()
        images = make_images(args.images, args.resolution, folder / "images")
        results = {side: _child(args, side, images) for side in ("ours", "reference")}
    if args.json:
        options = {k: v for k, v in vars(args).items() if k not in {"side", "model_path", "images_dir", "json"}}
        print(json.dumps({**options, "model": description, "results": results}, indent=2))
        return
    _print_table(args, description, results)


if __name__ == "__main__":
    main()
