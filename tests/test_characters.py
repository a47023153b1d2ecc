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


# --- scoping: two characters, each page shows only the current one's rows ----------------------------------------

def _two_characters_with_rows() -> dict[str, int]:
    from core.characters.characters import create_character
    from core.characters.scope import character_scope
    from core.datasets.datasets import create_dataset
    from core.jobs.lifecycle import create_job
    from core.library.assets import AssetSource, record_asset
    from core.models import AssetKind
    from core.publishing import posts

    ids = {}
    for name in ("Ava Stone", "Ben Lake"):
        character = create_character(name=name)
        ids[name] = character.id
        marker = name.split()[0].lower()
        with character_scope(character.id):  # what the switcher does: new rows are this character's
            create_dataset(name=f"{marker}-dataset")
            create_job("noop", {"note": f"{marker}-job"})
            record_asset(key=f"t/{marker}.png", kind=AssetKind.IMAGE, source=AssetSource.GENERATED,
                         content_type="image/png", size_bytes=1, prompt=f"{marker}-prompt")
            posts.create_post(platform="instagram", scheduled_at=datetime.now(UTC).replace(microsecond=0),
                              caption=f"{marker}-caption")
    return ids


def _page_text(at) -> str:
    return " ".join(str(getattr(node, "proto", "")) for node in _walk(at._tree))


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


@pytest.mark.parametrize("page", ["pages/home.py", "pages/datasets.py", "pages/jobs.py", "pages/assets.py",
                                  "pages/characters.py"])
def test_each_page_shows_only_the_current_characters_rows(studio, page):
    from streamlit.testing.v1 import AppTest

    from tests.apptest import ROOT, checked
    from ui.session import CHARACTER_KEY

    ids = _two_characters_with_rows()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.session_state[CHARACTER_KEY] = ids["Ben Lake"]  # what picking Ben in the switcher stores
    switcher = checked(at.run()).sidebar.selectbox[0]
    assert (switcher.label, switcher.value) == ("Character", ids["Ben Lake"])
    assert set(switcher.options) == {"Ava Stone", "Ben Lake"}
    text = _page_text(checked(at.switch_page(page).run()))
    leaked = [m for m in ("ava-dataset", "ava-job", "ava-prompt", "ava-caption") if m in text]
    assert not leaked, (page, leaked)
    if page in ("pages/datasets.py", "pages/home.py"):
        assert "ben-dataset" in text
