"""The schema exists only through migrations, and the migrations match the models."""

from __future__ import annotations

import uuid

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from alerts import migrate
from alerts.db import normalise_url
from alerts.models import Base
from tests.conftest import ON_POSTGRESQL, TEST_DATABASE_URL


def test_autogenerate_finds_no_difference_between_models_and_migrations(database_url):
    engine = create_engine(normalise_url(database_url))
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_migrations_downgrade_to_nothing_and_upgrade_again(tmp_path):
    if ON_POSTGRESQL:
        schema = f"migration_check_{uuid.uuid4().hex[:8]}"
        admin = create_engine(normalise_url(TEST_DATABASE_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        engine = create_engine(
            normalise_url(TEST_DATABASE_URL), connect_args={"options": f"-csearch_path={schema}"}
        )
    else:
        engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        for revision, expect_tables in (("head", True), ("base", False), ("head", True)):
            with engine.begin() as connection:
                if revision == "base":
                    migrate.downgrade(str(engine.url), "base", connection=connection)
                else:
                    migrate.upgrade(str(engine.url), "head", connection=connection)
            tables = set(inspect(engine).get_table_names())
            assert ("incidents" in tables) is expect_tables
            assert ("outbound_messages" in tables) is expect_tables
    finally:
        engine.dispose()
        if ON_POSTGRESQL:
            with admin.connect() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
