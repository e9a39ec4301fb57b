"""Inbound messages: store each SMS exactly once, record processing failures, and retry them later."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Insert, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from alerts.db import Database, among, get_locked
from alerts.models import InboundMessage
from alerts.phones import mask_phone
from alerts.states import InboundState

log = logging.getLogger(__name__)

RETRYABLE_STATES = (InboundState.RECEIVED, InboundState.FAILED)
# A message younger than this may still be in the hands of the webhook that stored it.
DEFAULT_RETRY_GRACE = timedelta(seconds=60)
MAX_BACKOFF_MINUTES = 60
MAX_ERROR_CHARS = 1000
_PHONE_LIKE = re.compile(r"\+?\d[\d \-.]{6,}\d")


@dataclass(frozen=True)
class InboundForm:
    """One SMS as a provider delivered it, normalised: the only shape the rest of the system sees."""

    provider: str
    provider_message_id: str
    sender: str  # E.164
    recipient: str
    text: str
    received_at: datetime  # timezone-aware UTC
    raw: dict[str, str]
    channel: str = "sms"


@lru_cache(maxsize=8)
def insert_ignoring_duplicates(dialect: str, notify: str | None = None) -> Insert | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id where the dialect has it, else None.

    With `notify` (PostgreSQL), RETURNING also calls pg_notify for the row inserted, so a new message wakes
    the workers in the same statement and a duplicate wakes nobody. Built once per dialect and executed with
    the row as parameters: building it per message costs more than the insert itself.
    """
    dialect_insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
    if dialect_insert is None:
        return None
    table = InboundMessage.__table__
    returning = [table.c.id]
    if notify and dialect == "postgresql":
        returning.append(func.pg_notify(notify, "").label("notified"))
    return (
        dialect_insert(table)
        .on_conflict_do_nothing(index_elements=["provider", "provider_message_id"])
        .returning(*returning)
    )


def form_values(form: InboundForm) -> dict[str, Any]:
    """The message's fields by column name: where its database row and its SQLite spool row start."""
    if form.received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    return {
        "provider": form.provider,
        "provider_message_id": form.provider_message_id,
        "channel": form.channel,
        "sender": form.sender,
        "recipient": form.recipient,
        "text": form.text,
        "received_at": form.received_at,
        "raw": dict(form.raw),
    }


def row_values(form: InboundForm) -> dict[str, Any]:
    """The inbound_messages row of a message just received."""
    return {**form_values(form), "state": InboundState.RECEIVED}


def _existing_id(session: Session, provider: str, provider_message_id: str) -> int:
    return session.scalars(
        select(InboundMessage.id).where(
            InboundMessage.provider == provider, InboundMessage.provider_message_id == provider_message_id
        )
    ).one()


def store_inbound(session: Session, form: InboundForm, notify: str | None = None) -> tuple[int, bool]:
    """Store and commit a message; a second delivery of the same provider message id is a no-op.

    Returns (message id, created). Safe under concurrent deliveries of the same message. With `notify`
    (PostgreSQL), a new message NOTIFYs that channel in the same transaction: workers hear of it exactly
    when it is committed, at no extra round trip.
    """
    values = row_values(form)
    dialect = session.get_bind().dialect.name
    statement = insert_ignoring_duplicates(dialect, notify)
    if statement is not None:
        # Core execution: the ORM layer adds nothing to a plain insert. On PostgreSQL, when the session has
        # no transaction yet (a webhook), the one statement commits by itself, on a connection of the
        # database's autocommit pool: no BEGIN and no COMMIT round trips (the NOTIFY is still delivered at
        # its commit).
        autocommit = None if session.in_transaction() else session.info.get("autocommit_engine")
        if autocommit is not None:  # PostgreSQL only (alerts/db.py Database)
            with autocommit.connect() as connection:
                new_id = connection.execute(statement, values).scalar_one_or_none()
        else:
            new_id = session.connection().execute(statement, values).scalar_one_or_none()
        if new_id is None:
            # The conflicting row is committed (PostgreSQL waited for it; SQLite serialises writers).
            message_id = _existing_id(session, form.provider, form.provider_message_id)
            session.commit()
            return message_id, False
        session.commit()
        return new_id, True

    message = InboundMessage(**values)
    session.add(message)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return _existing_id(session, form.provider, form.provider_message_id), False
    return message.id, True


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, ... minutes after the 1st, 2nd, 3rd ... failure, never more than an hour."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), MAX_BACKOFF_MINUTES))


def describe_error(exc: BaseException) -> str:
    """The exception's type and message, without the SQL parameters a database error carries."""
    detail = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    message = str(detail).strip().splitlines()[0] if str(detail).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _redact(error: str, text: str) -> str:
    """Never keep the SMS text or a phone number in an error, whatever an exception's message held."""
    if text.strip():
        error = error.replace(text, "[message text]")
    return _PHONE_LIKE.sub(lambda m: mask_phone(m.group(0)), error)[:MAX_ERROR_CHARS]


