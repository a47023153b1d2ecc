"""Model families as plug-ins: one module per architecture, registered here by import.

``get_family("z_image")`` gives the object that loads, encodes, trains and samples that architecture
(see base.Family); the catalogue (labels, defaults, VRAM figures) is core/training/families.py.
"""

from __future__ import annotations

from workers.ml.families import flux2_klein, qwen_image, sd15, sdxl, z_image
from workers.ml.families.base import Components, Family, FamilyError

FAMILY_MODULES: dict[str, Family] = {
    module.FAMILY.name: module.FAMILY for module in (sd15, sdxl, flux2_klein, z_image, qwen_image)
}


def get_family(name: str) -> Family:
    try:
        return FAMILY_MODULES[name]
    except KeyError:
        raise FamilyError(f"unknown model family {name!r}; known: {', '.join(FAMILY_MODULES)}") from None


__all__ = ["FAMILY_MODULES", "Components", "Family", "FamilyError", "get_family"]
