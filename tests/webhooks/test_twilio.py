"""Twilio's webhooks: only signed requests get in, every genuine message is stored once, and TwiML answers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from alerts import pipeline
from alerts.inbound import retry_unprocessed
from alerts.models import FocalPoint, InboundMessage, OutboundMessage
from alerts.states import InboundState, OutboundState
from tests.conftest import postgresql_only
from tests.webhooks.conftest import (
    FOCAL_POINT_PHONE,
    OUR_NUMBER,
    TWILIO_TOKEN,
    break_processing,
    count_processing,
    post_twilio,
    process_stored,
    twilio_signature,
    twilio_sms_form,
)

SMS = "/webhooks/twilio/sms"
STATUS = "/webhooks/twilio/status"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'
ALERT_TEXT = "Attaque a Kiwanja, 3 morts, maisons brulees"


def inbound_messages(session) -> list[InboundMessage]:
    """The stored messages as committed; the read transaction is ended (on SQLite it holds the write lock)."""
    session.expire_all()
    messages = session.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
    session.commit()
    return list(messages)


def register_focal_point(session, phone: str = FOCAL_POINT_PHONE) -> None:
    session.add(FocalPoint(name="Focal point", phone=phone, language="fr"))
    session.commit()


def test_a_signed_sms_is_stored_with_every_field_and_answered_with_twiml(client, session):
    form = twilio_sms_form(sender="+243 81 555 0009", body="bonjour")

    response = post_twilio(client, SMS, form)

    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    assert response.text == EMPTY_TWIML
    [message] = inbound_messages(session)
    assert (message.provider, message.provider_message_id) == ("twilio", form["MessageSid"])
    assert (message.sender, message.recipient, message.text) == ("+243815550009", OUR_NUMBER, "bonjour")
    assert message.raw == form
    assert message.received_at.tzinfo is not None


def test_an_unknown_sender_is_stored_and_left_for_coordinators(app, client, session):
    post_twilio(client, SMS, twilio_sms_form(sender="+243815550099", body=ALERT_TEXT))
    assert process_stored(app) == 1

    [message] = inbound_messages(session)
    assert message.state == InboundState.UNVERIFIED


@pytest.mark.parametrize(
    "app_config", [{"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "TWILIO_REPLY_WITH_RECEIPT": True}]
)
def test_a_focal_points_receipt_is_the_twiml_reply_and_recorded_as_sent(client, session):
    register_focal_point(session)

    response = post_twilio(client, SMS, twilio_sms_form(body=ALERT_TEXT))

    [reply] = session.scalars(select(OutboundMessage)).all()
    session.commit()
    assert response.status_code == 200
    assert f"<Message>{reply.body}</Message>" in response.text
    assert (reply.state, reply.recipient) == (OutboundState.SENT, FOCAL_POINT_PHONE)
    assert reply.provider == "twilio-inline"


def test_by_default_the_webhook_answers_at_once_and_the_receipt_waits_in_the_outbox(app, client, session):
    register_focal_point(session)

    response = post_twilio(client, SMS, twilio_sms_form(body=ALERT_TEXT))
    assert session.scalars(select(OutboundMessage)).all() == []  # answered before any processing
    session.commit()
    assert process_stored(app) == 1

    [reply] = session.scalars(select(OutboundMessage)).all()
    session.commit()
    assert response.text == EMPTY_TWIML
    assert reply.state == OutboundState.QUEUED


def test_a_retried_message_sid_is_stored_once_and_processed_once(app, client, session, monkeypatch):
    calls = count_processing(monkeypatch)
    form = twilio_sms_form(sender="+243815550099")

    first = post_twilio(client, SMS, form)
    retry = post_twilio(client, SMS, form)
    process_stored(app)
    process_stored(app)

    assert (first.status_code, retry.status_code) == (200, 200)
    assert retry.text == EMPTY_TWIML
    assert len(inbound_messages(session)) == 1
    assert len(calls) == 1


def test_a_processing_failure_keeps_the_message_and_the_retry_job_processes_it_later(
    app, client, session, database, monkeypatch, caplog
):
    break_processing(
        monkeypatch, lambda: RuntimeError(f"could not understand {ALERT_TEXT!r} from {FOCAL_POINT_PHONE}")
    )
    with caplog.at_level(logging.INFO):
        response = post_twilio(client, SMS, twilio_sms_form(body=ALERT_TEXT))
        assert process_stored(app) == 0

    assert response.status_code == 200
    assert response.text == EMPTY_TWIML
    [message] = inbound_messages(session)
    assert (message.state, message.attempts) == (InboundState.FAILED, 1)
    assert message.error.startswith("RuntimeError: could not understand")
    assert ALERT_TEXT not in message.error
    assert FOCAL_POINT_PHONE not in message.error
    assert f"processing inbound message {message.id} failed with RuntimeError" in caplog.text
    assert ALERT_TEXT not in caplog.text
    assert FOCAL_POINT_PHONE not in caplog.text

    monkeypatch.undo()
    settings = pipeline.PipelineSettings.from_config(app.config)

    def process(session, message_id, now):
        return pipeline.process_message(session, message_id, now=now, settings=settings)

    later = datetime.now(UTC) + timedelta(minutes=5)
    assert retry_unprocessed(database, later, process) == 1
    [message] = inbound_messages(session)
    assert message.state == InboundState.UNVERIFIED
    assert message.error is None
    assert retry_unprocessed(database, later, process) == 0


def test_a_forged_signature_is_refused(client, session):
    form = twilio_sms_form()

    response = client.post(SMS, data=form, headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"})

    assert response.status_code == 403
    assert response.text == "invalid signature\n"
    assert inbound_messages(session) == []


def test_a_missing_signature_is_refused(client, session):
    response = client.post(SMS, data=twilio_sms_form())

    assert (response.status_code, response.text) == (403, "missing signature\n")
    assert inbound_messages(session) == []


def test_a_signature_made_with_another_token_is_refused(client):
    form = twilio_sms_form()
    signature = twilio_signature(f"http://localhost{SMS}", form, token="someone-elses-token")

    response = client.post(SMS, data=form, headers={"X-Twilio-Signature": signature})

    assert response.status_code == 403


def test_a_field_added_after_signing_is_refused(client, session):
    signed = twilio_sms_form()
    tampered = {**signed, "Body": "fausse alerte"}

    response = post_twilio(client, SMS, tampered, signed_form=signed)

    assert response.status_code == 403
    assert inbound_messages(session) == []


def test_a_signature_for_another_url_is_refused(client):
    form = twilio_sms_form()

    response = post_twilio(client, SMS, form, signed_url=f"http://localhost{STATUS}")

    assert response.status_code == 403


@pytest.mark.parametrize("app_config", [{"TWILIO_AUTH_TOKEN": ""}])
def test_without_an_auth_token_every_request_is_refused_and_the_configuration_error_logged(
    client, session, caplog
):
    form = twilio_sms_form()

    response = client.post(
        SMS, data=form, headers={"X-Twilio-Signature": twilio_signature("", form, token="x")}
    )

    assert (response.status_code, response.text) == (403, "webhook not configured\n")
    assert "TWILIO_AUTH_TOKEN is not set" in caplog.text
    assert inbound_messages(session) == []


@pytest.mark.parametrize(
    "app_config", [{"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "PUBLIC_URL": "https://alerts.example.org/"}]
)
def test_behind_a_proxy_the_signature_is_checked_against_the_public_url(client, session):
    form = twilio_sms_form()

    local = post_twilio(client, SMS, form)
    public = post_twilio(client, SMS, form, signed_url=f"https://alerts.example.org{SMS}")

    assert (local.status_code, public.status_code) == (403, 200)
    assert len(inbound_messages(session)) == 1


@pytest.mark.parametrize(
    "app_config", [{"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "PUBLIC_URL": "https://alerts.example.org"}]
)
def test_the_public_url_keeps_the_query_string_twilio_signed(client):
    form = twilio_sms_form()
    signature = twilio_signature(f"https://alerts.example.org{SMS}?zone=beni", form)

    response = client.post(f"{SMS}?zone=beni", data=form, headers={"X-Twilio-Signature": signature})

    assert response.status_code == 200


@pytest.mark.parametrize("app_config", [{"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "TRUST_PROXY": True}])
def test_with_a_trusted_proxy_the_forwarded_scheme_and_host_are_signed(client):
    form = twilio_sms_form()
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "alerts.example.org"}

    response = post_twilio(
        client, SMS, form, signed_url=f"https://alerts.example.org{SMS}", headers=forwarded
    )

    assert response.status_code == 200


def test_forwarded_headers_are_ignored_unless_the_proxy_is_trusted(client):
    form = twilio_sms_form()
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "alerts.example.org"}

    response = post_twilio(
        client, SMS, form, signed_url=f"https://alerts.example.org{SMS}", headers=forwarded
    )

    assert response.status_code == 403


@pytest.mark.parametrize(
    ("missing", "reason"), [("MessageSid", "MessageSid"), ("From", "From"), ("To", "To")]
)
def test_a_missing_field_is_a_400_naming_it(client, session, missing, reason):
    form = twilio_sms_form()
    del form[missing]

    response = post_twilio(client, SMS, form)

    assert (response.status_code, response.text) == (400, f"missing field: {reason}\n")
    assert inbound_messages(session) == []


@pytest.mark.parametrize("sender", ["+243", "hello", "+99912345678901234"])
def test_an_invalid_sender_number_is_a_400_logged_masked(client, session, caplog, sender):
    response = post_twilio(client, SMS, twilio_sms_form(sender=sender))

    assert (response.status_code, response.text) == (400, "invalid sender phone number\n")
    assert inbound_messages(session) == []
    assert sender not in caplog.text


def test_an_oversized_body_is_a_413(client, app, session):
    form = twilio_sms_form(body="x" * app.config["MAX_WEBHOOK_BYTES"])

    response = post_twilio(client, SMS, form)

    assert response.status_code == 413
    assert inbound_messages(session) == []


def test_bytes_that_are_not_utf8_are_a_400(client, session):
    body = b"MessageSid=SM1&From=%2B243815550001&To=%2B243990000001&Body=caf%E9"

    response = client.post(
        SMS,
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": "c2lnbmF0dXJl"},
    )

    assert (response.status_code, response.text) == (400, "body is not valid UTF-8\n")
    assert inbound_messages(session) == []


def test_accented_and_non_latin_text_arrives_intact(client, session):
    text = "Attaque à Kiwanja — 3 morts, watu wamekimbia 🙏"

    response = post_twilio(client, SMS, twilio_sms_form(sender="+243815550099", body=text))

    assert response.status_code == 200
    assert inbound_messages(session)[0].text == text


def test_a_body_that_is_not_a_form_is_a_415(client):
    response = client.post(SMS, json={"MessageSid": "SM1"}, headers={"X-Twilio-Signature": "c2ln"})

    assert response.status_code == 415


def test_logs_never_show_the_sender_or_the_text(client, caplog):
    text = "Kidnapping pres de Rubare ce soir"
    with caplog.at_level(logging.DEBUG):
        post_twilio(client, SMS, twilio_sms_form(sender="+243815550099", body=text))
        post_twilio(client, SMS, twilio_sms_form(sender="+243815550099", body=text))
        post_twilio(client, SMS, twilio_sms_form(sid="SM-bad", sender="12", body=text))

    assert caplog.records
    assert "815550099" not in caplog.text
    assert text not in caplog.text


def sent_outbound(session, sid: str = "SM" + "b" * 32) -> int:
    message = OutboundMessage(
        recipient=FOCAL_POINT_PHONE,
        body="Recu",
        purpose="receipt",
        idempotency_key="reply:1",
        state=OutboundState.SENT,
        provider="twilio",
        provider_message_id=sid,
    )
    session.add(message)
    session.commit()
    return message.id


def outbound_state(session, message_id: int) -> OutboundMessage:
    session.expire_all()
    message = session.get(OutboundMessage, message_id)
    session.commit()
    return message


def test_status_callbacks_out_of_order_leave_the_message_delivered(client, session):
    message_id = sent_outbound(session)
    sid = "SM" + "b" * 32

    delivered = post_twilio(client, STATUS, {"MessageSid": sid, "MessageStatus": "delivered"})
    late_sent = post_twilio(client, STATUS, {"MessageSid": sid, "MessageStatus": "sent"})

    assert (delivered.status_code, late_sent.status_code) == (204, 204)
    message = outbound_state(session, message_id)
    assert message.state == OutboundState.DELIVERED
    assert message.delivered_at is not None


def test_a_failed_status_keeps_the_error_code(client, session):
    message_id = sent_outbound(session)

    post_twilio(
        client, STATUS, {"MessageSid": "SM" + "b" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    )

    message = outbound_state(session, message_id)
    assert (message.state, message.last_error) == (OutboundState.UNDELIVERED, "twilio: 30003")


def test_a_status_callback_for_an_unknown_message_is_answered_so_twilio_stops(client, session):
    response = post_twilio(client, STATUS, {"MessageSid": "SM-unknown", "MessageStatus": "delivered"})

    assert response.status_code == 204


def test_status_callbacks_must_be_signed(client, session):
    message_id = sent_outbound(session)

    response = client.post(STATUS, data={"MessageSid": "SM" + "b" * 32, "MessageStatus": "failed"})

    assert response.status_code == 403
    assert outbound_state(session, message_id).state == OutboundState.SENT


def test_a_status_callback_without_a_status_is_a_400(client):
    response = post_twilio(client, STATUS, {"MessageSid": "SM1"})

    assert (response.status_code, response.text) == (400, "missing field: MessageStatus\n")


@postgresql_only
def test_a_new_message_wakes_the_workers_of_other_processes_with_its_commit(app, client, database):
    """Production: web processes without a scheduler; the message's own transaction NOTIFYs the workers."""
    import psycopg

    from escalation.scheduler import WAKEUP_CHANNEL

    url = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {WAKEUP_CHANNEL}")
        form = twilio_sms_form(sid="SM" + "c" * 32)
        assert post_twilio(client, SMS, form).status_code == 200
        heard = [n.channel for n in listener.notifies(timeout=5, stop_after=1)]
        assert heard == [WAKEUP_CHANNEL]

        assert post_twilio(client, SMS, form).status_code == 200  # a provider's retry: nothing new
        assert list(listener.notifies(timeout=0.5)) == []
