"""Model pairing: a single-file DiT transformer names the base model its text encoder and VAE come from; the
pickers list ready models of a family by name

Revision ID: 0013_model_pairing
Revises: 0012_model_families
Create Date: 2026-12-07 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013_model_pairing'
down_revision: str | None = '0012_model_families'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('installedmodel', sa.Column('base_model', sa.String(length=1000), nullable=True))
    op.create_index('ix_installedmodel_family_status_name', 'installedmodel', ['family', 'status', 'name'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_installedmodel_family_status_name', table_name='installedmodel')
    with op.batch_alter_table('installedmodel') as batch:
        batch.drop_column('base_model')
