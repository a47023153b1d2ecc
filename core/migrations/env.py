"""Alembic environment: the URL comes from the caller (core.db.alembic_config), never an ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlmodel import SQLModel

import core.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from core.db import make_engine

target_metadata = SQLModel.metadata
# Postgres: serialise concurrent upgrades from the app and the workers.
_ADVISORY_LOCK_ID = 7_412_230


def run_migrations_online() -> None:
    url = context.config.attributes["database_url"]
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            is_postgres = connection.dialect.name == "postgresql"
            if is_postgres:
                connection.execute(text(f"SELECT pg_advisory_lock({_ADVISORY_LOCK_ID})"))
                connection.commit()
            try:
                context.configure(
                    connection=connection,
                    target_metadata=target_metadata,
                    render_as_batch=connection.dialect.name == "sqlite",
                    compare_type=True,
                )
                with context.begin_transaction():
                    context.run_migrations()
            finally:
                if is_postgres:
                    connection.execute(text(f"SELECT pg_advisory_unlock({_ADVISORY_LOCK_ID})"))
                    connection.commit()
    finally:
        engine.dispose()


run_migrations_online()
