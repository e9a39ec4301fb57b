"""SQLite's writers queue at a turnstile (alerts.db.TurnstileConnection) instead of polling SQLite's lock."""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest
from sqlalchemy import text

from alerts.db import Database

WAIT = 10.0  # seconds a condition below may take to come true on a loaded machine


def _database(tmp_path, busy_timeout_ms: int | None = None) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'alerts.db'}")
    with database.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    if busy_timeout_ms is not None:
        from sqlalchemy import event

        @event.listens_for(database.engine, "connect")
        def _impatient(dbapi_connection, _record):
            dbapi_connection.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")

        database.engine.dispose()  # the next connections get the setting
    return database


def _turnstile_taken(path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _someone_waits_at(path) -> bool:
    """Whether /proc/locks lists a blocked flock request on the turnstile file (a line with '->')."""
    inode = os.stat(path).st_ino
    with open("/proc/locks") as locks:
        blocked = [line.split() for line in locks if "->" in line and "FLOCK" in line]
    return any(fields[-3].endswith(f":{inode}") for fields in blocked)


def _until(condition) -> bool:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_a_write_transaction_holds_the_turnstile_until_it_ends(tmp_path, end):
    database = _database(tmp_path)
    path = tmp_path / "alerts.db-writer"
    session = database.sessionmaker()
    session.execute(text("INSERT INTO t VALUES (1)"))
    assert _turnstile_taken(path)
    getattr(session, end)()
    assert not _turnstile_taken(path)
    session.close()
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar() == (1 if end == "commit" else 0)


def test_reads_and_a_closed_session_leave_the_turnstile_free(tmp_path):
    database = _database(tmp_path)
    path = tmp_path / "alerts.db-writer"
    with database.read_sessionmaker() as reader:
        reader.execute(text("SELECT count(*) FROM t")).scalar()
        assert not _turnstile_taken(path)
    session = database.sessionmaker()
    session.execute(text("INSERT INTO t VALUES (1)"))
    session.close()  # never committed: rolled back on its way back to the pool
    assert not _turnstile_taken(path)


def test_a_second_writer_waits_its_turn_instead_of_failing_on_sqlites_lock(tmp_path):
    # busy_timeout 0: without the turnstile the second BEGIN IMMEDIATE would fail at once ("database is
    # locked")
    database = _database(tmp_path, busy_timeout_ms=0)
    path = tmp_path / "alerts.db-writer"
    first = database.sessionmaker()
    first.execute(text("INSERT INTO t VALUES (1)"))
    outcome: list[object] = []

    def second_writer() -> None:
        try:
            with database.session() as second:
                second.execute(text("INSERT INTO t VALUES (2)"))
                second.commit()
            outcome.append("committed")
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=second_writer)
    thread.start()
    assert _until(lambda: _someone_waits_at(path)), "the second writer never queued at the turnstile"
    assert outcome == []
    first.commit()
    first.close()
    thread.join(WAIT)
    assert outcome == ["committed"]
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT x FROM t ORDER BY x")).scalars().all() == [1, 2]


def test_an_in_memory_database_has_no_turnstile(tmp_path):
    database = Database("sqlite://")
    with database.session() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
        session.execute(text("INSERT INTO t VALUES (1)"))
        assert session.connection().connection.dbapi_connection.turnstile_path is None
        session.commit()
    assert list(tmp_path.iterdir()) == []
