"""Presets for the 2026 model families: FLUX.2 [klein], Z-Image and Qwen-Image per VRAM tier, and a tiny
offline preset of each (no schema change: LoraConfig.params is JSON, the new fields have defaults)

Revision ID: 0012_model_families
Revises: 0011_model_manager
Create Date: 2026-12-07 18:30:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0012_model_families'
down_revision: str | None = '0011_model_manager'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here, as of this migration. VRAM tiers follow core/training/vram.py's estimate at these values
# (16 GB: NF4 base or 768 px; 24 GB: bf16 or NF4 for Qwen-Image; 80 GB: bf16, batch 4, rank 32).
_FLOW = {"rank": 16, "alpha": 16, "learning_rate": 1e-4, "steps": 2000, "mixed_precision": "bf16",
         "min_snr_gamma": None, "timestep_sampling": "logit_normal", "gradient_checkpointing": True,
         "sample_every": 250, "checkpoint_every": 250, "keep_checkpoints": 3}
_BASES = {"flux2_klein": ("FLUX.2 klein", "black-forest-labs/FLUX.2-klein-base-4B", 28, 4.0),
          "z_image": ("Z-Image", "Tongyi-MAI/Z-Image-Turbo", 8, 0.0),
          "qwen_image": ("Qwen-Image", "Qwen/Qwen-Image", 30, 4.0)}
# family → (16 GB overrides, 24 GB overrides)
_TIERS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "flux2_klein": ({"resolution": 768}, {"resolution": 1024}),
    "z_image": ({"resolution": 1024, "quantize_base": "nf4"}, {"resolution": 1024}),
    "qwen_image": ({"resolution": 512, "quantize_base": "nf4", "optimizer": "adamw8bit"},
                   {"resolution": 1024, "quantize_base": "nf4"}),
}
_TINY = {"flux2_klein": "tiny-flux2-klein", "z_image": "tiny-z-image", "qwen_image": "tiny-qwen-image"}


def _presets() -> list[tuple[str, str, dict[str, Any]]]:
    presets = []
    for family, (label, base_model, sample_steps, guidance) in _BASES.items():
        common = {**_FLOW, "family": family, "base_model": base_model, "sample_steps": sample_steps,
                  "sample_guidance": guidance}
        low, mid = _TIERS[family]
        presets += [
            (f"{label} 16 GB", f"{label} LoRA for 16 GB cards: gradient checkpointing"
             + (", NF4 base" if low.get("quantize_base") else "") + f", {low['resolution']} px.",
             {**common, "batch_size": 1, **low}),
            (f"{label} 24 GB", f"{label} LoRA for 24 GB cards at {mid['resolution']} px.",
             {**common, "batch_size": 1, **mid}),
            (f"{label} 80 GB", f"{label} LoRA for 80 GB cards: bf16 base, batch 4, rank 32.",
             {**common, "resolution": 1024, "batch_size": 4, "rank": 32, "alpha": 32}),
            (f"Tiny {label} (offline test)", f"The studio's tiny random {label}: trains in seconds on a CPU, "
             "images are noise.",
             {"family": family, "base_model": _TINY[family], "resolution": 128, "rank": 4, "alpha": 4,
              "learning_rate": 1e-2, "steps": 40, "batch_size": 2, "mixed_precision": "no", "min_snr_gamma": None,
              "sample_every": 20, "sample_steps": 4, "sample_guidance": 2.0, "checkpoint_every": 20,
              "keep_checkpoints": 3}),
        ]
    return presets


def upgrade() -> None:
    from core.training.params import LoraParams

    table = sa.table('loraconfig', sa.column('name', sa.String), sa.column('description', sa.String),
                     sa.column('params', sa.JSON), sa.column('is_default', sa.Boolean),
                     sa.column('preset', sa.Boolean), sa.column('created_at', sa.DateTime(timezone=True)),
                     sa.column('updated_at', sa.DateTime(timezone=True)))
    taken = set(op.get_bind().execute(sa.text("SELECT name FROM loraconfig")).scalars())
    now = datetime.now(UTC)
    # A user's own config may already carry one of these names: it is kept, the preset skipped.
    op.bulk_insert(table, [
        {"name": name, "description": description, "params": LoraParams.model_validate(values).model_dump(mode="json"),
         "is_default": False, "preset": True, "created_at": now, "updated_at": now}
        for name, description, values in _presets() if name not in taken
    ])


def downgrade() -> None:
    names = [name for name, _, _ in _presets()]
    op.get_bind().execute(sa.text("DELETE FROM loraconfig WHERE preset AND name IN :names")
                          .bindparams(sa.bindparam("names", expanding=True)), {"names": names})
