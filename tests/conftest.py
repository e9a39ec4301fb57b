"""Shared fixtures: one migrated database per run (SQLite, or PostgreSQL from TEST_DATABASE_URL),
emptied after every test so that no test depends on another's data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from alerts import create_app, migrate
from alerts.db import Database, normalise_url
from alerts.models import Base

pytest_plugins = ["tests.fakes.providers"]

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
ON_POSTGRESQL = TEST_DATABASE_URL.startswith("postgresql")
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

postgresql_only = pytest.mark.skipif(not ON_POSTGRESQL, reason="needs TEST_DATABASE_URL on PostgreSQL")


def _reset_postgresql(url: str) -> None:
    engine = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database with the schema created by the migrations, exactly as in production."""
    if TEST_DATABASE_URL:
        url = TEST_DATABASE_URL
        if ON_POSTGRESQL:
            _reset_postgresql(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    migrate.upgrade(url)
    return url


def empty_database(database: Database) -> None:
    """Delete every row the test wrote (the schema stays)."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with database.engine.begin() as connection:
        if database.is_postgresql:
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


def make_test_app(database_url: str, instance: Path, **overrides: object) -> Flask:
    config = {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key",
        "SMS_GATEWAYS": ["console"],
        "SCHEDULER_ENABLED": False,
        # Messages go straight into the database, as on PostgreSQL; the SQLite spool is tested on its own
        # (tests/webhooks/test_spool.py), with the engine that empties it.
        "INBOUND_SPOOL": "0",
        **overrides,
    }
    app = create_app(config)
    app.instance_path = str(instance)
    return app


@pytest.fixture
def app_config() -> dict[str, object]:
    """Per-test configuration overrides; a test module can override this fixture."""
    return {}


@pytest.fixture
def app(database_url: str, tmp_path: Path, app_config: dict[str, object]) -> Iterator[Flask]:
    app = make_test_app(database_url, tmp_path / "instance", **app_config)
    yield app
    database = app.extensions["alerts_db"]
    empty_database(database)
    database.dispose()


@pytest.fixture
def database(app: Flask) -> Database:
    return app.extensions["alerts_db"]


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    """The test's own session, to arrange and inspect; it never holds SQLite's write lock while idle."""
    session = database.read_sessionmaker()
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def pytest_report_header() -> str:
    from tests.browser.conftest import CHROMIUM, skip_reason

    return skip_reason() or f"browser tests: {CHROMIUM} through Playwright"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.browser.conftest import skip_reason

    reason = skip_reason()
    if reason:
        terminalreporter.write_line(f"NOTE: {reason}", yellow=True, bold=True)
