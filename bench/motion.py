"""Image-to-video benchmark (the model part and the encode are timed apart): one clip through the studio's
Wan family module (workers/ml/motion/wan.py: its prompt encoding, the pipeline with per-step progress
callbacks, uint8 frames) plus the clip encoder (workers/media/clips.py: H.264 MP4) vs the same diffusers
``WanImageToVideoPipeline`` called directly (embeddings computed once outside the timing, no callback, float
frames). Same model object, same settings and seed, sides alternated, best of N.

    .venv/bin/python bench/motion.py                               # tiny random Wan 2.2 TI2V, CPU, 32×64, 9 frames
    .venv/bin/python bench/motion.py --model /models/Wan2.2-TI2V-5B-Diffusers --device cuda \\
        --width 704 --height 1280 --frames 121 --steps 30            # a real local folder on a GPU

No GPU figure is ever estimated from a CPU one: run it on the GPU.
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
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="Wan image-to-video hub id or folder; empty: tiny random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--frames", type=int, default=9, help="4k + 1")
    parser.add_argument("--fps", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from workers.media.clips import encode_frames
    from workers.ml.generation import cover_crop
    from workers.ml.motion.wan import MotionSettings, load_wan
    from workers.ml.tiny_models import build_tiny_wan

    scratch = Path(tempfile.mkdtemp(prefix="bench-motion-"))
    model = args.model or str(build_tiny_wan(scratch / "tiny-wan"))
    started = time.perf_counter()
    loaded = load_wan(model, args.device)
    load_seconds = time.perf_counter() - started
    still = Image.fromarray(np.random.default_rng(0).integers(0, 255, (args.height, args.width, 3), np.uint8))
    settings = MotionSettings(prompt="she smiles and the wind moves her hair", negative_prompt="", width=args.width,
                              height=args.height, frames=args.frames, steps=args.steps, guidance=args.guidance, seed=7)
    positive, negative = loaded.encode(settings.prompt), loaded.encode(settings.negative_prompt)

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    encode_times: list[float] = []

    def studio() -> float:
        steps: list[int] = []
        sync()
        begin = time.perf_counter()
        frames = loaded.animate(still, settings, on_step=lambda done, _total: steps.append(done))
        sync()
        model_done = time.perf_counter()
        encode_frames(frames, args.fps, scratch / "clip.mp4")
        encode_times.append(time.perf_counter() - model_done)
        assert len(steps) == args.steps and frames.shape[0] == args.frames
        return model_done - begin

    def direct() -> float:
        sync()
        begin = time.perf_counter()
        with torch.inference_mode():
            loaded.pipe(image=cover_crop(still, args.width, args.height), prompt_embeds=positive,
                        negative_prompt_embeds=negative if args.guidance > 1 else None, height=args.height,
                        width=args.width, num_frames=args.frames, num_inference_steps=args.steps,
                        guidance_scale=args.guidance, generator=torch.Generator().manual_seed(7), output_type="np")
        sync()
        return time.perf_counter() - begin

    studio()  # warm-up (first calls allocate and pick kernels)
    encode_times.clear()
    times: dict[str, list[float]] = {"studio": [], "direct": []}
    for _ in range(args.repeats):
        times["studio"].append(studio())
        times["direct"].append(direct())
    best = {side: min(values) for side, values in times.items()}
    report = {
        "model": args.model or "tiny random Wan 2.2 TI2V (built locally)", "device": loaded.device,
        "dtype": loaded.dtype_label, "torch_threads": torch.get_num_threads(),
        "size": f"{args.width}x{args.height}", "frames": args.frames, "steps": args.steps,
        "load_seconds": round(load_seconds, 3),
        "studio_model_seconds_per_clip": round(best["studio"], 4),
        "studio_encode_seconds_per_clip": round(min(encode_times), 4),
        "direct_seconds_per_clip": round(best["direct"], 4),
        "studio_frames_per_second": round(args.frames / (best["studio"] + min(encode_times)), 2),
        "direct_frames_per_second": round(args.frames / best["direct"], 2),
        "studio_over_direct": round(best["studio"] / best["direct"], 3),
        "all_seconds": {side: [round(v, 4) for v in values] for side, values in times.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
