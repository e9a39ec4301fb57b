"""Delivery reports: providers' statuses mapped onto the outbox's states, which never move backwards."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts import incidents
from alerts.models import OutboundMessage
from alerts.phones import mask_phone
from alerts.states import OutboundState

log = logging.getLogger(__name__)

DeliveryResult = Literal["applied", "ignored_backwards", "ignored_final", "unknown_message", "unknown_status"]

FINAL_STATES = frozenset({OutboundState.DELIVERED, OutboundState.UNDELIVERED, OutboundState.FAILED})

# How far along its way a message is; final states share the top rank and none replaces another.
RANK: dict[OutboundState, int] = {
    OutboundState.QUEUED: 0,
    OutboundState.SENDING: 1,
    OutboundState.SENT: 2,
    OutboundState.DELIVERED: 3,
    OutboundState.UNDELIVERED: 3,
    OutboundState.FAILED: 3,
}

# https://www.twilio.com/docs/messaging/api/message-resource#message-status-values
TWILIO_STATUSES: dict[str, OutboundState] = {
    "accepted": OutboundState.SENDING,  # the provider has it, not yet sent to a carrier
    "scheduled": OutboundState.SENDING,
    "queued": OutboundState.SENDING,
    "sending": OutboundState.SENDING,
    "sent": OutboundState.SENT,
    "delivered": OutboundState.DELIVERED,
    "read": OutboundState.DELIVERED,
    "undelivered": OutboundState.UNDELIVERED,
    "failed": OutboundState.FAILED,
    "canceled": OutboundState.FAILED,  # a scheduled message cancelled before it left
    # "receiving" and "received" describe inbound messages: never an outbound delivery report.
}

# Africa's Talking delivery report statuses, lower-cased (they arrive capitalised).
AFRICASTALKING_STATUSES: dict[str, OutboundState] = {
    "submitted": OutboundState.SENT,  # handed to the mobile network
    "sent": OutboundState.SENT,
    "buffered": OutboundState.SENT,  # queued by the mobile network, e.g. phone off
    "success": OutboundState.DELIVERED,
    "rejected": OutboundState.UNDELIVERED,  # refused by the mobile network: final
    "failed": OutboundState.UNDELIVERED,  # not delivered to the handset: final
    "absentsubscriber": OutboundState.UNDELIVERED,
    "expired": OutboundState.UNDELIVERED,
}

STATUSES_BY_PROVIDER: dict[str, dict[str, OutboundState]] = {
    "twilio": TWILIO_STATUSES,
    "africastalking": AFRICASTALKING_STATUSES,
}


def to_outbound_state(provider: str, status: str) -> OutboundState | None:
    """The outbox state a provider's status means, or None for a status that is not a delivery report."""
    return STATUSES_BY_PROVIDER.get(provider, {}).get(status.strip().lower())


def decide(
    current: OutboundState, reported: OutboundState
) -> Literal["applied", "ignored_backwards", "ignored_final"]:
    """Whether a report may move a message from its current state: never backwards, never out of a final."""
    if current in FINAL_STATES:
        return "ignored_final"
    if RANK[reported] < RANK[current]:
        return "ignored_backwards"
    return "applied"


def apply_delivery_report(
    session: Session,
    provider: str,
    provider_message_id: str,
    status: str,
    error_code: str | None,
    now: datetime,
) -> DeliveryResult:
    """Apply one delivery report to the outbound message it is about; commits."""
    message = session.scalars(
        select(OutboundMessage)
        .where(
            OutboundMessage.provider == provider, OutboundMessage.provider_message_id == provider_message_id
        )
        .order_by(OutboundMessage.id)
        .limit(1)
        .with_for_update()
    ).one_or_none()
    if message is None:
        session.rollback()
        log.warning("%s delivery report for an unknown message %s", provider, provider_message_id)
        return "unknown_message"
    reported = to_outbound_state(provider, status)
    if reported is None:
        session.rollback()
        log.warning(
            "%s delivery report with unknown status %r for outbound %s", provider, status[:40], message.id
        )
        return "unknown_status"
    result = decide(OutboundState(message.state), reported)
    if result != "applied":
        session.rollback()
        log.info("%s delivery report %s for outbound %s: %s", provider, status[:40], message.id, result)
        return result
    message.state = reported
    message.provider_status = status[:40]
    if error_code:
        message.last_error = f"{provider}: {error_code}"[:1000]
    if reported is OutboundState.SENT and message.sent_at is None:
        message.sent_at = now
    if reported is OutboundState.DELIVERED:
        message.delivered_at = now
    if reported in (OutboundState.UNDELIVERED, OutboundState.FAILED) and message.incident_id is not None:
        _page_not_delivered(session, message, status, now)
    session.commit()
    return result


def _page_not_delivered(session: Session, message: OutboundMessage, status: str, now: datetime) -> None:
    detail = f"{message.purpose} to {mask_phone(message.recipient)}: {status[:40]}"
    incidents.message_lost(session, message, "not_delivered", detail, "a page was not delivered", now)
