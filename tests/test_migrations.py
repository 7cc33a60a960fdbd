"""The Alembic migrations build exactly the tables of the models, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import lifecycle.models  # noqa: F401
from lifecycle.db import get_engine, schema_state


def test_the_migrated_schema_matches_the_models(db):
    engine = get_engine(db)
    current, head = schema_state(engine)
    assert current == head
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == []


def test_a_new_sqlite_file_is_upgraded_on_first_use(tmp_path, cli):
    r = cli(
        "milestone", "list", "--json", env={"LIFECYCLE_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    )
    assert r.code == 0, r
    assert r.out.strip() == "[]"
    assert (tmp_path / "fresh.db").exists()
