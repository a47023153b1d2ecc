"""The schema comes from Alembic migrations and works the same on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlmodel import select

from core.db import alembic_config, get_engine, session_scope, upgrade_schema
from core.models import Asset, Dataset, DatasetImage, Job

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


def test_migrations_create_every_table_with_its_indexes(studio):
    inspector = inspect(get_engine())
    tables = set(inspector.get_table_names())
    assert {"job", "joblog", "dataset", "datasetimage", "asset", "character", "alembic_version"} <= tables
    job_indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("job")}
    assert ("status", "created_at") in job_indexes
    assert ("kind", "created_at") in job_indexes
    assert ("job_id", "id") in {tuple(ix["column_names"]) for ix in inspector.get_indexes("joblog")}
    assert ("dataset_id", "id") in {tuple(ix["column_names"]) for ix in inspector.get_indexes("datasetimage")}


def test_upgrading_twice_is_harmless(studio):
    upgrade_schema()
    upgrade_schema()
    with get_engine().connect() as connection:
        current = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()
    assert current == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_rows_round_trip_with_json_and_relations(studio):
    with session_scope() as session:
        job = Job(kind="noop", queue="default", payload={"nested": {"list": [1, 2]}})
        dataset = Dataset(name="ohwx", trigger_word="ohwx woman")
        session.add_all([job, dataset])
        session.flush()
        image = DatasetImage(dataset_id=dataset.id, key="datasets/1/a.png", width=512, height=640, sha256="ab" * 32)
        session.add(image)
        session.add(Asset(job_id=job.id, kind="image", key=f"jobs/{job.id}/0.png", meta={"seed": 42}))
    with session_scope() as session:
        stored = session.get(Job, job.id)
        assert stored.payload == {"nested": {"list": [1, 2]}}
        assert session.exec(select(DatasetImage)).one().width == 512
        assert session.exec(select(Asset)).one().meta == {"seed": 42}
