"""Asset library: filterable asset columns, LoRA lineage, collections, the prompt library

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('asset', schema=None) as batch_op:
        batch_op.drop_index('ix_asset_collection_created')
        batch_op.drop_index('ix_asset_character_id')
        batch_op.drop_column('collection_id')
        batch_op.add_column(sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('thumbnail_key', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True))
        batch_op.add_column(sa.Column('width', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('height', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('prompt', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('dataset_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_asset_deleted_created', ['deleted_at', 'created_at'], unique=False)
        batch_op.create_index('ix_asset_source_created', ['source', 'created_at'], unique=False)
        batch_op.create_index('ix_asset_dataset_created', ['dataset_id', 'created_at'], unique=False)
        batch_op.create_index('ix_asset_character_created', ['character_id', 'created_at'], unique=False)
        batch_op.create_index('ix_asset_deleted_size', ['deleted_at', 'size_bytes'], unique=False)

    op.create_table(
        'assetlora',
        sa.Column('asset_id', sa.Integer(), nullable=False),
        sa.Column('lora_id', sa.Integer(), nullable=False),
        sa.Column('strength', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['asset_id'], ['asset.id']),
        sa.PrimaryKeyConstraint('asset_id', 'lora_id'),
    )
    op.create_index('ix_assetlora_lora_asset', 'assetlora', ['lora_id', 'asset_id'], unique=False)
    op.create_table(
        'collection',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_table(
        'collectionitem',
        sa.Column('collection_id', sa.Integer(), nullable=False),
        sa.Column('asset_id', sa.Integer(), nullable=False),
        sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['asset_id'], ['asset.id']),
        sa.ForeignKeyConstraint(['collection_id'], ['collection.id']),
        sa.PrimaryKeyConstraint('collection_id', 'asset_id'),
    )
    op.create_index('ix_collectionitem_asset', 'collectionitem', ['asset_id'], unique=False)
    op.create_index('ix_collectionitem_collection_added', 'collectionitem', ['collection_id', 'added_at'],
                    unique=False)
    op.create_table(
        'promptsnippet',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('negative', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    _backfill()


def _backfill() -> None:
    """Training samples get their source and prompt columns; every saved LoRA version becomes a
    library asset (kind "lora") linked to itself, so the library lists LoRA files too."""
    from datetime import UTC, datetime

    bind = op.get_bind()
    asset = sa.table('asset', sa.column('id', sa.Integer), sa.column('meta', sa.JSON),
                     sa.column('source', sa.String), sa.column('prompt', sa.Text))
    for row in bind.execute(sa.select(asset.c.id, asset.c.meta)).all():
        meta = row.meta or {}
        if meta.get('source') == 'training-sample':
            bind.execute(asset.update().where(asset.c.id == row.id)
                         .values(source='sample', prompt=str(meta.get('prompt', ''))))

    full_asset = sa.table(
        'asset', sa.column('id', sa.Integer), sa.column('job_id', sa.String), sa.column('character_id', sa.Integer),
        sa.column('kind', sa.String), sa.column('source', sa.String), sa.column('key', sa.String),
        sa.column('content_type', sa.String), sa.column('size_bytes', sa.Integer), sa.column('prompt', sa.Text),
        sa.column('dataset_id', sa.Integer), sa.column('meta', sa.JSON), sa.column('created_at', sa.DateTime),
    )
    lora = sa.table('loramodel', *(sa.column(name) for name in (
        'id', 'job_id', 'character_id', 'key', 'size_bytes', 'dataset_id', 'step', 'final', 'name', 'family',
        'base_model', 'trigger_word', 'created_at')))
    link = sa.table('assetlora', sa.column('asset_id', sa.Integer), sa.column('lora_id', sa.Integer),
                    sa.column('strength', sa.Float))
    for row in bind.execute(sa.select(lora)).all():
        result = bind.execute(full_asset.insert().values(
            job_id=row.job_id, character_id=row.character_id, kind='lora', source='lora', key=row.key,
            content_type='application/octet-stream', size_bytes=row.size_bytes, prompt='', dataset_id=row.dataset_id,
            meta={'lora_id': row.id, 'name': row.name, 'step': row.step, 'final': bool(row.final),
                  'family': row.family, 'base_model': row.base_model, 'trigger_word': row.trigger_word},
            created_at=row.created_at or datetime.now(UTC),
        ))
        bind.execute(link.insert().values(asset_id=result.inserted_primary_key[0], lora_id=row.id, strength=1.0))


def downgrade() -> None:
    op.drop_table('promptsnippet')
    op.drop_index('ix_collectionitem_collection_added', table_name='collectionitem')
    op.drop_index('ix_collectionitem_asset', table_name='collectionitem')
    op.drop_table('collectionitem')
    op.drop_table('collection')
    op.drop_index('ix_assetlora_lora_asset', table_name='assetlora')
    op.drop_table('assetlora')
    bind = op.get_bind()
    bind.execute(sa.text("DELETE FROM asset WHERE kind = 'lora'"))
    with op.batch_alter_table('asset', schema=None) as batch_op:
        batch_op.drop_index('ix_asset_deleted_size')
        batch_op.drop_index('ix_asset_character_created')
        batch_op.drop_index('ix_asset_dataset_created')
        batch_op.drop_index('ix_asset_source_created')
        batch_op.drop_index('ix_asset_deleted_created')
        for column in ('dataset_id', 'prompt', 'height', 'width', 'thumbnail_key', 'source'):
            batch_op.drop_column(column)
        batch_op.add_column(sa.Column('collection_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_asset_character_id', ['character_id'], unique=False)
        batch_op.create_index('ix_asset_collection_created', ['collection_id', 'created_at'], unique=False)
