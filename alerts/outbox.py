"""The outbox: every SMS the service owes is a row written in the transaction of the decision behind it.

The escalation dispatcher sends queued rows later; this module only writes them (and records the one
exception, a reply sent inline in Twilio's TwiML answer).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from alerts.db import get_locked
from alerts.deferred import DeferredRow, add_row
from alerts.models import OutboundMessage
from alerts.sms import segments, to_gsm7
from alerts.states import OutboundState

# Purposes that are automatic answers to whoever wrote to us, as opposed to pages we initiate.
AUTOMATIC_REPLIES = frozenset({"receipt", "confirmation", "help", "error", "test"})


REPLY_CAP_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Enqueued:
    message: OutboundMessage | DeferredRow | None
    reason: str = ""  # why nothing was queued: "duplicate", "reply cap"


@dataclass
class ReplyBook:
    """What `enqueue` asks the database about each reply, read once for a batch of replies.

    It answers only for the keys and recipients it was loaded with; `enqueue` asks the database about any
    other, and records what it queues so that later replies of the same transaction see it.
    """

    now: datetime
    checked_keys: frozenset[str]
    taken_keys: set[str]
    checked_recipients: frozenset[str]
    replies_last_hour: Counter[str] = field(default_factory=Counter)
    prefixes: tuple[str, ...] = ()  # every key starting with one of these was loaded too

    @classmethod
    def load(
        cls, session: Session, keys: Iterable[str], recipients: Iterable[str], now: datetime
    ) -> ReplyBook:
        keys, recipients = frozenset(keys), frozenset(recipients)
        taken = (
            set(
                session.scalars(
                    select(OutboundMessage.idempotency_key).where(OutboundMessage.idempotency_key.in_(keys))
                )
            )
            if keys
            else set()
        )
        counts: Counter[str] = Counter()
        if recipients:
            counts.update(
                dict(
                    session.execute(
                        select(OutboundMessage.recipient, func.count())
                        .where(OutboundMessage.recipient.in_(recipients), *_automatic_replies_since(now))
                        .group_by(OutboundMessage.recipient)
                    ).all()
                )
            )
        return cls(now, keys, taken, recipients, counts)

    @classmethod
    def load_for_steps(cls, session: Session, step_ids: Iterable[int], now: datetime) -> ReplyBook:
        """The pages escalation steps already wrote (keys `page:<step>:<responder>`), for a batch of steps."""
        ids = list(step_ids)
        taken = (
            set(
                session.scalars(
                    select(OutboundMessage.idempotency_key).where(OutboundMessage.escalation_step_id.in_(ids))
                )
            )
            if ids
            else set()
        )
        return cls(now, frozenset(), taken, frozenset(), prefixes=tuple(f"page:{i}:" for i in ids))

    @classmethod
    def load_with_prefixes(cls, session: Session, prefixes: Iterable[str], now: datetime) -> ReplyBook:
        """Every key starting with one of `prefixes` already in the outbox (one query for a batch)."""
        prefixes = tuple(prefixes)
        taken: set[str] = set()
        if prefixes:
            condition = or_(
                *(OutboundMessage.idempotency_key.startswith(p, autoescape=True) for p in prefixes)
            )
            taken = set(session.scalars(select(OutboundMessage.idempotency_key).where(condition)))
        return cls(now, frozenset(), taken, frozenset(), prefixes=prefixes)

    def key_taken(self, session: Session, key: str) -> bool:
        if key in self.checked_keys or key.startswith(self.prefixes):
            return key in self.taken_keys
        return _key_taken(session, key)

    def replies_to(self, session: Session, recipient: str, now: datetime) -> int:
        if recipient in self.checked_recipients and now == self.now:
            return self.replies_last_hour[recipient]
        return _replies_last_hour(session, recipient, now)

    def queued(self, message: OutboundMessage | DeferredRow) -> None:
        self.taken_keys.add(message.idempotency_key)
        if message.purpose in AUTOMATIC_REPLIES:
            self.replies_last_hour[message.recipient] += 1


def _key_taken(session: Session, key: str) -> bool:
    return (
        session.scalar(select(OutboundMessage.id).where(OutboundMessage.idempotency_key == key)) is not None
    )


def _automatic_replies_since(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """The rows the reply cap counts: automatic replies within the cap's window before `now`."""
    return (
        OutboundMessage.purpose.in_(AUTOMATIC_REPLIES),
        OutboundMessage.created_at > now - REPLY_CAP_WINDOW,
    )


def _replies_last_hour(session: Session, recipient: str, now: datetime) -> int:
    return session.scalar(
        select(func.count())
        .select_from(OutboundMessage)
        .where(OutboundMessage.recipient == recipient, *_automatic_replies_since(now))
    )


def enqueue(
    session: Session,
    *,
    recipient: str,
    body: str,
    purpose: str,
    idempotency_key: str,
    now: datetime,
    incident_id: int | None = None,
    responder_id: int | None = None,
    focal_point_id: int | None = None,
    escalation_step_id: int | None = None,
    reply_cap_per_hour: int | None = None,
    book: ReplyBook | None = None,
) -> Enqueued:
    """Add an SMS to the outbox (not committed: it joins the caller's transaction).

    With a `book` (a batch's replies), what it was loaded with is not asked again and the row is left for
    the batch's next flush; without one, the row is flushed at once so that it has its id.
    """
    taken = book.key_taken(session, idempotency_key) if book else _key_taken(session, idempotency_key)
    if taken:
        return Enqueued(None, "duplicate")
    if purpose in AUTOMATIC_REPLIES and reply_cap_per_hour is not None:
        # A cap on automatic replies, so that two automatic senders can never loop and burn credit.
        sent_last_hour = (
            book.replies_to(session, recipient, now) if book else _replies_last_hour(session, recipient, now)
        )
        if sent_last_hour >= reply_cap_per_hour:
            return Enqueued(None, "reply cap")
    text = to_gsm7(body)
    values = dict(
        recipient=recipient,
        body=text,
        purpose=purpose,
        idempotency_key=idempotency_key,
        incident_id=incident_id,
        responder_id=responder_id,
        focal_point_id=focal_point_id,
        escalation_step_id=escalation_step_id,
        segments=segments(text),
        created_at=now,
        next_attempt_at=now,
        state=OutboundState.QUEUED,
    )
    if book is None:
        message: OutboundMessage | DeferredRow = OutboundMessage(**values)
        session.add(message)
        session.flush()
    else:
        # A batch's row: queued beside its unit of work where it defers them (alerts/deferred.py), its id
        # known once written; else an object for its next flush.
        message = add_row(session, OutboundMessage, values, with_id=True)
        book.queued(message)
    return Enqueued(message)


def mark_sent_inline(session: Session, outbound_id: int, *, provider: str, now: datetime) -> bool:
    """Record a queued reply as sent inside the provider's webhook answer (TwiML); False if the dispatcher
    took it first, in which case the answer must not carry it too."""
    message = get_locked(session, OutboundMessage, outbound_id)
    taken = message is not None and message.state == OutboundState.QUEUED
    if taken:
        message.state = OutboundState.SENT
        message.provider = f"{provider}-inline"
        message.sent_at = now
        message.attempts += 1
    session.commit()
    return taken
