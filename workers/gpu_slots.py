"""GPU slots: how many jobs may use each GPU at once (``STUDIO_GPU_SLOTS_PER_GPU``, default 1).

The GPU worker runs one thread per slot, and every GPU job holds a slot while it runs, so a
fourth job on a three-slot GPU waits in the queue instead of taking memory from the other three.
Each job is given the least busy device; handlers read it with ``assigned_device()``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

from core.config import get_settings
from workers.gpus import detect_gpus

_assigned: ContextVar[str | None] = ContextVar("assigned_device", default=None)


class GpuSlots:
    def __init__(self, devices: list[str], per_device: int) -> None:
        if not devices or per_device < 1:
            raise ValueError("need at least one device and one slot per device")
        self.per_device = per_device
        self.in_use: dict[str, int] = dict.fromkeys(devices, 0)
        self._changed = threading.Condition()

    @property
    def capacity(self) -> int:
        return len(self.in_use) * self.per_device

    @contextmanager
    def acquire(self) -> Iterator[str]:
        """Hold a slot on the least busy device for the duration of the block."""
        with self._changed:
            self._changed.wait_for(lambda: min(self.in_use.values()) < self.per_device)
            device = min(self.in_use, key=lambda d: self.in_use[d])
            self.in_use[device] += 1
        token = _assigned.set(device)
        try:
            yield device
        finally:
            _assigned.reset(token)
            with self._changed:
                self.in_use[device] -= 1
                self._changed.notify()


def slot_devices() -> list[str]:
    """Devices GPU jobs run on: the configured one, else each visible CUDA GPU, else the CPU."""
    settings = get_settings()
    if settings.device:
        return [settings.device]
    gpus = detect_gpus()
    # torch numbers the *visible* GPUs from 0, whatever their nvidia-smi index.
    return [f"cuda:{position}" for position in range(len(gpus))] or ["cpu"]


def slot_count() -> int:
    return len(slot_devices()) * get_settings().gpu_slots_per_gpu


@lru_cache(maxsize=1)
def gpu_slots() -> GpuSlots:
    return GpuSlots(slot_devices(), get_settings().gpu_slots_per_gpu)


def assigned_device() -> str | None:
    """The device of the slot this job holds; None outside a GPU slot (then: settings or auto)."""
    return _assigned.get() or get_settings().device or None
