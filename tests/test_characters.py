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


# --- the API and the CLI take a character (id or slug); left out, the only one; a clear 400 / exit 2 otherwise -----

def test_the_api_takes_a_character_by_id_or_slug_and_refuses_an_ambiguous_or_unknown_one(studio):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from api.routes import api_routes
    from core.characters.characters import create_character
    from core.jobs.lifecycle import get_job
    from tests.conftest import TEST_API_TOKEN

    headers = {"Authorization": f"Bearer {TEST_API_TOKEN}"}
    with TestClient(Starlette(routes=api_routes())) as client:
        only = client.post("/api/jobs", json={"kind": "noop"}, headers=headers)  # one character: the default
        assert only.status_code == 201
        first = get_job(only.json()["id"]).character_id
        assert first is not None
        ben = create_character(name="Ben Lake")
        ambiguous = client.post("/api/jobs", json={"kind": "noop"}, headers=headers)
        assert ambiguous.status_code == 400 and "ben-lake" in ambiguous.json()["error"]
        unknown = client.post("/api/jobs", json={"kind": "noop", "character": "nobody"}, headers=headers)
        assert unknown.status_code == 400 and "nobody" in unknown.json()["error"]
        by_slug = client.post("/api/jobs", json={"kind": "noop", "character": "ben-lake"}, headers=headers)
        by_id = client.post("/api/jobs", json={"kind": "noop", "character": first}, headers=headers)
        assert get_job(by_slug.json()["id"]).character_id == ben.id
        assert get_job(by_id.json()["id"]).character_id == first
        listed = client.get("/api/pipelines", params={"character": "ben-lake"}, headers=headers)
        assert listed.status_code == 200 and listed.json()["total"] == 0
        assert client.get("/api/pipelines", params={"character": "x-none"}, headers=headers).status_code == 400
    assert _count("job") == 3  # the refused requests wrote nothing


def _count(table: str) -> int:
    with get_engine().connect() as connection:
        return int(connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def test_the_cli_takes_a_character_and_exits_2_when_it_must_but_was_not_told_which(studio):
    from typer.testing import CliRunner

    from core.characters.characters import create_character
    from core.jobs.lifecycle import get_job
    from workers.cli import app

    runner = CliRunner()
    alone = runner.invoke(app, ["enqueue", "noop"])
    assert alone.exit_code == 0, alone.output
    ben = create_character(name="Ben Lake")
    ambiguous = runner.invoke(app, ["enqueue", "noop"])
    assert ambiguous.exit_code == 2 and "several characters" in ambiguous.output
    unknown = runner.invoke(app, ["--character", "nobody", "enqueue", "noop"])
    assert unknown.exit_code == 2 and "nobody" in unknown.output
    chosen = runner.invoke(app, ["--character", "ben-lake", "enqueue", "noop"])
    assert chosen.exit_code == 0, chosen.output
    assert get_job(chosen.output.strip()).character_id == ben.id
    listed = runner.invoke(app, ["--character", str(ben.id), "jobs"])
    assert chosen.output.strip()[:8] in listed.output and alone.output.strip()[:8] not in listed.output
    roster = runner.invoke(app, ["characters"])
    assert "ben-lake" in roster.output and "mia-rivers" in roster.output
