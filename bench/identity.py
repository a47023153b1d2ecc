"""Face identity benchmark: faces embedded per second, and the cost of scoring a checkpoint's samples
measured against a training step, in the same run.

Faces: dlib's ResNet descriptor (workers/ml/identity, the studio's default) on two real photos that
ship in packages (scikit-image's astronaut, matplotlib's Grace Hopper), resized to the sample size.
Detection (HOG, one upsampling) and align + embed are timed apart. dlib-bin is a CPU build: on a GPU
machine the faces/s figure is still the CPU's.

Training step: our trainer (workers/ml/training) on the tiny random SD 1.5 (default) or a given model,
steady state after warm-up steps. Scoring a checkpoint = one face pass per sample prompt.

    .venv/bin/python bench/identity.py
    .venv/bin/python bench/identity.py --random-weights-sd15 --device cuda --resolution 512 --batch 1
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/queue.py would shadow the standard
# library's `queue` module (which torch imports). Put the project root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

from matplotlib import cbook
from PIL import Image
from skimage import data

from workers.ml.identity import load_face_model


def photos(size: int) -> list[Image.Image]:
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as hopper:
        pictures = [Image.fromarray(data.astronaut()), hopper.convert("RGB")]
    return [p.resize((size, size)) for p in pictures]


def time_faces(size: int, rounds: int) -> dict[str, float]:
    from workers.ml.identity import as_array

    model = load_face_model("dlib-resnet-v1")
    arrays = [as_array(p) for p in photos(size)]
    detect, embed, found = [], [], 0
    for _ in range(rounds):
        for array in arrays:
            started = time.perf_counter()
            boxes = model.detect(array)
            middle = time.perf_counter()
            for box in boxes:
                model.embed(model.align(array, box))
            detect.append(middle - started)
            embed.append(time.perf_counter() - middle)
            found += len(boxes)
    total = sum(detect) + sum(embed)
    return {"images": len(detect), "faces": found, "faces_per_s": found / total,
            "detect_ms": 1000 * statistics.median(detect), "align_embed_ms": 1000 * statistics.median(embed),
            "per_image_ms": 1000 * total / len(detect)}


def time_training_step(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from core.training.params import LoraParams
    from workers.ml.tiny_models import build_tiny_sd15
    from workers.ml.training import LoraTrainer, NullHooks, TrainerConfig, TrainingExample

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    stamps: list[float] = []

    class Hooks(NullHooks):
        def on_step(self, step: int, total_steps: int, epoch: int, loss: float, lr: float) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        model = args.model or str(build_tiny_sd15(folder / "tiny-sd15"))
        examples = []
        for index in range(4):
            rng = np.random.default_rng(index)
            path = folder / f"{index}.png"
            Image.fromarray(rng.integers(0, 255, (args.resolution, args.resolution, 3), dtype=np.uint8)).save(path)
            examples.append(TrainingExample(path, "ohwx woman"))
        params = LoraParams(family="sd15", base_model="bench", resolution=args.resolution, rank=8, alpha=8,
                            steps=args.warmup + args.steps, batch_size=args.batch, sample_every=0,
                            checkpoint_every=100_000, mixed_precision="bf16" if device == "cuda" else "no")
        config = TrainerConfig(params=params, base_model=model, work_dir=folder / "run", device=device)
        LoraTrainer(config, examples, Hooks()).run()
    steady = stamps[args.warmup:]
    return {"device": device, "model": args.model or "tiny random SD 1.5",
            "step_s": (steady[-1] - steady[0]) / (len(steady) - 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample-size", type=int, default=512, help="side of the scored images (a sample's)")
    parser.add_argument("--prompts", type=int, default=4, help="sample prompts per checkpoint")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", help="SD 1.5 folder or hub id to train on (default: tiny random, built here)")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", help="cuda or cpu for training (faces always run on the CPU)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    faces = time_faces(args.sample_size, args.rounds)
    step = time_training_step(args)
    checkpoint_s = args.prompts * faces["per_image_ms"] / 1000
    print(f"faces (dlib-resnet-v1, CPU, {args.sample_size}² real photos): {faces['faces_per_s']:.2f} faces/s; "
          f"per image {faces['per_image_ms']:.0f} ms (detect {faces['detect_ms']:.0f} ms, "
          f"align+embed {faces['align_embed_ms']:.0f} ms), {faces['faces']} faces in {faces['images']} images")
    print(f"training step ({step['model']}, {step['device']}, {args.resolution} px, batch {args.batch}): "
          f"{step['step_s'] * 1000:.0f} ms")
    print(f"scoring a checkpoint's {args.prompts} samples: {checkpoint_s * 1000:.0f} ms = "
          f"{checkpoint_s / step['step_s']:.2f} training steps")


if __name__ == "__main__":
    main()
