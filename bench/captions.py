"""Captioning benchmark: images/s captioned one by one vs in batches, same model and images, same run.

Default model: the tiny random BLIP built into a temp folder, so it runs offline anywhere (its
numbers only show the batching overhead). On a GPU machine pass a real model:

    .venv/bin/python bench/captions.py
    .venv/bin/python bench/captions.py --model Salesforce/blip-image-captioning-large --device cuda --images 64
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/queue.py would shadow the standard
# library's `queue` module (which torch and transformers import). Put the project root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw


def make_images(count: int, size: int = 256) -> list[Image.Image]:
    """Procedural pictures: a colour gradient with a few random shapes, different for each index."""
    images = []
    for index in range(count):
        rng = np.random.default_rng(index)
        ramp = np.linspace(0, 1, size)[None, :, None] * rng.uniform(0, 255, (1, 1, 3))
        pixels = np.broadcast_to(ramp + rng.uniform(0, 60, (1, 1, 3)), (size, size, 3)).clip(0, 255)
        image = Image.fromarray(pixels.astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
            x1, y1 = x0 + int(rng.integers(16, size // 2)), y0 + int(rng.integers(16, size // 2))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
        images.append(image)
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="hub id or folder (default: a tiny random BLIP built in a temp folder)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-sizes", default="1,8,16", help="comma-separated; 1 is the one-by-one baseline")
    parser.add_argument("--max-length", type=int, default=40, help="max new tokens per caption")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per batch size; the best counts")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    args = parser.parse_args()

    import torch

    from workers.ml.captioning import CaptionOptions, caption_in_batches, load_captioner
    from workers.ml.tiny_models import build_tiny_blip

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_tiny_blip(Path(tmp) / "tiny-blip"))
        captioner = load_captioner(model, args.device)
        images = make_images(args.images)
        options = CaptionOptions(max_length=args.max_length)
        batch_sizes = sorted({int(b) for b in args.batch_sizes.split(",")} | {1})

        captioner.caption(images[:2], options)  # warm-up: lazy init, kernels, allocator
        results: dict[int, tuple[float, list[str]]] = {}
        for batch_size in batch_sizes:
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                captions = caption_in_batches(captioner, images, options, batch_size)
                if captioner.device.startswith("cuda"):
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
            results[batch_size] = (best, captions)

    name = args.model or "tiny random BLIP (built locally)"
    print(f"\nCaptioning benchmark · {name} · {captioner.device} ({captioner.dtype}) · {os.cpu_count()} CPU · "
          f"torch {torch.__version__} · {args.images} images · ≤{args.max_length} new tokens · "
          f"best of {args.repeats}\n")
    print(f"| {'mode':<18} | {'seconds':>8} | {'images/s':>9} | {'vs one-by-one':>13} | same captions |")
    print(f"|{'-' * 20}|{'-' * 10}|{'-' * 11}|{'-' * 15}|{'-' * 15}|")
    base_seconds, base_captions = results[1]
    for batch_size, (seconds, captions) in results.items():
        mode = "one by one" if batch_size == 1 else f"batches of {batch_size}"
        same = sum(a == b for a, b in zip(captions, base_captions, strict=True))
        print(f"| {mode:<18} | {seconds:>8.3f} | {args.images / seconds:>9.1f} | {base_seconds / seconds:>12.2f}x "
              f"| {same:>6}/{len(captions):<6} |")


if __name__ == "__main__":
    main()
