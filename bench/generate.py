"""Generation benchmark: images/s through the studio's ``generate`` actor vs the same diffusers pipeline
called directly in one process, same model, settings, batch size and precision, same run.

The actor side is a real worker process started here (own redis-server, SQLite, local object
store): a ``generate`` job of N images, timed from job creation to success (its database
timestamps), so it includes pickup, the per-step progress writes, PNG encoding with metadata,
thumbnails, storage and asset rows. A warm-up job loads the pipeline first (and compiles it with
--compile), as a long-running worker would have. The direct side loads the pipeline with
``from_pretrained`` in this process and calls it with a list of per-image generators, nothing else.

    .venv/bin/python bench/generate.py                                       # tiny random SD 1.5, CPU, 128 px
    .venv/bin/python bench/generate.py --random-weights sd15 --device cuda --batch 1,8     # SD 1.5 size, 512²
    .venv/bin/python bench/generate.py --random-weights sdxl --device cuda --batch 1,4     # SDXL size, 1024²
    .venv/bin/python bench/generate.py --random-weights sd15 --device cuda --compile --dtype fp16
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
import socket
import subprocess
import tempfile
import time
from typing import Any

from bench.train import (  # the same models as the training benchmark (tiny or real-size random)
    add_model_arguments,
    build_model,
)

PROMPT = "ohwx woman, portrait in a cafe, natural light, detailed photo"
NEGATIVE = "lowres, blurry, bad anatomy"
SEED = 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------ direct


class Direct:
    """The bare diffusers pipeline: from_pretrained, a fresh scheduler, a list of per-image generators."""

    def __init__(self, args: argparse.Namespace) -> None:
        import diffusers
        import torch

        from workers.ml.generation import PIPELINE_CLASSES, SCHEDULER_CLASSES

        self.args = args
        options: dict[str, Any] = {"dtype": {"fp32": torch.float32, "fp16": torch.float16,
                                             "bf16": torch.bfloat16}[args.dtype]}
        if args.family == "sd15":
            options.update(safety_checker=None, requires_safety_checker=False)
        pipe = getattr(diffusers, PIPELINE_CLASSES[args.family]).from_pretrained(args.model_path, **options)
        pipe.to(args.device)
        pipe.set_progress_bar_config(disable=True)
        if args.compile:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.unet = torch.compile(pipe.unet)
        class_name, extra = SCHEDULER_CLASSES[args.scheduler]
        pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **extra)
        self.pipe = pipe

    def render(self, count: int, batch: int) -> float:
        """Seconds to make ``count`` images, ``batch`` per call."""
        import torch

        args = self.args
        generator_device = "cpu" if args.device == "cpu" else args.device
        started = time.perf_counter()
        for start in range(0, count, batch):
            chunk = range(start, min(start + batch, count))
            with torch.inference_mode():
                self.pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=args.steps,
                          guidance_scale=args.cfg, width=args.resolution, height=args.resolution,
                          num_images_per_prompt=len(chunk),
                          generator=[torch.Generator(generator_device).manual_seed(SEED + i) for i in chunk])
        _sync(args.device)
        return time.perf_counter() - started


# ------------------------------------------------------------------------------------------- actor


def _wait_for(job_id: str, timeout: float) -> Any:
    from core.jobs import lifecycle as jobs

    deadline = time.monotonic() + timeout
    while True:
        job = jobs.get_job(job_id)
        if job.job_status.is_terminal:
            if job.status != "succeeded":
                raise SystemExit(f"generate job {job_id} {job.status}: {job.error}")
            return job
        if time.monotonic() > deadline:
            raise SystemExit(f"generate job {job_id} did not finish in {timeout:.0f} s")
        time.sleep(0.01)


def actor_job(args: argparse.Namespace, count: int, batch: int) -> tuple[float, float]:
    """(create→succeeded seconds, the worker's own render-loop seconds) of one ``generate`` job."""
    import core.catalogue  # noqa: F401  (registers every job kind, as the programs' entry points do)
    from core.generation.requests import submit_generation
    from core.jobs import lifecycle as jobs

    job_id = submit_generation(
        template=args.template, base_model=args.model_path, prompt=PROMPT, negative_prompt=NEGATIVE,
        loras=[], insert_trigger=False, steps=args.steps, cfg=args.cfg, width=args.resolution,
        height=args.resolution, scheduler=args.scheduler, seed=SEED, count=count, batch_size=batch,
    ).id
    job = _wait_for(job_id, args.timeout)
    return ((jobs.aware(job.finished_at) - jobs.aware(job.created_at)).total_seconds(),
            float(job.result["render_seconds"]))


def measure(args: argparse.Namespace, batches: list[int]) -> dict[int, dict[str, dict[str, float]]]:
    """Both sides per batch size, runs interleaved (direct, actor, direct, …) so a load drift hits both."""
    direct = Direct(args)
    results = {}
    for batch in batches:
        direct.render(batch, batch)  # warm-up: kernels, allocator (and the compile)
        actor_job(args, batch, batch)  # warm-up: the worker loads (and compiles) its pipeline
        direct_s = actor_s = render_s = float("inf")
        for _ in range(args.repeats):
            direct_s = min(direct_s, direct.render(args.images, batch))
            total, rendering = actor_job(args, args.images, batch)
            actor_s, render_s = min(actor_s, total), min(render_s, rendering)
        results[batch] = {
            "direct": {"seconds": direct_s, "images_per_s": args.images / direct_s},
            "actor": {"seconds": actor_s, "images_per_s": args.images / actor_s,
                      "render_images_per_s": args.images / render_s},
        }
    return results


def with_worker(args: argparse.Namespace, tmp: Path, work: Any) -> Any:
    """Run ``work()`` with throwaway services and one GPU-queue worker process (one slot)."""
    from workers.launcher import start_local_redis

    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    os.environ.update({
        "STUDIO_ENV": "development", "STUDIO_DATA_DIR": str(tmp / "data"), "REDIS_URL": redis_url,
        "STUDIO_REDIS_NAMESPACE": "bench", "STUDIO_STORAGE_BACKEND": "local", "STUDIO_DEVICE": args.device,
        "DATABASE_URL": args.database_url or f"sqlite:///{tmp / 'bench.db'}", "STUDIO_GPU_SLOTS_PER_GPU": "1",
        "STUDIO_GENERATION_DTYPE": args.dtype, "STUDIO_GENERATION_COMPILE": "1" if args.compile else "0",
    })
    from core.config import reload_settings

    reload_settings()
    redis_process = start_local_redis(redis_url, tmp / "redis")
    worker = None
    try:
        from core.db import upgrade_schema

        upgrade_schema()
        worker = subprocess.Popen([sys.executable, "-m", "workers", "worker", "--queues", "gpu", "--threads", "1",
                                   "--prefetch", "1"], cwd=ROOT, env=dict(os.environ),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL if not args.verbose else None)
        return work()
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(60)
        redis_process.terminate()
        redis_process.wait()


# -------------------------------------------------------------------------------------------- main


def _print_table(args: argparse.Namespace, description: str, results: dict[int, dict[str, dict[str, float]]]) -> None:
    import torch

    gpu = f" · {torch.cuda.get_device_name(args.device)}" if args.device.startswith("cuda") else ""
    print(f"\nGeneration benchmark · {description} · {args.family} · {args.device}{gpu} · {args.dtype}"
          f"{' · torch.compile' if args.compile else ''} · {os.cpu_count()} CPU · torch {torch.__version__} · "
          f"{args.resolution}² · {args.steps} steps {args.scheduler} · cfg {args.cfg:g} · "
          f"{args.images} images per run, best of {args.repeats}\n")
    header = ["path", "batch", "images/s", "s/image", "vs direct"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("-" * (len(h) + 2) for h in header) + "|")
    for batch, row in results.items():
        direct, actor = row["direct"], row["actor"]
        print(f"| direct pipeline | {batch} | {direct['images_per_s']:.3f} | {1 / direct['images_per_s']:.3f} | "
              f"1.00x |")
        print(f"| studio actor (create→succeeded) | {batch} | {actor['images_per_s']:.3f} | "
              f"{1 / actor['images_per_s']:.3f} | {actor['images_per_s'] / direct['images_per_s']:.2f}x |")
        print(f"| studio actor (its render loop only) | {batch} | {actor['render_images_per_s']:.3f} | "
              f"{1 / actor['render_images_per_s']:.3f} | "
              f"{actor['render_images_per_s'] / direct['images_per_s']:.2f}x |")
    if len(results) > 1:
        first, last = min(results), max(results)
        speedup = results[last]["direct"]["images_per_s"] / results[first]["direct"]["images_per_s"]
        print(f"\nbatch {last} vs batch {first} (direct): {speedup:.2f}x images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--batch", default="1,8", help="comma-separated batch sizes (images per pipeline call)")
    parser.add_argument("--images", type=int, help="images per timed run (default: twice the largest batch)")
    parser.add_argument("--steps", type=int, help="default: 12 tiny, 25 SD 1.5, 30 SDXL")
    parser.add_argument("--resolution", type=int, help="default: 128 tiny, 512 SD 1.5, 1024 SDXL")
    parser.add_argument("--scheduler", default="", help="scheduler key (default: the template's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side and batch size; the best counts")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet on both sides")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary folder")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for one job")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--verbose", action="store_true", help="show the worker's log")
    args = parser.parse_args()

    import diffusers
    import torch
    import transformers

    from core.generation.templates import parse_template

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    if args.random_weights:
        args.family = args.random_weights
    real = bool(args.model or args.random_weights)
    args.template = ("sdxl-lora" if args.family == "sdxl" else "sd15-lora") if real else \
        ("tiny-lora" if args.family == "sd15" else "sdxl-lora")
    template = parse_template(ROOT / "workflows" / "generation" / f"{args.template}.yaml")
    args.steps = args.steps or (template.steps if real else 12)
    args.resolution = args.resolution or (template.width if real else 128)
    args.scheduler = args.scheduler or template.scheduler
    args.cfg = template.cfg
    batches = sorted({int(b) for b in args.batch.split(",") if b.strip()})
    args.images = args.images or 2 * max(batches)

    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        folder = Path(tmp)
        args.model_path, description = build_model(args, folder)
        if Path(args.model_path).exists():
            os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder: never ask the hub

        results = with_worker(args, folder, lambda: measure(args, batches))
    if args.json:
        options = {k: v for k, v in vars(args).items() if k not in {"model_path", "json", "verbose"}}
        print(json.dumps({**options, "model": description, "results": results}, indent=2))
        return
    _print_table(args, description, results)


if __name__ == "__main__":
    main()
