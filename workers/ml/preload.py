"""Thread safety of the ML libraries inside one GPU worker process (several GPU slots = threads).

Two hazards, both met by two trainings starting together in one worker:

1. Lazy imports: see ``preload_ml_libraries``.
2. Model construction patches torch process-wide: see ``MODEL_CONSTRUCTION_LOCK`` in
   ``workers/ml/locks.py``.

Lazy imports:

diffusers and transformers resolve their classes lazily (``_LazyModule.__getattr__``), and two
threads resolving the same class for the first time can see a half-initialised module
("cannot import name 'AutoencoderKL' from 'diffusers'"). Two trainings starting together in
one GPU worker did exactly that; resolving everything up front in one thread avoids it.
"""

from __future__ import annotations

import importlib
import logging
import time

_logger = logging.getLogger("studio.workers")

# (module, names) that the GPU handlers use; keep in step with workers/ml.
_CLASSES: dict[str, tuple[str, ...]] = {
    "diffusers": ("AutoencoderKL", "DDPMScheduler", "UNet2DConditionModel", "StableDiffusionPipeline",
                  "StableDiffusionXLPipeline", "EulerDiscreteScheduler", "StableDiffusionImg2ImgPipeline",
                  "StableDiffusionXLImg2ImgPipeline", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
                  "DDIMScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler",
                  "WanImageToVideoPipeline", "AutoencoderKLWan", "WanTransformer3DModel"),
    "diffusers.training_utils": ("compute_snr", "cast_training_params"),
    "diffusers.optimization": ("get_scheduler",),
    "diffusers.utils": ("convert_state_dict_to_diffusers",),
    "transformers": ("CLIPTextModel", "CLIPTextModelWithProjection", "CLIPTokenizer", "AutoConfig", "AutoProcessor",
                     "BlipForConditionalGeneration", "UMT5EncoderModel", "T5Tokenizer"),
    "peft": ("LoraConfig",),
    "peft.utils": ("get_peft_model_state_dict", "set_peft_model_state_dict"),
}


def preload_ml_libraries() -> float:
    """Resolve every class the GPU handlers import; returns the seconds it took."""
    started = time.monotonic()
    for module_name, names in _CLASSES.items():
        module = importlib.import_module(module_name)
        for name in names:
            getattr(module, name)
    # Heavy (torch at import), so loaded here, in the GPU worker only.
    import workers.ml.generation  # the generation engine
    import workers.ml.motion.wan  # the image-to-video family
    import workers.ml.training  # noqa: F401  (the trainer's own modules)

    seconds = time.monotonic() - started
    _logger.info("ML libraries loaded in %.1f s", seconds)
    return seconds
