"""The catalogue of model families: what the studio knows about each architecture, without torch.

One entry per family; the torch side of each family lives in ``workers/ml/families/<name>.py`` and
reads its name here. Training params, generation templates, the VRAM estimate and the pages all
take their family list, labels and defaults from this module, so adding a family is one entry here,
one worker module, one tiny test config and one preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModelFamily = Literal["sd15", "sdxl", "flux2_klein", "z_image", "qwen_image"]
Objective = Literal["diffusion", "flow"]


@dataclass(frozen=True)
class FamilySpec:
    name: str
    label: str
    objective: Objective
    """"diffusion": epsilon / v-prediction on a DDPM schedule (SD); "flow": rectified flow matching (the DiTs)."""
    default_base_model: str
    """Hub id of the weights to train on (Apache-2.0 or the CreativeML licence for SD)."""
    tiny_model: str
    """Folder name of the family's tiny random model under the models directory (workers/ml/tiny_models.py)."""
    native_resolution: int
    latent_multiple: int
    """Image sides must be multiples of this (VAE down-sampling × transformer patch)."""
    text_encoder_training: bool
    """Whether LoRA on the text encoder(s) is offered (CLIP for SD; the LLM encoders of the DiTs are not trained)."""
    img2img: bool
    reference_images: int
    """How many reference images the pipeline can edit from (0: none)."""
    sample_steps: int
    sample_guidance: float


FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec for spec in (
        FamilySpec("sd15", "Stable Diffusion 1.x", "diffusion", "stable-diffusion-v1-5/stable-diffusion-v1-5",
                   "tiny-sd15", 512, 8, True, True, 0, 20, 7.0),
        FamilySpec("sdxl", "Stable Diffusion XL", "diffusion", "stabilityai/stable-diffusion-xl-base-1.0",
                   "tiny-sdxl", 1024, 8, True, True, 0, 20, 7.0),
        # klein: the base (undistilled) 4B model trains; the distilled FLUX.2-klein-4B renders in 4 steps.
        FamilySpec("flux2_klein", "FLUX.2 [klein] 4B", "flow", "black-forest-labs/FLUX.2-klein-base-4B",
                   "tiny-flux2-klein", 1024, 16, False, False, 4, 28, 4.0),
        FamilySpec("z_image", "Z-Image", "flow", "Tongyi-MAI/Z-Image-Turbo", "tiny-z-image", 1024, 16, False, True,
                   0, 8, 0.0),
        FamilySpec("qwen_image", "Qwen-Image", "flow", "Qwen/Qwen-Image", "tiny-qwen-image", 1024, 16, False, True,
                   0, 30, 4.0),
    )
}
FAMILY_LABELS: dict[str, str] = {name: spec.label for name, spec in FAMILIES.items()}


def family_spec(name: str) -> FamilySpec:
    """The family's catalogue entry; ValueError naming the known families for any other name."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def is_flow(name: str) -> bool:
    return family_spec(name).objective == "flow"
