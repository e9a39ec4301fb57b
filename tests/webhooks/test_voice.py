"""Missed-call webhooks: signed (Twilio) or keyed (Africa's Talking), rejected unanswered, stored once."""

from __future__ import annotations

from sqlalchemy import select

from alerts.models import FocalPoint, InboundMessage, Incident
from tests.webhooks.conftest import AT_KEY, FOCAL_POINT_PHONE, post_at, post_twilio, process_stored

TWILIO_VOICE = "/webhooks/twilio/voice"
AT_VOICE = "/webhooks/africastalking/voice"


def _call(sid: str = "CA" + "1" * 32, sender: str = FOCAL_POINT_PHONE) -> dict:
    return {
        "CallSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": "+243990000001",
        "CallStatus": "ringing",
        "Direction": "inbound",
    }


def _at_call(session_id: str = "ATVId_1", sender: str = FOCAL_POINT_PHONE, active: str = "1") -> dict:
    return {
        "sessionId": session_id,
        "callerNumber": sender,
        "destinationNumber": "+254711082000",
        "isActive": active,
        "direction": "Inbound",
    }


def _messages(session):
    session.commit()
    return session.scalars(select(InboundMessage)).all()


def test_a_signed_call_is_rejected_unanswered_and_stored_as_a_voice_message(client, session):
    response = post_twilio(client, TWILIO_VOICE, _call())
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    assert "<Reject" in response.text
    [message] = _messages(session)
    assert (message.channel, message.provider_message_id, message.text) == ("voice", "CA" + "1" * 32, "")


def test_a_forged_call_is_refused(client, session):
    response = client.post(TWILIO_VOICE, data=_call(), headers={"X-Twilio-Signature": "forged"})
    assert response.status_code == 403
    assert _messages(session) == []


def test_a_keyed_africastalking_call_is_rejected_and_stored_once(client, session):
    first = post_at(client, AT_VOICE, _at_call())
    again = post_at(client, AT_VOICE, _at_call())
    ended = post_at(client, AT_VOICE, _at_call(active="0"))
    assert "<Reject/>" in first.text
    assert again.status_code == 200
    assert ended.status_code == 200
    assert len(_messages(session)) == 1


def test_a_wrong_key_is_refused(client, session):
    assert post_at(client, AT_VOICE, _at_call(), key=AT_KEY + "x").status_code == 403
    assert _messages(session) == []


def test_a_beep_from_a_focal_point_becomes_an_incident(app, client, session):
    from tests import factories

    zone = factories.zone(session)
    session.add(
        FocalPoint(name="Amani", phone=FOCAL_POINT_PHONE, home_lat=-1.18, home_lon=28.92, zone_id=zone.id)
    )
    session.commit()
    post_twilio(client, TWILIO_VOICE, _call())
    assert process_stored(app) == 1
    session.commit()
    [incident] = session.scalars(select(Incident)).all()
    assert incident.category == "unknown"
    assert incident.callback_pending
