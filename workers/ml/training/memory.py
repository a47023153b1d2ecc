"""Peak memory of a run: CUDA's allocator statistics on a GPU, the process's peak RSS growth on a CPU."""

from __future__ import annotations

import resource
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class MemoryTracker:
    """Started at the beginning of a run; ``peak_mb()`` is the most the run added on top of the start."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
            self.kind = "cuda max allocated"
            self.device = device
            return
        # Linux resets the peak RSS (VmHWM) of a process that writes 5 to its clear_refs; without that the
        # peak is the process's lifetime peak, which an earlier, larger run in the same worker would mask.
        try:
            _CLEAR_REFS.write_text("5")
            self.kind = "cpu peak RSS growth"
        except OSError:
            self.kind = "cpu peak RSS growth (process lifetime peak)"
        self.start_kb = _status_kb("VmRSS") or 0

    def peak_mb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        peak_kb = _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(0, peak_kb - self.start_kb) / 1024
