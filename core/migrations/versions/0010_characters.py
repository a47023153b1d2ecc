"""Characters as the root: a slug and archived_at per character, pipelines owned by a character, and every
existing row without a character given to the first one (made from the demo defaults when the studio had rows
but no character).

Revision ID: 0010_characters
Revises: 0009
Create Date: 2026-12-07 18:20:00
"""

import json
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = '0010_characters'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tables whose rows belong to a character (pipeline's column is added here).
OWNED = ('dataset', 'job', 'asset', 'loramodel', 'contentplan', 'post', 'pipeline')
# A copy of the defaults at the time of writing: a migration must not change when core's defaults do.
DEFAULT_NAME = 'Mia Rivers'
DEFAULT_PERSONA = {
    'name': DEFAULT_NAME, 'niche': 'outdoor fitness and healthy food', 'tone': 'warm, upbeat, practical',
    'audience': 'busy people in their 20s and 30s who want to move more',
    'do': ['share one concrete tip per post', 'speak in the first person'],
    'dont': ['medical claims', 'mention competitors'],
}


def _slugify(name: str) -> str:
    """core.characters.characters.slugify as of this revision (copied: migrations are frozen in time)."""
    ascii_name = unicodedata.normalize('NFKD', name).encode('ascii', 'ignore').decode()
    slug = re.sub(r'[^a-z0-9]+', '-', ascii_name.lower()).strip('-')[:80].strip('-')
    if not slug or not slug[0].isalpha():
        slug = f'c-{slug}'.strip('-')[:80]
    return slug


def _fill_slugs(connection: sa.Connection) -> None:
    taken: set[str] = set()
    rows = connection.execute(sa.text('SELECT id, name FROM "character" ORDER BY id')).all()
    for character_id, name in rows:
        base = slug = _slugify(name)
        n = 1
        while slug in taken:
            n += 1
            slug = f'{base[:80 - len(str(n)) - 1]}-{n}'
        taken.add(slug)
        connection.execute(sa.text('UPDATE "character" SET slug = :slug WHERE id = :id'),
                           {'slug': slug, 'id': character_id})


def _owner_of_existing_rows(connection: sa.Connection) -> int | None:
    """The first character; made from the defaults when rows need one and there is none."""
    first = connection.execute(sa.text('SELECT id FROM "character" ORDER BY id LIMIT 1')).scalar()
    if first is not None:
        return int(first)
    orphans = sum(connection.execute(sa.text(f'SELECT COUNT(*) FROM {table} WHERE character_id IS NULL')).scalar_one()
                  for table in OWNED)
    if not orphans:
        return None
    connection.execute(
        sa.text('INSERT INTO "character" (name, slug, trigger_word, persona, voice, likeness_threshold, created_at) '
                'VALUES (:name, :slug, \'\', :persona, \'\', 0.6, :now)'),
        {'name': DEFAULT_NAME, 'slug': _slugify(DEFAULT_NAME), 'persona': json.dumps(DEFAULT_PERSONA),
         'now': datetime.now(UTC)})
    return int(connection.execute(sa.text('SELECT id FROM "character" ORDER BY id LIMIT 1')).scalar_one())


def upgrade() -> None:
    op.add_column('character', sa.Column('slug', sa.String(length=80), nullable=True))
    op.add_column('character', sa.Column('archived_at', sa.DateTime(timezone=True), nullable=True))
    # Plain ALTERs, no batch: SQLite adds a column with its REFERENCES in place, while a batch would copy the
    # table, and dropping the old copy of a table other tables point at fails with foreign keys on.
    if op.get_bind().dialect.name == 'sqlite':  # alembic refuses constraints in an SQLite ALTER; SQLite takes it
        op.execute('ALTER TABLE pipeline ADD COLUMN character_id INTEGER REFERENCES "character" (id)')
    else:
        op.add_column('pipeline', sa.Column('character_id', sa.Integer(), nullable=True))
        op.create_foreign_key('fk_pipeline_character_id', 'pipeline', 'character', ['character_id'], ['id'])
    op.create_index('ix_pipeline_character_id', 'pipeline', ['character_id'], unique=False)
    connection = op.get_bind()
    _fill_slugs(connection)
    owner = _owner_of_existing_rows(connection)
    if owner is not None:
        for table in OWNED:
            connection.execute(sa.text(f'UPDATE {table} SET character_id = :owner WHERE character_id IS NULL'),
                               {'owner': owner})
    op.create_index('uq_character_slug', 'character', ['slug'], unique=True)
    op.create_index('ix_character_archived_name', 'character', ['archived_at', 'name'], unique=False)


def downgrade() -> None:
    # The owners given to old rows stay (they were a fact by then); only the columns go.
    op.drop_index('ix_character_archived_name', table_name='character')
    op.drop_index('uq_character_slug', table_name='character')
    op.drop_index('ix_pipeline_character_id', table_name='pipeline')
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint('fk_pipeline_character_id', 'pipeline', type_='foreignkey')
    # SQLite (3.35+) drops a plain column in place, its inline REFERENCES with it.
    for table, column in (('pipeline', 'character_id'), ('character', 'archived_at'), ('character', 'slug')):
        op.drop_column(table, column)
