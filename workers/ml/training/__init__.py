"""LoRA training of Stable Diffusion 1.x / XL with diffusers + peft: no database, queue or storage here.

The caller (workers/training.py) wires those in through ``TrainingHooks``::

    result = LoraTrainer(TrainerConfig(params=..., base_model=..., work_dir=...), examples, hooks).run()
"""

from core.training.params import STATE_FILE, WEIGHTS_FILE
from workers.ml.training.api import (
    NullHooks,
    SampleImage,
    TrainerConfig,
    TrainerError,
    TrainingExample,
    TrainingHooks,
    TrainingPaused,
    TrainingResult,
)
from workers.ml.training.engine import LoraTrainer

__all__ = [
    "STATE_FILE",
    "WEIGHTS_FILE",
    "LoraTrainer",
    "NullHooks",
    "SampleImage",
    "TrainerConfig",
    "TrainerError",
    "TrainingExample",
    "TrainingHooks",
    "TrainingPaused",
    "TrainingResult",
]
