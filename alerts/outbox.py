"""The outbox: every SMS the service owes is a row written in the transaction of the decision behind it.

The escalation dispatcher sends queued rows later; this module only writes them (and records the one
exception, a reply sent inline in Twilio's TwiML answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.models import OutboundMessage
from alerts.sms import segments, to_gsm7
from alerts.states import OutboundState

# Purposes that are automatic answers to whoever wrote to us, as opposed to pages we initiate.
AUTOMATIC_REPLIES = frozenset({"receipt", "confirmation", "help", "error", "test"})


@dataclass(frozen=True)
class Enqueued:
    message: OutboundMessage | None
    reason: str = ""  # why nothing was queued: "duplicate", "reply cap"


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
) -> Enqueued:
    """Add an SMS to the outbox (not committed: it joins the caller's transaction)."""
    existing = session.scalar(
        select(OutboundMessage).where(OutboundMessage.idempotency_key == idempotency_key)
    )
    if existing is not None:
        return Enqueued(None, "duplicate")
    if purpose in AUTOMATIC_REPLIES and reply_cap_per_hour is not None:
        # A cap on automatic replies, so that two automatic senders can never loop and burn credit.
        sent_last_hour = session.scalar(
            select(func.count())
            .select_from(OutboundMessage)
            .where(
                OutboundMessage.recipient == recipient,
                OutboundMessage.purpose.in_(AUTOMATIC_REPLIES),
                OutboundMessage.created_at > now - timedelta(hours=1),
            )
        )
        if sent_last_hour >= reply_cap_per_hour:
            return Enqueued(None, "reply cap")
    text = to_gsm7(body)
    message = OutboundMessage(
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
    session.add(message)
    session.flush()
    return Enqueued(message)


def mark_sent_inline(session: Session, outbound_id: int, *, provider: str, now: datetime) -> bool:
    """Record a queued reply as sent inside the provider's webhook answer (TwiML); False if the dispatcher
    took it first, in which case the answer must not carry it too."""
    message = session.get(OutboundMessage, outbound_id, with_for_update=True)
    taken = message is not None and message.state == OutboundState.QUEUED
    if taken:
        message.state = OutboundState.SENT
        message.provider = f"{provider}-inline"
        message.sent_at = now
        message.attempts += 1
    session.commit()
    return taken
