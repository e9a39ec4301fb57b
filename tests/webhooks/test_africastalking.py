"""Africa's Talking's webhooks: the URL's key (and an optional address allowlist) stand in for a signature."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from alerts.models import InboundMessage, OutboundMessage
from alerts.states import InboundState, OutboundState
from tests.webhooks.conftest import (
    AT_KEY,
    FOCAL_POINT_PHONE,
    PROVIDER_TIME,
    at_sms_form,
    break_processing,
    count_processing,
    post_at,
    process_stored,
)
from webhooks.africastalking import address_allowed, received_at

SMS = "/webhooks/africastalking/sms"
DELIVERY = "/webhooks/africastalking/delivery"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def inbound_messages(session) -> list[InboundMessage]:
    """The stored messages as committed; the read transaction is ended (on SQLite it holds the write lock)."""
    session.expire_all()
    messages = session.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
    session.commit()
    return list(messages)


def test_a_keyed_sms_is_stored_with_the_providers_time_and_answered_at_once(app, client, session):
    form = at_sms_form(sender="0815550009", text="bonjour")

    response = post_at(client, SMS, form)
    assert inbound_messages(session)[0].state == InboundState.RECEIVED  # answered before processing
    session.commit()
    assert process_stored(app) == 1

    assert (response.status_code, response.text) == (200, "ok\n")
    [message] = inbound_messages(session)
    assert (message.provider, message.provider_message_id) == ("africastalking", "ATXid_1")
    assert (message.sender, message.recipient, message.text) == ("+243815550009", "12345", "bonjour")
    assert message.received_at == PROVIDER_TIME
    assert message.raw == form
    assert message.state == InboundState.UNVERIFIED


def test_a_retried_message_id_is_stored_once_and_processed_once(app, client, session, monkeypatch):
    calls = count_processing(monkeypatch)

    responses = [post_at(client, SMS, at_sms_form()) for _ in range(3)]
    process_stored(app)
    process_stored(app)

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len(inbound_messages(session)) == 1
    assert len(calls) == 1


def test_a_processing_failure_still_answers_ok_and_keeps_the_message(
    app, client, session, monkeypatch, caplog
):
    text = "Attaque a Kiwanja ce matin"

    break_processing(monkeypatch, lambda: ValueError(f"{text} / {FOCAL_POINT_PHONE}"))

    response = post_at(client, SMS, at_sms_form(text=text))
    assert process_stored(app) == 0

    assert response.status_code == 200
    [message] = inbound_messages(session)
    assert (message.state, message.text) == (InboundState.FAILED, text)
    assert message.error.startswith("ValueError")
    assert text not in caplog.text
    assert FOCAL_POINT_PHONE not in caplog.text


@pytest.mark.parametrize("key", [None, "", "wrong-key", AT_KEY + "x", AT_KEY.upper()])
def test_a_missing_or_wrong_key_is_refused(client, session, key):
    response = post_at(client, SMS, at_sms_form(), key=key)

    assert (response.status_code, response.text) == (403, "invalid key\n")
    assert inbound_messages(session) == []


@pytest.mark.parametrize("app_config", [{"AT_WEBHOOK_KEY": ""}])
def test_without_a_configured_key_every_request_is_refused(client, session, caplog):
    response = post_at(client, SMS, at_sms_form(), key="")

    assert (response.status_code, response.text) == (403, "webhook not configured\n")
    assert "AT_WEBHOOK_KEY is not set" in caplog.text
    assert inbound_messages(session) == []


@pytest.mark.parametrize(
    "app_config", [{"AT_WEBHOOK_KEY": AT_KEY, "AT_ALLOWED_IPS": ["192.0.2.10", "198.51.100.0/24"]}]
)
@pytest.mark.parametrize(
    ("address", "status"),
    [
        ("192.0.2.10", 200),
        ("198.51.100.77", 200),
        ("192.0.2.11", 403),
        ("127.0.0.1", 403),
        ("2001:db8::1", 403),
    ],
)
def test_only_allowed_source_addresses_get_in(client, address, status):
    response = post_at(client, SMS, at_sms_form(), environ_base={"REMOTE_ADDR": address})

    assert response.status_code == status


@pytest.mark.parametrize(
    "app_config", [{"AT_WEBHOOK_KEY": AT_KEY, "AT_ALLOWED_IPS": ["192.0.2.10"], "TRUST_PROXY": True}]
)
def test_behind_a_trusted_proxy_the_forwarded_address_is_checked(client):
    allowed = post_at(client, SMS, at_sms_form("a"), headers={"X-Forwarded-For": "192.0.2.10"})
    refused = post_at(client, SMS, at_sms_form("b"), headers={"X-Forwarded-For": "203.0.113.5"})

    assert (allowed.status_code, refused.status_code) == (200, 403)


@pytest.mark.parametrize(
    ("address", "entries", "allowed"),
    [
        ("192.0.2.10", ("192.0.2.10",), True),
        ("::ffff:192.0.2.10", ("192.0.2.0/24",), True),
        ("2001:db8::5", ("2001:db8::/32",), True),
        ("192.0.2.10", ("not-an-address",), False),
        ("192.0.2.10", ("not-an-address", "192.0.2.10"), True),
        (None, ("192.0.2.10",), False),
        ("garbage", ("0.0.0.0/0",), False),
    ],
)
def test_address_allowlist(address, entries, allowed):
    assert address_allowed(address, entries) is allowed


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("2026-11-23 08:00:00", datetime(2026, 11, 23, 8, 0, tzinfo=UTC)),
        ("2026-11-23T08:00:00.250Z", datetime(2026, 11, 23, 8, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-23T10:00:00+03:00", datetime(2026, 11, 23, 7, 0, tzinfo=UTC)),
        ("2026-11-23 12:00:00", NOW),  # later than now: a clock or zone mix-up, so now
        ("2026-11-19 09:00:00", NOW),  # four days old: a wrong clock, not a delivery delay
        ("1970-01-01T00:00:00Z", NOW),
        ("0001-01-01T00:00:00+01:00", NOW),  # out of range once in UTC
        ("9999-12-31T23:59:59-01:00", NOW),
        ("yesterday", NOW),
        ("", NOW),
    ],
)
def test_the_providers_date_is_the_received_time_when_it_makes_sense(date, expected):
    assert received_at(date, NOW) == expected


@pytest.mark.parametrize("missing", ["id", "from", "to"])
def test_a_missing_field_is_a_400_naming_it(client, session, missing):
    form = at_sms_form()
    del form[missing]

    response = post_at(client, SMS, form)

    assert (response.status_code, response.text) == (400, f"missing field: {missing}\n")
    assert inbound_messages(session) == []


def test_an_invalid_sender_is_a_400_logged_masked(client, session, caplog):
    response = post_at(client, SMS, at_sms_form(sender="+2438155"))

    assert (response.status_code, response.text) == (400, "invalid sender phone number\n")
    assert "+2438155" not in caplog.text


def test_an_absurdly_long_message_id_is_a_400(client, session):
    response = post_at(client, SMS, at_sms_form(message_id="x" * 81))

    assert (response.status_code, response.text) == (400, "invalid message id\n")


def test_an_oversized_body_is_a_413(client, app, session):
    response = post_at(client, SMS, at_sms_form(text="x" * app.config["MAX_WEBHOOK_BYTES"]))

    assert response.status_code == 413
    assert inbound_messages(session) == []


def test_bytes_that_are_not_utf8_are_a_400(client, session):
    body = b"id=ATX1&from=%2B243815550001&to=12345&text=\xe9t\xe9"

    response = client.post(f"{SMS}?key={AT_KEY}", data=body, content_type="application/x-www-form-urlencoded")

    assert (response.status_code, response.text) == (400, "body is not valid UTF-8\n")
    assert inbound_messages(session) == []


def test_a_nul_character_is_dropped_rather_than_losing_the_message(client, session):
    response = post_at(client, SMS, at_sms_form(text="alerte\x00 Rubare"))

    assert response.status_code == 200
    assert inbound_messages(session)[0].text == "alerte Rubare"


def outbound(session, provider_message_id: str = "ATXid_out") -> int:
    message = OutboundMessage(
        recipient=FOCAL_POINT_PHONE,
        body="Recu",
        purpose="receipt",
        idempotency_key="reply:1",
        state=OutboundState.SENT,
        provider="africastalking",
        provider_message_id=provider_message_id,
    )
    session.add(message)
    session.commit()
    return message.id


def reload(session, message_id: int) -> OutboundMessage:
    session.expire_all()
    message = session.get(OutboundMessage, message_id)
    session.commit()
    return message


def test_delivery_reports_out_of_order_leave_the_message_delivered(client, session):
    message_id = outbound(session)

    success = post_at(
        client, DELIVERY, {"id": "ATXid_out", "status": "Success", "phoneNumber": FOCAL_POINT_PHONE}
    )
    late = post_at(
        client, DELIVERY, {"id": "ATXid_out", "status": "Buffered", "phoneNumber": FOCAL_POINT_PHONE}
    )

    assert (success.status_code, late.status_code) == (200, 200)
    message = reload(session, message_id)
    assert (message.state, message.provider_status) == (OutboundState.DELIVERED, "Success")


def test_a_rejected_report_is_final_with_its_reason(client, session):
    message_id = outbound(session)

    post_at(client, DELIVERY, {"id": "ATXid_out", "status": "Rejected", "failureReason": "UserInBlacklist"})
    post_at(client, DELIVERY, {"id": "ATXid_out", "status": "Success"})

    message = reload(session, message_id)
    assert (message.state, message.last_error) == (
        OutboundState.UNDELIVERED,
        "africastalking: UserInBlacklist",
    )


def test_a_report_for_an_unknown_message_is_answered_ok(client, session):
    assert post_at(client, DELIVERY, {"id": "nobody", "status": "Success"}).status_code == 200


def test_delivery_reports_need_the_key(client, session):
    message_id = outbound(session)

    response = post_at(client, DELIVERY, {"id": "ATXid_out", "status": "Failed"}, key="guess")

    assert response.status_code == 403
    assert reload(session, message_id).state == OutboundState.SENT


def test_a_delivery_report_without_a_status_is_a_400(client):
    response = post_at(client, DELIVERY, {"id": "ATXid_out"})

    assert (response.status_code, response.text) == (400, "missing field: status\n")


def test_logs_never_show_the_sender_the_text_or_the_key(client, caplog):
    text = "Enlevement de 4 enfants a Kibirizi"
    with caplog.at_level(logging.DEBUG):
        post_at(client, SMS, at_sms_form("m1", sender="+243815550099", text=text))
        post_at(client, SMS, at_sms_form("m1", sender="+243815550099", text=text))
        post_at(client, SMS, at_sms_form("m2", sender="+24381", text=text))
        post_at(client, SMS, at_sms_form("m3", text=text), key="wrong")

    assert caplog.records
    assert "815550099" not in caplog.text
    assert text not in caplog.text
    assert AT_KEY not in caplog.text


def test_the_received_time_is_now_when_the_date_is_missing(client, session):
    form = at_sms_form()
    del form["date"]
    before = datetime.now(UTC)

    post_at(client, SMS, form)

    received = inbound_messages(session)[0].received_at
    assert before - timedelta(seconds=1) <= received <= datetime.now(UTC)
