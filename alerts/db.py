"""Engines and sessions: one session per request (closed in teardown) and one per job."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    all_,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import ARRAY, String

SQLITE_BUSY_TIMEOUT_MS = 10_000
T = TypeVar("T")

log = logging.getLogger(__name__)


class TurnstileConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions queue at a turnstile: one writer at a time, woken in turn.

    SQLite has one write lock per database. A writer that finds it taken sleeps in SQLite's busy handler
    (1, 2, 5, 10 ... 100 ms, polling), while the holder, awake, can commit and take the lock again at
    once: a pipeline writing transaction after transaction starves the webhooks, which see seconds of
    latency. Here every write transaction first takes an exclusive flock(2) on a file next to the database
    (`<database>-writer`), held until its commit or rollback. A writer waiting there blocks in the kernel
    and is woken as soon as the holder lets go, across threads (one open file description per connection)
    and processes alike; SQLite's own lock is then free, and its busy handler stays as a backstop for
    writers from elsewhere (the sqlite3 shell, a tool). The lock dies with its process: a writer killed
    mid-transaction leaves nobody waiting.
    """

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        name = os.fspath(database) if isinstance(database, (str, bytes, os.PathLike)) else ""
        memory = not name or name == ":memory:" or str(name).startswith("file:")
        self.turnstile_path: str | None = None if memory else f"{os.fsdecode(name)}-writer"
        self._turnstile: int | None = None  # the open lock file while this connection writes

    def enter_turnstile(self) -> None:
        """Wait for this connection's turn to write (no-op for an in-memory database)."""
        if self.turnstile_path is None or self._turnstile is not None:
            return
        try:
            fd = os.open(self.turnstile_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:  # a read-only directory: fall back to SQLite's busy handler alone
            log.warning("no SQLite writer turnstile (%s); writers poll SQLite's lock", error.strerror)
            self.turnstile_path = None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._turnstile = fd

    def leave_turnstile(self) -> None:
        fd, self._turnstile = self._turnstile, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor of this open file releases the flock

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.leave_turnstile()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave_turnstile()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leave_turnstile()


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (or none)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() != "psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for its backend: SQLite in WAL mode with foreign keys; PostgreSQL via psycopg 3.
    Parameters are never shown in its errors."""
    url = normalise_url(url)
    # A database error's text would otherwise quote the statement's parameters (a sender, an SMS): an
    # exception logged anywhere (a job's traceback, a 500) must not carry them.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "check_same_thread": False,
                "factory": TurnstileConnection,
            },
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, **{"pool_size": 5, "max_overflow": 10, **kwargs})
    _ping_after_idle(engine, PING_AFTER_IDLE_SECONDS)  # read at creation: tests set it
    return engine


# A pooled PostgreSQL connection idle this long is pinged before use (a dead one is replaced). One in use
# again within the second is not: under load that would add a round trip to every webhook, and a
# connection that died meanwhile (the server restarted) fails its statement, which invalidates the whole
# pool, so the request answers 503 (the provider retries) and the next ones get new connections.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_after_idle(engine: Engine, idle_seconds: float) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < idle_seconds:
            return  # just connected, or in use a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            if not engine.dialect.is_disconnect(error, dbapi_connection, None):
                raise
            alive = False
        if not alive:
            raise DisconnectionError("a pooled connection died while idle")  # the pool connects anew


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling is turned off so that BEGIN IMMEDIATE below takes
        # the write lock up front: a read-then-write transaction can then wait on busy_timeout
        # instead of failing with "database is locked" when it upgrades its lock.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        dbapi_connection = connection.connection.dbapi_connection
        writes = mode != "DEFERRED" and isinstance(dbapi_connection, TurnstileConnection)
        if writes:
            dbapi_connection.enter_turnstile()
        try:
            connection.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            if writes:
                dbapi_connection.leave_turnstile()
            raise


def get_locked(session: Session, entity: type[T], ident: Any, lock: bool | dict[str, Any] = True) -> T | None:
    """The row `ident` of `entity`, locked (`lock`: True, or `with_for_update` options) and read as it is now.

    SQLAlchemy keeps the values an object was loaded with when a later query returns its row again, even a
    SELECT ... FOR UPDATE: a check made under the lock would read what this session saw before it. With
    populate_existing the locked row's values replace them (a batch once upgraded a stale copy of an
    incident another worker had just planned, and the incident was never paged).
    """
    return session.get(entity, ident, with_for_update=lock, populate_existing=True)


class Database:
    """The engine and session factory of one application (or one worker process)."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.engine = make_engine(url, **engine_kwargs)
        # On PostgreSQL a webhook stores its message with one statement that commits by itself
        # (alerts/inbound.py store_inbound), on connections of their own that stay in autocommit: taking one
        # from the main pool and switching it to autocommit and back cost a quarter of the insert's CPU.
        self.autocommit_engine = (
            make_engine(url, isolation_level="AUTOCOMMIT", **engine_kwargs)
            if self.engine.dialect.name == "postgresql"
            else None
        )
        self.sessionmaker = sessionmaker(
            self.engine, expire_on_commit=False, info={"autocommit_engine": self.autocommit_engine}
        )
        if self.is_postgresql:
            event.listen(self.sessionmaker, "before_flush", prefetch_ids)
        # Reads need no write lock: on SQLite their transactions begin DEFERRED, so a page being read
        # never holds up a webhook. Use it only for units of work that do not write.
        self.read_sessionmaker = sessionmaker(
            self.engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False
        )

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for one unit of work outside a request (a job, a command); always closed."""
        session = self.sessionmaker()
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
        if self.autocommit_engine is not None:
            self.autocommit_engine.dispose()


# On PostgreSQL a flush that inserts many rows into a table learns their ids with INSERT ... RETURNING,
# built by SQLAlchemy as one statement of (rows x columns) parameters. psycopg converts a statement that
# long or with that many parameters without its cache, by a regular expression over the whole text, every
# time: for the pipeline's batches (50 receipts, 50 reports, 60 timeline lines) that was a fifth of the
# flush's CPU. Given their ids beforehand, in one round trip per table from the table's own sequence, the
# rows go out as an executemany of a one-row INSERT (converted once and cached, sent in a pipeline).
PREFETCH_IDS_FROM = 2  # fewer new rows than this in a table: RETURNING is as cheap


def prefetch_ids(session: Session, _flush_context: Any, _instances: Any) -> None:
    """Before a flush (PostgreSQL): the new rows of each table get their ids, in the order they were added."""
    waiting: dict[Any, list[Any]] = {}
    for state in (inspect(obj) for obj in session.new):
        mapper = state.mapper
        key = _serial_key(mapper)
        if key is not None and state.dict.get(key) is None:
            waiting.setdefault(mapper, []).append(state)
    for mapper, states in waiting.items():
        if len(states) < PREFETCH_IDS_FROM:
            continue
        ids = next_ids(session, mapper.local_table, len(states), mapper.primary_key[0].name)
        key = _serial_key(mapper)
        for state, new_id in zip(sorted(states, key=lambda s: s.insert_order), ids, strict=True):
            setattr(state.obj(), key, new_id)


def next_ids(executor: Session | Connection, table: Table, count: int, column: str = "id") -> list[int]:
    """`count` new ids from the sequence of `table.column` (PostgreSQL), in one round trip."""
    return list(
        executor.execute(
            select(func.nextval(func.pg_get_serial_sequence(table.name, column))).select_from(
                func.generate_series(1, bindparam("n"))
            ),
            {"n": count},
        ).scalars()
    )


def _serial_key(mapper: Any) -> str | None:
    """The attribute of a table's single integer primary key filled by a sequence, or None."""
    key = _SERIAL_KEYS.get(mapper, ...)
    if key is ...:
        key = None
        if len(mapper.primary_key) == 1:
            column = mapper.primary_key[0]
            if column.autoincrement in (True, "auto") and column.type.python_type is int:
                key = mapper.get_property_by_column(column).key
        _SERIAL_KEYS[mapper] = key
    return key


_SERIAL_KEYS: dict[Any, str | None] = {}


def among(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `column = ANY(array)`: one parameter whatever the count, so one
    statement for every batch (psycopg prepares it once; a long IN list is a new statement each time, and past
    50 values psycopg converts it without its cache)."""
    values = list(values)
    if session.get_bind().dialect.name != "postgresql":
        return column.in_(values)
    return column == any_(bindparam(None, values, type_=_array_of(column)))


def not_among(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column NOT IN (values)`; on PostgreSQL `column <> ALL(array)` (see `among`)."""
    values = list(values)
    if session.get_bind().dialect.name != "postgresql":
        return column.not_in(values)
    return column != all_(bindparam(None, values, type_=_array_of(column)))


def _array_of(column: Any) -> ARRAY[Any]:
    """An array of the column's type; of unbounded text for a VARCHAR(n), whose cast would cut a longer value
    to n characters and let it equal another (IN compares it whole)."""
    if isinstance(column.type, String) and column.type.length is not None:
        return ARRAY(String())
    return ARRAY(column.type)
