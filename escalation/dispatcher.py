"""The dispatcher: sends the outbox through the gateways, with retries, backoff and failover.

A message is claimed (state `sending`, a lease until `next_attempt_at`) and committed before the gateway is
called, so a slow provider never holds a database transaction open. A worker that dies mid-send leaves the
lease to expire; the message is then queued again. That is the one case where a responder could get the same
SMS twice, and it is counted in the message's attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import String, bindparam, case, exists, func, or_, select, update
from sqlalchemy.orm import Session

from alerts import incidents
from alerts.db import get_locked
from alerts.models import InboundMessage, OutboundMessage
from alerts.states import InboundState, OutboundState
from escalation.gateways import Gateway, RetryableSendError, SendError, SendResult, send_with_failover

log = logging.getLogger(__name__)
BACKOFF_SECONDS = (15, 30, 60, 120, 300, 600, 1800)
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
SEND_LEASE = timedelta(minutes=2)
SEND_CONCURRENCY = 4
# While stored messages wait to be processed (a burst), only pages are sent: receipts, confirmations and
# updates wait for the backlog to clear, so the worker's time goes to turning alerts into pages first. A
# message held this long is sent anyway: a flood that never ends cannot keep the focal points unanswered.
BACKLOG_HOLD = timedelta(seconds=60)


@dataclass
class DispatchStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    recovered: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        """Messages this run tried to send."""
        return self.sent + self.retried + self.failed

    def merge(self, other: DispatchStats) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.recovered += other.recovered
        self.errors.extend(other.errors)


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failed ones (exponential, capped)."""
    return timedelta(seconds=BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS)) - 1])


