"""Face identity: a character's likeness threshold and fingerprint, faces of dataset images, likeness of assets

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 15:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('character', schema=None) as batch_op:
        batch_op.add_column(sa.Column('likeness_threshold', sa.Float(), nullable=False, server_default='0.6'))
        batch_op.add_column(sa.Column('fingerprint', sa.JSON(), nullable=True))
    with op.batch_alter_table('datasetimage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('face_model', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('face_count', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('face_embedding', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('face_distance', sa.Float(), nullable=True))
    with op.batch_alter_table('asset', schema=None) as batch_op:
        batch_op.add_column(sa.Column('face_distance', sa.Float(), nullable=True))
    op.create_index('ix_asset_deleted_face', 'asset',
                    ['deleted_at', sa.text('(face_distance IS NULL)'), 'face_distance'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_asset_deleted_face', table_name='asset')
    with op.batch_alter_table('asset', schema=None) as batch_op:
        batch_op.drop_column('face_distance')
    with op.batch_alter_table('datasetimage', schema=None) as batch_op:
        for name in ('face_distance', 'face_embedding', 'face_count', 'face_model'):
            batch_op.drop_column(name)
    with op.batch_alter_table('character', schema=None) as batch_op:
        batch_op.drop_column('fingerprint')
        batch_op.drop_column('likeness_threshold')
