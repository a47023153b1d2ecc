"""What the trainer's caller sees: its inputs, its hooks, its results and its errors. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from core.errors import PermanentJobError
from core.training.params import LoraParams

STAGES = ("load", "prepare data", "cache", "train", "save")


@dataclass(frozen=True)
class TrainingExample:
    """One image already on local disk, with its final caption (trigger word already in it)."""

    path: Path
    caption: str


@dataclass(frozen=True)
class SampleImage:
    prompt_index: int
    prompt: str
    seed: int
    png: bytes


class TrainingHooks(Protocol):
    """How the trainer reports to its caller; every method runs in the training thread."""

    def stage(self, name: str) -> None:
        """Called at the start of each stage: "load", "prepare data", "cache", "train", "save"."""

    def log(self, message: str) -> None: ...

    def on_step(self, step: int, total_steps: int, epoch: int, loss: float, lr: float) -> None:
        """After every optimizer step (1-based step and epoch). An exception stops training, saving nothing."""

    def on_samples(self, step: int, images: list[SampleImage]) -> None: ...

    def on_checkpoint(self, step: int, directory: Path, final: bool) -> None:
        """``directory`` is complete; the caller uploads it and may delete it afterwards."""

    def should_pause(self) -> bool:
        """Checked after every step; True saves a checkpoint at this step, then raises TrainingPaused."""


class NullHooks:
    """Hooks that ignore everything: for benchmarks and as a base class that overrides a few methods."""

    def stage(self, name: str) -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def on_step(self, step: int, total_steps: int, epoch: int, loss: float, lr: float) -> None:
        pass

    def on_samples(self, step: int, images: list[SampleImage]) -> None:
        pass

    def on_checkpoint(self, step: int, directory: Path, final: bool) -> None:
        pass

    def should_pause(self) -> bool:
        return False


class TrainerConfig(BaseModel):
    """One training run besides its examples: the user's knobs plus what the caller resolved."""

    model_config = ConfigDict(extra="forbid")

    params: LoraParams
    base_model: str = Field(min_length=1, description="Local folder or hub id (params.base_model may be a short name).")
    sample_prompts: list[str] = Field(default_factory=list, description="Final prompts; empty: no samples.")
    work_dir: Path = Field(description="Scratch space for checkpoints.")
    device: str | None = Field(None, description="None: cuda when available, else cpu.")
    eval_examples: int = Field(4, ge=1, le=64, description="Size of the fixed eval batch.")


@dataclass
class TrainingResult:
    steps: int
    epochs: int
    final_loss: float
    """Mean training loss of the last (up to) ten steps: one step's loss is too noisy to report."""
    eval_loss_start: float
    eval_loss_end: float
    lora_path: Path
    """The final checkpoint's pytorch_lora_weights.safetensors (the caller may have deleted it by now)."""
    seconds: float
    """Wall time of run(): loading, data preparation, caching, training and saving."""
    steps_per_second: float
    """Optimizer steps of this run (not counting those before a resume) per second of the train stage."""
    device: str
    peak_memory_mb: float
    memory_kind: str
    """What peak_memory_mb measures: "cuda max allocated" or "cpu peak RSS growth"."""


class TrainingPaused(Exception):
    """Raised after should_pause() said so and the checkpoint at ``step`` was saved (and reported)."""

    def __init__(self, step: int, directory: Path) -> None:
        super().__init__(f"training paused at step {step}; checkpoint in {directory}")
        self.step = step
        self.directory = directory


class TrainerError(PermanentJobError):
    """A run that cannot work as configured (missing optimizer package, unreadable image, bad checkpoint)."""
