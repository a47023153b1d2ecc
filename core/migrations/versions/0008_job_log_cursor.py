"""Job log lines get a cursor (their Redis stream id as a number), so they can be written in batches

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 21:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('joblog', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cursor', sa.BigInteger(), nullable=False, server_default='0'))
    # Lines written before batching used their row id as the cursor; keep them in the same order.
    op.execute("UPDATE joblog SET cursor = id")
    with op.batch_alter_table('joblog', schema=None) as batch_op:
        batch_op.create_index('uq_joblog_job_cursor', ['job_id', 'cursor'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('joblog', schema=None) as batch_op:
        batch_op.drop_index('uq_joblog_job_cursor')
        batch_op.drop_column('cursor')
