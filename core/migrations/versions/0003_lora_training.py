"""LoRA training: configs (with the seeded presets), per-step metrics, saved LoRA versions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    loraconfig = op.create_table(
        'loraconfig',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('is_default', sa.Boolean(), nullable=False),
        sa.Column('preset', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_index('uq_loraconfig_default', 'loraconfig', ['is_default'], unique=True,
                    sqlite_where=sa.text('is_default'), postgresql_where=sa.text('is_default'))
    op.create_table(
        'trainingmetric',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('job_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('epoch', sa.Integer(), nullable=False),
        sa.Column('loss', sa.Float(), nullable=False),
        sa.Column('lr', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['job.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('job_id', 'step', name='uq_trainingmetric_job_step'),
    )
    op.create_table(
        'loramodel',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('job_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('final', sa.Boolean(), nullable=False),
        sa.Column('promoted', sa.Boolean(), nullable=False),
        sa.Column('dataset_id', sa.Integer(), nullable=True),
        sa.Column('config_id', sa.Integer(), nullable=True),
        sa.Column('character_id', sa.Integer(), nullable=True),
        sa.Column('family', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('base_model', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column('trigger_word', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column('size_bytes', sa.Integer(), nullable=False),
        sa.Column('loss', sa.Float(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['character_id'], ['character.id']),
        sa.ForeignKeyConstraint(['job_id'], ['job.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('job_id', 'step', name='uq_loramodel_job_step'),
        sa.UniqueConstraint('key'),
    )
    op.create_index('ix_loramodel_created', 'loramodel', ['created_at'], unique=False)
    op.create_index('ix_loramodel_promoted', 'loramodel', ['promoted', 'created_at'], unique=False)
    op.create_index(op.f('ix_loramodel_character_id'), 'loramodel', ['character_id'], unique=False)
    _seed_presets(loraconfig)


def _seed_presets(table: sa.Table) -> None:
    """The presets a first start offers. Their values are frozen here, as of this migration."""
    from datetime import UTC, datetime

    from core.training.params import LoraParams

    sd15 = {"family": "sd15", "base_model": "stable-diffusion-v1-5/stable-diffusion-v1-5", "rank": 16, "alpha": 16,
            "learning_rate": 1e-4, "steps": 1500, "mixed_precision": "bf16", "min_snr_gamma": 5.0,
            "sample_every": 250, "checkpoint_every": 250, "keep_checkpoints": 3}
    presets = [
        ("SD 1.5 Standard", "512 px, rank 16: a good first LoRA of a person in ~1,500 steps.", True,
         {**sd15, "resolution": 512, "batch_size": 1}),
        ("SD 1.5 High Quality", "768 px with cosine decay and offset noise; slower, finer detail.", False,
         {**sd15, "resolution": 768, "batch_size": 1, "lr_scheduler": "cosine", "warmup_steps": 100,
          "noise_offset": 0.05, "gradient_checkpointing": True}),
        ("SDXL Standard", "SDXL base at 1024 px, rank 16, gradient checkpointing to fit 24 GB cards.", False,
         {**sd15, "family": "sdxl", "base_model": "stabilityai/stable-diffusion-xl-base-1.0", "resolution": 1024,
          "batch_size": 1, "gradient_checkpointing": True}),
        ("Tiny (offline demo)", "The studio's tiny random model: trains in seconds on a CPU, images are noise.",
         False,
         {"family": "sd15", "base_model": "tiny-sd15", "resolution": 128, "rank": 8, "alpha": 8,
          "learning_rate": 1e-2, "steps": 60, "batch_size": 2, "mixed_precision": "no", "min_snr_gamma": 5.0,
          "sample_every": 20, "sample_steps": 4, "checkpoint_every": 20, "keep_checkpoints": 3}),
    ]
    now = datetime.now(UTC)
    op.bulk_insert(table, [
        {"name": name, "description": description, "params": LoraParams.model_validate(values).model_dump(mode="json"),
         "is_default": is_default, "preset": True, "created_at": now, "updated_at": now}
        for name, description, is_default, values in presets
    ])


def downgrade() -> None:
    op.drop_index(op.f('ix_loramodel_character_id'), table_name='loramodel')
    op.drop_index('ix_loramodel_promoted', table_name='loramodel')
    op.drop_index('ix_loramodel_created', table_name='loramodel')
    op.drop_table('loramodel')
    op.drop_table('trainingmetric')
    op.drop_index('uq_loraconfig_default', table_name='loraconfig')
    op.drop_table('loraconfig')