def recover_expired_leases(session: Session, now: datetime) -> int:
    """Queue again the messages whose sender died mid-send (their lease ran out); the caller commits."""
    result = session.execute(
        update(OutboundMessage)
        .where(OutboundMessage.state == OutboundState.SENDING, OutboundMessage.next_attempt_at <= now)
        .values(state=OutboundState.QUEUED, last_error="send lease expired: the sender stopped mid-send")
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        log.warning("outbox: %d message(s) re-queued after an interrupted send", result.rowcount)
    return result.rowcount


# Pages first: a burst of receipts must not hold up the responders' SMS.
_page_first = case((OutboundMessage.purpose == "page", 0), else_=1)


def claim(session: Session, now: datetime, limit: int) -> list[tuple[int, str, str]]:
    """Take up to `limit` due messages for this worker, pages first: (id, recipient, body); commits.

    While inbound messages wait to be processed, only pages and messages held for BACKLOG_HOLD are due.
    One statement: the due rows are chosen and locked (PostgreSQL, skipping those another worker holds)
    and leased in the same UPDATE, whose WHERE repeats the state check (the claim on SQLite, no row locks).
    """
    backlog = exists().where(InboundMessage.state == InboundState.RECEIVED)
    due = (
        select(OutboundMessage.id)
        .where(
            OutboundMessage.state == OutboundState.QUEUED,
            OutboundMessage.next_attempt_at <= now,
            or_(
                OutboundMessage.purpose == "page", OutboundMessage.created_at <= now - BACKLOG_HOLD, ~backlog
            ),
        )
        .order_by(_page_first, OutboundMessage.next_attempt_at, OutboundMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        # A CTE, evaluated once: as a plain IN (subquery), PostgreSQL may run the LIMIT again per row.
        .cte("due")
    )
    rows = session.execute(
        update(OutboundMessage)
        .where(OutboundMessage.id.in_(select(due.c.id)), OutboundMessage.state == OutboundState.QUEUED)
        .values(
            state=OutboundState.SENDING,
            attempts=OutboundMessage.attempts + 1,
            next_attempt_at=now + SEND_LEASE,
        )
        .returning(OutboundMessage.id, OutboundMessage.recipient, OutboundMessage.body, _page_first)
        .execution_options(synchronize_session=False)
    ).all()
    session.commit()
    return [(id_, recipient, body) for id_, recipient, body, _ in sorted(rows, key=lambda r: (r[3], r[0]))]


_OUTBOX = OutboundMessage.__table__
_SENT = (  # Core, not ORM: executed with many parameter sets, one UPDATE per row in one round trip
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("sent_id"), _OUTBOX.c.state == OutboundState.SENDING)
    .values(
        state=OutboundState.SENT,
        provider=bindparam("sent_provider"),
        provider_message_id=bindparam("sent_provider_message_id"),
        provider_status=bindparam("sent_status"),
        sent_at=bindparam("sent_at"),
        next_attempt_at=None,
        last_error=func.coalesce(bindparam("sent_error", type_=String), _OUTBOX.c.last_error),
    )
)


def _record_sent(session: Session, sent: list[dict[str, object]], stats: DispatchStats) -> None:
    """The common case for all of a batch in one statement (executemany): sent, unless a delivery report
    got there first or the row was recovered after its lease (then there is nothing to undo)."""
    if sent:
        stats.sent += session.connection().execute(_SENT, sent).rowcount


def _last_error(errors: list[SendError]) -> str | None:
    """The error of the last gateway that failed, as the outbox records it."""
    return f"{errors[-1].provider}: {errors[-1].reason}" if errors else None


def _sent_row(
    message_id: int, result: SendResult, errors: list[SendError], now: datetime
) -> dict[str, object]:
    return {
        "sent_id": message_id,
        "sent_provider": result.provider,
        "sent_provider_message_id": result.provider_message_id,
        "sent_status": result.status,
        "sent_at": now,
        # A failover: the error of the gateway that failed first stays on record.
        "sent_error": _last_error(errors),
    }


def _record_unsent(
    session: Session,
    message_id: int,
    errors: list[SendError],
    now: datetime,
    stats: DispatchStats,
) -> None:
    last = errors[-1] if errors else None
    message = get_locked(session, OutboundMessage, message_id)
    if message is None or message.state != OutboundState.SENDING:
        return  # a delivery report got there first, or the row was recovered: nothing to undo
    if last is not None:
        message.last_error = _last_error(errors)
    permanent = last is not None and not last.retryable
    if permanent or message.attempts >= MAX_ATTEMPTS:
        message.state = OutboundState.FAILED
        message.next_attempt_at = None
        stats.failed += 1
        why = "permanent error" if permanent else f"gave up after {message.attempts} attempts"
        detail = f"{message.purpose} not sent: {why} ({message.last_error})"
        incidents.message_lost(session, message, "send_failed", detail, "a page could not be sent", now)
        return
    message.state = OutboundState.QUEUED
    message.next_attempt_at = now + backoff(message.attempts)
    stats.retried += 1


def dispatch(
    session_factory: Callable[[], Session],
    gateways: Sequence[Gateway],
    clock: Callable[[], datetime],
    limit: int = 50,
) -> DispatchStats:
    """Send every due message once through the gateways; commit each outcome."""
    stats = DispatchStats()
    with session_factory() as session:
        stats.recovered = recover_expired_leases(session, clock())
        claimed = claim(session, clock(), limit)

    def send(item: tuple[int, str, str]) -> tuple[SendResult | None, list[SendError]]:
        message_id, recipient, body = item
        try:
            return send_with_failover(gateways, recipient, body, reference=str(message_id))
        except Exception as exc:  # a gateway bug must not strand the message in `sending`
            log.exception("outbox %s: gateway raised unexpectedly", message_id)
            return None, [RetryableSendError("dispatcher", type(exc).__name__)]

    # Provider calls take 100s of ms each: a few at a time, so a burst of pages is not sent one by one.
    with ThreadPoolExecutor(max_workers=SEND_CONCURRENCY) as pool:
        outcomes = list(pool.map(send, claimed)) if len(claimed) > 1 else [send(c) for c in claimed]
    for (message_id, _, _), (_result, errors) in zip(claimed, outcomes, strict=True):
        for error in errors:
            stats.errors.append(f"{message_id}: {error.provider}: {error.reason}")
            log.warning(
                "outbox %s: %s %s (%s)",
                message_id,
                error.provider,
                "retryable" if error.retryable else "permanent",
                error.reason,
            )
    # The outcomes are recorded as soon as the batch's sends are done, in one transaction: a worker killed
    # before its commit re-sends what it had not recorded (the messages still `sending`, after their lease).
    now = clock()
    with session_factory() as session:
        sent = [
            _sent_row(message_id, result, errors, now)
            for (message_id, _, _), (result, errors) in zip(claimed, outcomes, strict=True)
            if result is not None
        ]
        _record_sent(session, sent, stats)
        for (message_id, _, _), (result, errors) in zip(claimed, outcomes, strict=True):
            if result is None:
                _record_unsent(session, message_id, errors, now, stats)
        session.commit()
    return stats
