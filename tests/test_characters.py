"""Characters as the root: create, edit, archive, resolve by id or slug, scope lists and new rows, and the
migration that gives every existing row to the first character (SQLite and PostgreSQL, with rows in place)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text

from core.db import alembic_config, get_engine, session_scope, upgrade_schema
from core.models import Pipeline


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
        owners = {connection.execute(text("SELECT character_id FROM dataset")).scalar_one(),
                  connection.execute(text("SELECT character_id FROM pipeline")).scalar_one()}
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
        with session_scope() as session:
            session.add(Pipeline(id=f"{marker}pipe".ljust(32, "0"), kind="content", character_id=character.id,
                                 payload={"theme": f"{marker}-theme"}))
    return ids


def _page_text(at) -> str:
    return " ".join(str(getattr(node, "proto", "")) for node in _walk(at._tree))


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


@pytest.mark.parametrize("page", ["pages/home.py", "pages/datasets.py", "pages/captions.py", "pages/jobs.py",
                                  "pages/assets.py", "pages/calendar.py", "pages/automation.py",
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
    leaked = [m for m in ("ava-dataset", "ava-job", "ava-prompt", "ava-caption", "avapipe") if m in text]
    assert not leaked, (page, leaked)
    shown = {"pages/home.py": "ben-dataset", "pages/datasets.py": "ben-dataset", "pages/captions.py": "ben-dataset",
             "pages/calendar.py": "ben-caption", "pages/automation.py": "benpipe"}
    if page in shown:
        assert shown[page] in text, page  # the current character's rows are there


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
    with get_engine().connect() as connection:  # the refused requests wrote nothing
        assert connection.execute(text("SELECT COUNT(*) FROM job")).scalar_one() == 3


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


# --- create, edit, archive ---------------------------------------------------------------------------------------

def test_a_character_is_created_edited_archived_and_unarchived_with_clear_refusals(studio):
    from core.characters.characters import (
        create_character,
        list_characters,
        resolve_character,
        set_archived,
        update_character,
    )
    from core.errors import Conflict, InvalidInput

    ava = create_character(name="  Ava   Stone ", trigger_word="ohwx ava")
    assert (ava.name, ava.slug, ava.likeness_threshold) == ("Ava Stone", "ava-stone", 0.6)
    assert create_character(name="Ava Stone!").slug == "ava-stone-2"  # another name, the same slug: numbered
    assert create_character(name="42").slug == "c-42"  # a slug never reads as an id
    with pytest.raises(Conflict):
        create_character(name="Ava Stone")
    for bad in ({"slug": "Bad Slug"}, {"slug": "9lives"}, {"likeness_threshold": 1.5}, {"name": " "}):
        with pytest.raises(InvalidInput):
            update_character(ava.id, **bad)
    edited = update_character(ava.id, name="Ava S.", slug="ava", likeness_threshold=0.45, voice="espeak:en-us")
    assert (edited.name, edited.slug, edited.likeness_threshold, edited.voice) == ("Ava S.", "ava", 0.45,
                                                                                    "espeak:en-us")
    assert edited.persona["name"] == "Ava S."  # the persona follows the rename
    assert resolve_character("ava").id == resolve_character(str(ava.id)).id == ava.id
    for other in list_characters().items:
        if other.id != ava.id:
            set_archived(other.id, archived=True)
    with pytest.raises(InvalidInput, match="last active"):
        set_archived(ava.id, archived=True)
    assert [c.id for c in list_characters().items] == [ava.id]  # archived ones leave the switcher…
    assert resolve_character(None).id == ava.id  # …and the default
    assert list_characters(include_archived=True).total == 3  # …but stay
    set_archived(ava.id + 1, archived=False)
    assert list_characters().total == 2


# --- held posts: the calendar's marker, and a content pipeline with a threshold stricter than every score --------

def _scored_draft_posts(scores: list[float]):
    from core.characters.characters import current_character
    from core.characters.likeness import Likeness, record_asset_likeness
    from core.library.assets import AssetSource, record_asset
    from core.models import AssetKind
    from core.publishing import posts

    character = current_character()
    made = []
    for index, score in enumerate(scores):
        image = record_asset(key=f"t/held-{index}.png", kind=AssetKind.IMAGE, source=AssetSource.GENERATED,
                             content_type="image/png", size_bytes=1, character_id=character.id)
        record_asset_likeness(image.id, Likeness("dlib", 1, score, 0.6, "scored"))
        made.append(posts.create_post(platform="instagram", caption=f"held {index}", asset_ids=[image.id],
                                      scheduled_at=datetime.now(UTC).replace(microsecond=0), character_id=character.id))
    return character, made


def test_a_content_pipeline_whose_threshold_is_stricter_than_every_score_holds_every_post(studio):
    """The scheduling stage, run on posts production made ready (the worker run is tests/test_pipeline_jobs.py;
    its tiny model's images have no face, so they are never scored and never held)."""
    from core.automation import pipelines
    from core.characters.likeness import set_threshold
    from core.models import Pipeline, PostStatus
    from core.publishing import posts

    character, made = _scored_draft_posts([0.31, 0.44, 0.52])
    set_threshold(character.id, 0.3)  # every image is farther from the fingerprint than this
    request = {"theme": "runs", "platforms": ["instagram"], "start": "2030-01-07", "end": "2030-01-13"}
    pipeline = Pipeline(kind="content", character_id=character.id, payload=request,
                        results={"production": {"readyPostIds": [p.id for p in made]}})
    result = pipelines._finish_scheduling(pipeline, [])
    assert result.error is None
    assert result.results["scheduledPostIds"] == [] and result.results["publishJobIds"] == []
    assert [h["postId"] for h in result.results["heldPosts"]] == [p.id for p in made]
    assert {posts.get_post(p.id).status for p in made} == {PostStatus.DRAFT}


def test_the_calendar_marks_a_held_post_with_its_score_and_reject_deletes_it(studio):
    from zoneinfo import ZoneInfo

    from core.characters.likeness import set_threshold
    from core.publishing import posts
    from tests.apptest import open_page
    from ui.calendar.board import calendar_events
    from ui.calendar.state import PANEL

    character, (held, fine) = _scored_draft_posts([0.7, 0.2])
    set_threshold(character.id, 0.6)
    events = {e["id"]: e for e in calendar_events([held, fine], ZoneInfo("UTC"))}
    assert events[str(held.id)]["title"].startswith("⏸ held for review (0.70)")
    assert not events[str(fine.id)]["extendedProps"]["held"]
    at = open_page("pages/calendar.py", **{PANEL: {"post": held.id}})
    assert any("Held for review" in w.value and "0.70" in w.value for w in at.warning)
    reject = next(b for b in at.button if b.label.startswith("Reject"))
    reject.click().run()
    with pytest.raises(Exception, match="does not exist"):
        posts.get_post(held.id)


# --- the Characters page -------------------------------------------------------------------------------------------

def test_the_characters_page_creates_edits_and_archives_and_takes_reference_images(studio):
    from core.characters import references
    from core.characters.characters import list_characters
    from core.errors import InvalidInput
    from core.library.assets import store_image
    from tests.apptest import open_page
    from tests.factories import image_bytes
    from ui.session import CHARACTER_KEY

    at = open_page("pages/characters.py")
    assert [t.label for t in at.tabs] == ["Character", "Reference images", "Lineage", "All characters"]
    at.text_input(key="characters.new.name").input("Ben Lake")
    at.button(key="characters.new.create").click().run()
    ben = next(c for c in list_characters().items if c.name == "Ben Lake")
    assert at.session_state[CHARACTER_KEY] == ben.id  # a new character is the one worked on next
    edit = f"characters.edit.{ben.id}"
    at.slider(key=f"{edit}.threshold").set_value(0.45)
    at.text_input(key=f"{edit}.slug").input("Bad Slug")
    at.button(key=f"{edit}.save").click().run()
    assert any("slug" in e.value for e in at.error)  # refused: nothing saved
    assert next(c for c in list_characters().items if c.id == ben.id).likeness_threshold == 0.6
    at.text_input(key=f"{edit}.slug").input("ben")
    at.button(key=f"{edit}.save").click().run()
    saved = next(c for c in list_characters().items if c.id == ben.id)
    assert (saved.slug, saved.likeness_threshold) == ("ben", 0.45)

    def reference_uploader():  # the Character tab has the voice block's clip uploader too
        return next(u for u in at.get("file_uploader") if u.proto.label == "Add reference images")

    uploader = reference_uploader()
    uploader.set_value([("notes.png", b"not an image", "image/png")]).run()
    assert any("notes.png" in e.value for e in at.error) and references.reference_count(ben.id) == 0
    reference_uploader().set_value([("face.png", image_bytes(64, 64), "image/png")]).run()
    assert [a.source for a in references.reference_images(ben.id)] == ["reference"]
    mine = store_image("t/ben-made.png", image_bytes(48, 48, seed=3), source="generated", character_id=ben.id)
    with pytest.raises(InvalidInput):  # another character's image is not this one's to pick
        references.add_reference_from_asset(character_id=ben.id + 100, asset_id=mine.id)
    at.run().multiselect(key=f"characters.ref.pick.{ben.id}").set_value([mine.id])
    at.button(key=f"characters.ref.pick.{ben.id}.add").click().run()
    assert references.reference_count(ben.id) == 2

    at.button(key=f"characters.archive.{ben.id}").click().run()
    assert ben.id not in {c.id for c in list_characters().items}
    assert at.session_state[CHARACTER_KEY] != ben.id  # the switcher moved to an active character


def test_the_lineage_reads_dataset_lora_versions_images_videos_and_posts_of_one_character(studio):
    from core.characters.characters import create_character
    from core.characters.lineage import character_lineage
    from core.datasets.datasets import create_dataset
    from core.jobs.lifecycle import create_job
    from core.library.assets import AssetSource, record_asset
    from core.models import AssetKind, LoraModel
    from core.publishing import posts

    ava, ben = create_character(name="Ava Stone"), create_character(name="Ben Lake")
    dataset = create_dataset(name="ava-set", character_id=ava.id)
    job = create_job("noop", {}, character_id=ava.id)
    with session_scope() as session:
        loras = [LoraModel(name=f"v{step}", job_id=job.id, step=step, promoted=step == 20, dataset_id=dataset.id,
                           character_id=ava.id, family="sd15", base_model="tiny", key=f"l/{step}") for step in (10, 20)]
        session.add_all(loras)
    for index in range(3):
        record_asset(key=f"t/a{index}.png", kind=AssetKind.IMAGE, source=AssetSource.GENERATED,
                     content_type="image/png", size_bytes=1, character_id=ava.id,
                     loras=[(loras[1].id, 0.8)] if index < 2 else [])
    record_asset(key="t/a.mp4", kind=AssetKind.VIDEO, source=AssetSource.VIDEO, content_type="video/mp4",
                 size_bytes=1, character_id=ava.id)
    record_asset(key="t/b.png", kind=AssetKind.IMAGE, source=AssetSource.GENERATED, content_type="image/png",
                 size_bytes=1, character_id=ben.id)
    posts.create_post(platform="tiktok", scheduled_at=datetime.now(UTC), character_id=ava.id)
    found = character_lineage(ava.id)
    [line] = found.datasets
    assert (line.dataset.name, line.lora_total) == ("ava-set", 2)
    assert [(v.lora.name, v.lora.promoted, v.images) for v in line.loras] == [("v20", True, 2), ("v10", False, 0)]
    assert (found.images, found.videos, found.posts) == (3, 1, {"draft": 1})
    assert character_lineage(ben.id).images == 1 and not character_lineage(ben.id).datasets
