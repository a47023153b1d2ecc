"""Model manager: installed base models (hub downloads, registered folders, converted single files)

Revision ID: 0011_model_manager
Revises: 0010_characters
Create Date: 2026-12-07 18:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011_model_manager'
down_revision: str | None = '0010_characters'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'installedmodel',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('family', sa.String(length=16), nullable=False),
        sa.Column('format', sa.String(length=16), nullable=False),
        sa.Column('precision', sa.String(length=16), nullable=False),
        sa.Column('size_bytes', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('source_kind', sa.String(length=16), nullable=False),
        sa.Column('source', sa.String(length=1000), nullable=False),
        sa.Column('path', sa.String(length=1000), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('job_id', sa.String(length=32), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('installed_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_index('ix_installedmodel_created', 'installedmodel', ['created_at'], unique=False)
    op.create_index('ix_installedmodel_status_created', 'installedmodel', ['status', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_installedmodel_status_created', table_name='installedmodel')
    op.drop_index('ix_installedmodel_created', table_name='installedmodel')
    op.drop_table('installedmodel')
