"""PostgreSQL connections: the webhook's insert commits by itself, idle pooled connections are checked."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from alerts import db as alerts_db
from alerts.db import Database
from alerts.inbound import InboundForm, store_inbound
from alerts.models import InboundMessage
from tests.conftest import TEST_DATABASE_URL, postgresql_only

pytestmark = postgresql_only


def _form(message_id: str) -> InboundForm:
    return InboundForm(
        provider="twilio",
        provider_message_id=message_id,
        sender="+243810000001",
        recipient="+15005550006",
        text="Attaque a Kiwanja",
        received_at=datetime.now(UTC),
        raw={"Body": "Attaque a Kiwanja"},
    )


def test_a_new_message_is_stored_by_one_autocommit_statement_on_connections_that_stay_in_autocommit(
    database,
):
    seen: dict[str, list[tuple[str, bool]]] = {"sessions": [], "autocommit": []}

    def recorder(pool: str):
        def record(connection, _cursor, statement, _parameters, _context, _many):
            seen[pool].append((statement.split()[0], connection.connection.dbapi_connection.autocommit))

        return record

    listeners = [
        (database.engine, recorder("sessions")),
        (database.autocommit_engine, recorder("autocommit")),
    ]
    for engine, listener in listeners:
        event.listen(engine, "before_cursor_execute", listener)
    try:
        with database.session() as session:
            message_id, created = store_inbound(session, _form("SMautocommit1"))
            assert created
        assert seen == {"sessions": [], "autocommit": [("INSERT", True)]}
        # The sessions' own connections are transactions, as ever: a rollback undoes.
        with database.session() as session:
            session.get(InboundMessage, message_id).text = "changed"
            session.flush()
            session.rollback()
        assert seen["sessions"]
        assert all(autocommit is False for _kind, autocommit in seen["sessions"])
        # A second message takes the autocommit connection back from its pool, still in autocommit.
        with database.session() as session:
            store_inbound(session, _form("SMautocommit2"))
        assert seen["autocommit"] == [("INSERT", True), ("INSERT", True)]
    finally:
        for engine, listener in listeners:
            event.remove(engine, "before_cursor_execute", listener)
    with database.read_sessionmaker() as session:
        assert session.get(InboundMessage, message_id).text == "Attaque a Kiwanja"


def test_inside_a_transaction_the_insert_joins_it(database):
    with database.session() as session:
        session.execute(text("SELECT 1"))
        message_id, created = store_inbound(session, _form("SMjoined1"))
        assert created
    with database.read_sessionmaker() as session:
        assert session.get(InboundMessage, message_id) is not None


def _terminate_the_pooled_connection(database: Database) -> None:
    with database.engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
    other = Database(TEST_DATABASE_URL)
    try:
        with other.engine.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            connection.commit()
            # Terminating only signals the backend: wait until it is gone (a condition, not a duration).
            gone = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid"
            deadline = time.monotonic() + 30
            while not connection.execute(text(gone), {"pid": pid}).scalar():
                connection.commit()
                assert time.monotonic() < deadline, "the terminated backend never went away"
    finally:
        other.dispose()


def test_a_connection_that_died_while_idle_is_replaced_before_use(monkeypatch):
    monkeypatch.setattr(alerts_db, "PING_AFTER_IDLE_SECONDS", 0.0)  # every checkout counts as idle
    database = Database(TEST_DATABASE_URL, pool_size=1, max_overflow=0)
    try:
        _terminate_the_pooled_connection(database)
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        database.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged_and_a_dead_one_invalidates_the_pool(monkeypatch):
    monkeypatch.setattr(alerts_db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    database = Database(TEST_DATABASE_URL, pool_size=1, max_overflow=0)
    try:
        _terminate_the_pooled_connection(database)
        with pytest.raises(DBAPIError) as failure, database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        assert failure.value.connection_invalidated
        with database.engine.connect() as connection:  # the next request gets a new connection
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        database.dispose()
