"""job indexes for monitoring: finished jobs per status and kind, oldest queued per queue

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 10:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index('ix_job_status_finished', ['status', 'finished_at'], unique=False)
        batch_op.create_index('ix_job_kind_status_finished', ['kind', 'status', 'finished_at'], unique=False)
        batch_op.create_index('ix_job_status_queue_created', ['status', 'queue', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index('ix_job_status_queue_created')
        batch_op.drop_index('ix_job_kind_status_finished')
        batch_op.drop_index('ix_job_status_finished')
