"""The inbound spool of a SQLite deployment: webhooks store here, the engine moves messages into the database.

SQLite has one write lock per database. A webhook that stores its message straight into the database waits
for whichever transaction holds that lock: a batch being processed, escalation steps being run, pages being
recorded as sent, each 10 to 100 ms on a small server. Under a burst the webhooks' answers took as long.

The spool is a second SQLite file next to the database (`<database>-inbox`) with one table, written by the
webhooks alone: its write transactions are one INSERT each, so a webhook waits at most for other webhooks'
inserts. The stored message is committed (WAL, the same durability as the database) before the provider
gets its answer, and a provider's retry of a spooled message is a no-op (unique provider message id).

The engine moves spooled messages into `inbound_messages` in one transaction of the database (INSERT ... ON
CONFLICT DO NOTHING: a message moved before, or retried by the provider after its move, is not stored
twice), commits, and only then deletes them from the spool. A crash between the two moves them again, which
stores nothing twice. A message that cannot be moved stays in the spool, is logged (its spool id and the
error's type, never its text or number) and is tried again at the engine's next run.

PostgreSQL has row locks, not one database lock: there the webhook inserts straight into inbound_messages.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, UniqueConstraint, delete, func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Row, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from alerts.db import make_engine
from alerts.inbound import InboundForm, form_values, insert_ignoring_duplicates, row_values

log = logging.getLogger(__name__)
SessionFactory = Callable[[], Session]

SUFFIX = "-inbox"
MOVE_LIMIT = 500  # spooled messages moved in one transaction of the database

metadata = MetaData()
spooled_messages = Table(
    "spooled_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("provider_message_id", String(80), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("sender", String(20), nullable=False),
    Column("recipient", String(40), nullable=False),
    Column("text", Text, nullable=False),
    Column("received_at", String(40), nullable=False),  # ISO 8601, UTC
    Column("raw", Text, nullable=False),  # JSON
    UniqueConstraint("provider", "provider_message_id"),
)
_PUT = (
    sqlite.insert(spooled_messages)
    .on_conflict_do_nothing(index_elements=["provider", "provider_message_id"])
    .returning(spooled_messages.c.id)
)


def spool_path(database_url: str) -> str | None:
    """Where the spool of this database lives: next to a SQLite file; None for PostgreSQL or in memory."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:"):
        return None
    return f"{url.database}{SUFFIX}"


def wanted(setting: str, database_url: str) -> bool:
    """INBOUND_SPOOL: "auto" (the default) spools for a SQLite file database; "1" or "0" decide."""
    value = setting.strip().lower()
    if value in ("", "auto"):
        return spool_path(database_url) is not None
    if value in ("1", "true", "yes", "on"):
        if spool_path(database_url) is None:
            raise ValueError("INBOUND_SPOOL is on but the database is not a SQLite file")
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"INBOUND_SPOOL must be auto, 1 or 0, not {setting!r}")


class Spool:
    """The spool file of one SQLite database (any number of processes may open it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.engine = make_engine(f"sqlite:///{path}")
        self._reads = self.engine.execution_options(sqlite_begin="DEFERRED")
        # Not a migration: a queue of messages in transit, which is empty whenever the engine keeps up.
        metadata.create_all(self.engine)

    def put(self, form: InboundForm) -> bool:
        """Store and commit a message; False when that provider message is already spooled (a retry)."""
        values = form_values(form)
        values["received_at"] = form.received_at.astimezone(UTC).isoformat()
        values["raw"] = json.dumps(form.raw, ensure_ascii=False)
        with self.engine.begin() as connection:
            return connection.execute(_PUT, values).scalar_one_or_none() is not None

    def waiting(self) -> int:
        """How many messages wait in the spool."""
        with self._reads.connect() as connection:
            return connection.scalar(select(func.count()).select_from(spooled_messages)) or 0

    def move(self, session_factory: SessionFactory, limit: int = MOVE_LIMIT) -> int:
        """Move spooled messages into the database, oldest first; returns how many were new there.

        `session_factory` makes sessions of the database (their transactions take its write lock).
        """
        with self._reads.connect() as connection:
            oldest = select(spooled_messages).order_by(spooled_messages.c.id).limit(limit)
            rows = list(connection.execute(oldest))
        if not rows:
            return 0
        try:
            with session_factory() as session:
                stored = _store(session, rows)
                session.commit()
            moved = [row.id for row in rows]
        except Exception as exc:
            log.warning(
                "moving %d spooled messages failed with %s; moving them one at a time\n%s",
                len(rows),
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            stored, moved = self._one_by_one(session_factory, rows)
        self.forget(moved)
        retries = len(moved) - stored
        if retries:
            log.info("%d spooled messages were retries of messages stored before", retries)
        return stored

    def _one_by_one(self, session_factory: SessionFactory, rows: Sequence[Row[Any]]) -> tuple[int, list[int]]:
        """Each row in its own transaction; one that fails stays. The database itself failing (locked, down,
        out of disk) stops the move: raised once, every row kept, rather than one error per row."""
        stored, moved = 0, []
        for row in rows:
            try:
                with session_factory() as session:
                    stored += _store(session, [row])
                    session.commit()
            except OperationalError:
                self.forget(moved)
                raise
            except Exception as exc:
                # The message stays spooled and is tried again at the next run: logged, never dropped.
                log.error(
                    "spooled message %s could not be moved into the database (%s); it stays in the spool\n%s",
                    row.id,
                    type(exc).__name__,
                    "".join(traceback.format_tb(exc.__traceback__)),
                )
                continue
            moved.append(row.id)
        return stored, moved

    def forget(self, ids: Sequence[int]) -> None:
        """Delete messages the database now holds."""
        if ids:
            with self.engine.begin() as connection:
                connection.execute(delete(spooled_messages).where(spooled_messages.c.id.in_(ids)))

    def dispose(self) -> None:
        self.engine.dispose()


def _store(session: Session, rows: Sequence[Row[Any]]) -> int:
    """Insert spooled rows into inbound_messages (a no-op for one stored before); returns how many are new."""
    connection: Connection = session.connection()
    statement = insert_ignoring_duplicates("sqlite")
    stored = 0
    for row in rows:
        form = InboundForm(
            provider=row.provider,
            provider_message_id=row.provider_message_id,
            sender=row.sender,
            recipient=row.recipient,
            text=row.text,
            received_at=datetime.fromisoformat(row.received_at),
            raw=json.loads(row.raw),
            channel=row.channel,
        )
        if connection.execute(statement, row_values(form)).scalar_one_or_none() is not None:
            stored += 1
    return stored


def open_spool(database_url: str, setting: str) -> Spool | None:
    """The spool of this database when INBOUND_SPOOL wants one, its directory made if needed."""
    if not wanted(setting, database_url):
        return None
    path = spool_path(database_url)
    assert path is not None
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return Spool(path)
