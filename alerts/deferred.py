"""Rows written beside the unit of work: plain inserts a batch makes by the thousand, without ORM objects.

The pipeline's batches add rows that nothing in the batch changes after adding them: reports, timeline lines
and receipts (escalation runs: pages and updates). As ORM objects they cost about a sixth of a batch's CPU
(each attribute set through the instrumentation, the cascade walk of `Session.add`, the unit of work's history
of every column), all of it under the matching lock that serialises batches across workers. Inside
`deferred_inserts` they are plain dicts, written with one executemany per table:

- at every flush, right after the ORM's own rows (which they may reference: a new incident's report);
- before any ORM query that would autoflush, as pending objects would be, so that a query in the batch
  (a second acknowledgement reading the first's timeline line) sees them;
- when the block ends normally, so that a block never leaves rows unwritten. An exception discards them
  with the transaction the caller rolls back.

Outside the block `add_row` adds an ORM object as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, event, insert
from sqlalchemy.orm import ORMExecuteState, Session

from alerts.db import next_ids

_PENDING = "deferred_inserts"


@contextmanager
def deferred_inserts(session: Session) -> Iterator[None]:
    """Defer `defer_insert` rows within the block; written by the session's flushes and when it ends."""
    if _PENDING in session.info:  # nested: the outer block writes them
        yield
        return
    session.info[_PENDING] = _Pending()
    try:
        yield
        _flush_all(session)
    finally:
        session.info.pop(_PENDING, None)


def deferring(session: Session) -> bool:
    return _PENDING in session.info


class DeferredRow:
    """A queued row, read by attribute like the object it stands for; its `id` is None until it is written
    (for a table queued `with_id`)."""

    __slots__ = ("values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            if name == "id":
                return None
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"DeferredRow(id={self.id})"


@dataclass
class _Pending:
    rows: dict[Table, list[dict[str, Any]]] = field(default_factory=dict)
    with_ids: set[Table] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.rows)


def defer_insert(
    session: Session, entity: Any, values: dict[str, Any], *, with_id: bool = False
) -> DeferredRow | None:
    """Queue a row of `entity`'s table (every row of a table with the same keys), to be given its id when
    written if `with_id`; None when the session is not inside `deferred_inserts`, and the caller should add
    an object instead."""
    pending: _Pending | None = session.info.get(_PENDING)
    if pending is None:
        return None
    if not session.in_transaction():  # the rows belong to a transaction, which a rollback ends
        session.begin()
    table = entity.__table__
    pending.rows.setdefault(table, []).append(values)
    if with_id:
        pending.with_ids.add(table)
    return DeferredRow(values)


def add_row(session: Session, entity: Any, values: dict[str, Any], *, with_id: bool = False) -> Any:
    """A new row of `entity`: queued inside `deferred_inserts` (a `DeferredRow`), else an object added to the
    session for its next flush."""
    queued = defer_insert(session, entity, values, with_id=with_id)
    if queued is not None:
        return queued
    instance = entity(**values)
    session.add(instance)
    return instance


def write_deferred(session: Session) -> None:
    """Write the queued rows now, in the order their tables were first queued."""
    pending: _Pending | None = session.info.get(_PENDING)
    if not pending:
        return
    connection = session.connection()
    while pending.rows:
        table = next(iter(pending.rows))
        rows = pending.rows.pop(table)
        if table not in pending.with_ids:
            connection.execute(insert(table), rows)
        elif connection.dialect.name == "postgresql":
            # The ids from the table's sequence in one round trip, then a plain executemany (see
            # alerts/db.py prefetch_ids: a multi-row INSERT ... RETURNING costs psycopg more).
            for row, new_id in zip(rows, next_ids(connection, table, len(rows)), strict=True):
                row["id"] = new_id
            connection.execute(insert(table), rows)
        else:
            statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
            for row, new_id in zip(rows, connection.execute(statement, rows).scalars(), strict=True):
                row["id"] = new_id


def _flush_all(session: Session) -> None:
    session.flush()  # the ORM's rows first: the queued ones may reference them
    write_deferred(session)  # also when the ORM had nothing to flush (no `after_flush` then)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _flush_context: Any) -> None:
    write_deferred(session)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if session.info.get(_PENDING):
        _flush_all(session)


@event.listens_for(Session, "do_orm_execute")
def _before_query(state: ORMExecuteState) -> None:
    """An ORM query that autoflushes sees the queued rows too (Core statements do not autoflush)."""
    session = state.session
    if not session.info.get(_PENDING) or not state.is_orm_statement or not state.is_select:
        return
    # `_flushing` is what SQLAlchemy's own autoflush checks: a load during a flush does not flush again.
    if session.autoflush and not session._flushing:
        _flush_all(session)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: Any) -> None:
    # The queued rows belong to the transaction rolled back, as pending objects would (a rollback of the
    # session's transaction, begun or not; the blocks use no savepoints).
    pending = session.info.get(_PENDING)
    if pending and previous_transaction.parent is None:
        pending.rows.clear()