def mark_failed(session: Session, message_id: int, error: str, now: datetime) -> None:
    """Record a processing failure and when to try again (exponential backoff); commits.

    A message whose processing already completed (processed, unverified, rate limited) keeps its state.
    """
    message = get_locked(session, InboundMessage, message_id)
    if message is None:
        log.error("inbound message %s: cannot mark failed, it does not exist", message_id)
        session.rollback()
        return
    if message.state not in RETRYABLE_STATES:
        log.warning("inbound message %s: failure after it reached %s; state kept", message_id, message.state)
        session.rollback()
        return
    message.state = InboundState.FAILED
    message.attempts += 1
    message.error = _redact(error, message.text)
    message.next_attempt_at = now + backoff(message.attempts)
    session.commit()


def due_for_retry(
    session: Session, now: datetime, limit: int = 100, grace: timedelta = DEFAULT_RETRY_GRACE
) -> list[int]:
    """Ids of messages stored but never processed or whose processing failed, due now, oldest first."""
    statement = (
        select(InboundMessage.id)
        .where(
            InboundMessage.state.in_(RETRYABLE_STATES),
            or_(InboundMessage.next_attempt_at.is_(None), InboundMessage.next_attempt_at <= now),
            InboundMessage.received_at <= now - grace,
        )
        .order_by(InboundMessage.received_at, InboundMessage.id)
        .limit(limit)
    )
    return list(session.scalars(statement))


def _claim(session: Session, message_id: int, now: datetime) -> bool:
    """Lock a message that is still due; another worker holding it (or having finished it) wins."""
    claimed = session.scalars(
        select(InboundMessage.id)
        .where(
            InboundMessage.id == message_id,
            InboundMessage.state.in_(RETRYABLE_STATES),
            or_(InboundMessage.next_attempt_at.is_(None), InboundMessage.next_attempt_at <= now),
        )
        .with_for_update(skip_locked=True)
    ).one_or_none()
    return claimed is not None


def log_processing_failure(message_id: int, exc: BaseException, provider: str | None = None) -> None:
    """Log a failure with its stack but without the exception's message, which may quote the SMS."""
    stack = "".join(traceback.format_tb(exc.__traceback__))
    source = f" from {provider}" if provider else ""
    log.error(
        "processing inbound message %s%s failed with %s; kept for retry\n%s",
        message_id,
        source,
        type(exc).__name__,
        stack,
    )


def _claim_batch(session: Session, message_ids: list[int], now: datetime) -> list[InboundMessage]:
    """Lock the messages of a batch that are still due, oldest first; those another worker holds are left."""
    return list(
        session.scalars(
            select(InboundMessage)
            .where(
                among(session, InboundMessage.id, message_ids),
                InboundMessage.state.in_(RETRYABLE_STATES),
                or_(InboundMessage.next_attempt_at.is_(None), InboundMessage.next_attempt_at <= now),
            )
            .order_by(InboundMessage.received_at, InboundMessage.id)
            .with_for_update(skip_locked=True)
        )
    )


Process = Callable[[Session, int, datetime], Any]
ProcessBatch = Callable[[Session, list[InboundMessage], datetime], Any]
DEFAULT_BATCH_SIZE = 200  # escalation.scheduler.default_batch_size says why


def retry_unprocessed(
    database: Database,
    now: datetime,
    process: Process,
    *,
    limit: int = 100,
    grace: timedelta = DEFAULT_RETRY_GRACE,
    process_batch: ProcessBatch | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_due: Callable[[list[int]], object] | None = None,
) -> int:
    """The scheduled job: process every message that is due again.

    With `process_batch`, up to `batch_size` messages share one transaction (it commits); if a batch
    fails, it is rolled back and its messages are processed again one per transaction with `process`,
    so that a message that cannot be processed is recorded as failed on its own and the others go
    through. Returns how many were processed; each failure is recorded on its message and logged.
    `on_due` is told the ids found due (up to `limit`), whether this worker or another then claims them.
    """
    # Finding what is due only reads: on SQLite it takes no write lock (each batch below takes its own).
    with database.read_sessionmaker() as session:
        due = due_for_retry(session, now, limit=limit, grace=grace)
    if on_due is not None:
        on_due(due)
    if process_batch is None:
        return _one_by_one(database, due, now, process)
    processed = 0
    for start in range(0, len(due), batch_size):
        chunk = due[start : start + batch_size]
        with database.session() as session:
            try:
                claimed = _claim_batch(session, chunk, now)
                if claimed:
                    process_batch(session, claimed, now)
                else:
                    session.rollback()
            except Exception as exc:
                session.rollback()
                # The stack (not the exception's message, which may quote an SMS): a batch that fails
                # where its messages one by one succeed is a bug to find, not only a slower path.
                log.warning(
                    "a batch of %d inbound messages failed with %s; processing them one at a time\n%s",
                    len(chunk),
                    type(exc).__name__,
                    "".join(traceback.format_tb(exc.__traceback__)),
                )
                processed += _one_by_one(database, chunk, now, process)
                continue
        processed += len(claimed)
    return processed


def _one_by_one(database: Database, due: list[int], now: datetime, process: Process) -> int:
    """Each message in its own transaction; a failure is recorded on its message and logged."""
    processed = 0
    for message_id in due:
        with database.session() as session:
            try:
                if not _claim(session, message_id, now):
                    session.rollback()
                    continue
                process(session, message_id, now)
            except Exception as exc:
                session.rollback()
                mark_failed(session, message_id, describe_error(exc), now)
                log_processing_failure(message_id, exc)
                continue
            processed += 1
    return processed
