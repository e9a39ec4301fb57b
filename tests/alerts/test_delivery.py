"""Delivery reports move an outbound message forward only, and a final state stays final."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.delivery import apply_delivery_report, decide, to_outbound_state
from alerts.models import OutboundMessage
from alerts.states import OutboundState
from tests.conftest import T0

Q, SENDING, SENT = OutboundState.QUEUED, OutboundState.SENDING, OutboundState.SENT
DELIVERED, UNDELIVERED, FAILED = OutboundState.DELIVERED, OutboundState.UNDELIVERED, OutboundState.FAILED


@pytest.mark.parametrize(
    ("provider", "status", "state"),
    [
        ("twilio", "accepted", SENDING),
        ("twilio", "scheduled", SENDING),
        ("twilio", "queued", SENDING),
        ("twilio", "sending", SENDING),
        ("twilio", "sent", SENT),
        ("twilio", "delivered", DELIVERED),
        ("twilio", "read", DELIVERED),
        ("twilio", "undelivered", UNDELIVERED),
        ("twilio", "failed", FAILED),
        ("twilio", "canceled", FAILED),
        ("twilio", "receiving", None),
        ("twilio", "received", None),
        ("twilio", "Delivered", DELIVERED),
        ("africastalking", "Submitted", SENT),
        ("africastalking", "Sent", SENT),
        ("africastalking", "Buffered", SENT),
        ("africastalking", "Success", DELIVERED),
        ("africastalking", "Rejected", UNDELIVERED),
        ("africastalking", "Failed", UNDELIVERED),
        ("africastalking", "AbsentSubscriber", UNDELIVERED),
        ("africastalking", "Expired", UNDELIVERED),
        ("africastalking", "Teleported", None),
        ("console", "sent", None),
    ],
)
def test_provider_statuses_map_onto_outbox_states(provider, status, state):
    assert to_outbound_state(provider, status) == state


@pytest.mark.parametrize(
    ("current", "reported", "result"),
    [
        (Q, SENDING, "applied"),
        (SENDING, SENT, "applied"),
        (SENDING, SENDING, "applied"),
        (SENT, DELIVERED, "applied"),
        (SENT, UNDELIVERED, "applied"),
        (Q, DELIVERED, "applied"),
        (SENT, SENDING, "ignored_backwards"),
        (SENT, Q, "ignored_backwards"),
        (DELIVERED, SENT, "ignored_final"),
        (DELIVERED, FAILED, "ignored_final"),
        (FAILED, DELIVERED, "ignored_final"),
        (UNDELIVERED, DELIVERED, "ignored_final"),
        (DELIVERED, DELIVERED, "ignored_final"),
    ],
)
def test_a_state_never_moves_backwards_nor_out_of_a_final_state(current, reported, result):
    assert decide(current, reported) == result


def outbound(session, state=SENT, provider="twilio", provider_message_id="SM1") -> int:
    message = OutboundMessage(
        recipient="+243815550001",
        body="Recu: incident 12",
        purpose="receipt",
        idempotency_key=f"reply:{provider_message_id}",
        state=state,
        provider=provider,
        provider_message_id=provider_message_id,
        sent_at=T0 if state != Q else None,
    )
    session.add(message)
    session.commit()
    return message.id


def reload(session, message_id) -> OutboundMessage:
    session.expire_all()
    message = session.get(OutboundMessage, message_id)
    session.commit()
    return message


def test_a_delivered_report_marks_the_message_delivered_with_its_time(session):
    message_id = outbound(session)

    result = apply_delivery_report(session, "twilio", "SM1", "delivered", None, T0 + timedelta(seconds=7))

    message = reload(session, message_id)
    assert result == "applied"
    assert (message.state, message.provider_status) == (DELIVERED, "delivered")
    assert message.delivered_at == T0 + timedelta(seconds=7)


def test_reports_out_of_order_leave_the_message_delivered(session):
    message_id = outbound(session)

    apply_delivery_report(session, "twilio", "SM1", "delivered", None, T0)
    result = apply_delivery_report(session, "twilio", "SM1", "sent", None, T0 + timedelta(seconds=1))

    message = reload(session, message_id)
    assert result == "ignored_final"
    assert (message.state, message.provider_status, message.delivered_at) == (DELIVERED, "delivered", T0)


def test_a_late_queued_report_does_not_move_a_sent_message_back(session):
    message_id = outbound(session)

    assert apply_delivery_report(session, "twilio", "SM1", "queued", None, T0) == "ignored_backwards"
    assert reload(session, message_id).state == SENT


def test_a_failure_report_keeps_the_providers_reason(session):
    message_id = outbound(session, provider="africastalking", provider_message_id="ATXid_9")

    result = apply_delivery_report(session, "africastalking", "ATXid_9", "Rejected", "InsufficientCredit", T0)

    message = reload(session, message_id)
    assert result == "applied"
    assert (message.state, message.provider_status) == (UNDELIVERED, "Rejected")
    assert message.last_error == "africastalking: InsufficientCredit"
    assert message.delivered_at is None


def test_the_first_sent_report_records_when_it_was_sent(session):
    message_id = outbound(session, state=SENDING)
    session.get(OutboundMessage, message_id).sent_at = None
    session.commit()

    apply_delivery_report(session, "twilio", "SM1", "sent", None, T0)

    assert reload(session, message_id).sent_at == T0


def test_a_report_about_an_unknown_message_changes_nothing(session):
    message_id = outbound(session)

    assert apply_delivery_report(session, "twilio", "SM-unknown", "delivered", None, T0) == "unknown_message"
    assert apply_delivery_report(session, "africastalking", "SM1", "Success", None, T0) == "unknown_message"
    assert reload(session, message_id).state == SENT


def test_a_report_with_an_unknown_status_changes_nothing(session):
    message_id = outbound(session)

    assert apply_delivery_report(session, "twilio", "SM1", "received", None, T0) == "unknown_status"
    assert reload(session, message_id).provider_status is None
