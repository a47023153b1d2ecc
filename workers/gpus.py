"""Which GPUs this machine has, asked of ``nvidia-smi`` so that no process needs torch to know.

Workers publish the answer with their presence (core.jobs.queue), the supervisor sizes the GPU
worker's slots from it, and the training page compares it with a run's VRAM estimate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_mib: int

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _visible(index: int) -> bool:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return True
    return str(index) in {part.strip() for part in visible.split(",") if part.strip()}


def parse_nvidia_smi(output: str) -> list[GpuInfo]:
    """Parse ``nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits``."""
    gpus = []
    for line in output.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 3:
            continue
        try:
            gpus.append(GpuInfo(index=int(parts[0]), name=parts[1], memory_mib=int(float(parts[2]))))
        except ValueError:
            continue
    return gpus


def detect_gpus() -> list[GpuInfo]:
    """The NVIDIA GPUs visible to this process; empty without a driver (a CPU-only machine)."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        completed = subprocess.run(
            [executable, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [gpu for gpu in parse_nvidia_smi(completed.stdout) if _visible(gpu.index)]
