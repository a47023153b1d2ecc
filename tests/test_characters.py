"""Characters as the root: create, edit, archive, resolve by id or slug, scope lists and new rows, and the
migration that gives every existing row to the first character (SQLite and PostgreSQL, with rows in place)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text

from core.db import alembic_config, get_engine, upgrade_schema


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("with_character", [True, False], ids=["first-character", "no-character"])
def test_migration_gives_existing_rows_to_the_first_character(studio, with_character):
    command.downgrade(alembic_config(), "0009")
    now = datetime.now(UTC)
    with get_engine().begin() as connection:
        if with_character:
            for name in ("Zoë Park", "Zoe Park!"):  # two names, one slug: the second gets "-2"
                connection.execute(text('INSERT INTO "character" (name, trigger_word, persona, voice, '
                                        'likeness_threshold, created_at) VALUES (:n, \'\', \'{}\', \'\', 0.6, :t)'),
                                   {"n": name, "t": now})
        connection.execute(text("INSERT INTO dataset (name, kind, trigger_word, description, status, image_count, "
                                "created_at, updated_at) VALUES ('old', 'lora-training', '', '', 'empty', 0, :t, :t)"),
                           {"t": now})
        connection.execute(text("INSERT INTO pipeline (id, kind, status, progress, priority, payload, results, "
                                "warnings, dry_run, events, created_at, updated_at) VALUES ('p1', 'content', "
                                "'queued', 0, 5, '{}', '{}', '[]', false, 0, :t, :t)"), {"t": now})
    upgrade_schema()
    with get_engine().connect() as connection:
        characters = connection.execute(text('SELECT id, name, slug FROM "character" ORDER BY id')).all()
        owners = {connection.execute(text(f"SELECT character_id FROM {table}")).scalar_one()
                  for table in ("dataset", "pipeline")}
    if with_character:
        assert [c.slug for c in characters] == ["zoe-park", "zoe-park-2"]
    else:
        assert [(c.name, c.slug) for c in characters] == [("Mia Rivers", "mia-rivers")]
    assert owners == {characters[0].id}
