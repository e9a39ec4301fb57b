"""Signed requests as the providers send them, against the test client's URLs (http://localhost/...)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

from alerts import pipeline

TWILIO_TOKEN = "test-twilio-auth-token"
AT_KEY = "test-at-webhook-key"
FOCAL_POINT_PHONE = "+243815550001"
OUR_NUMBER = "+243990000001"
# When Africa's Talking received the message: a little before the webhook (the edge's clock is real).
PROVIDER_TIME = (datetime.now(UTC) - timedelta(minutes=3)).replace(microsecond=0)
PROVIDER_DATE = PROVIDER_TIME.strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def app_config() -> dict[str, object]:
    return {"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "AT_WEBHOOK_KEY": AT_KEY}


def twilio_sms_form(sid: str = "SM" + "a" * 32, sender: str = FOCAL_POINT_PHONE, body: str = "test") -> dict:
    return {
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": OUR_NUMBER,
        "Body": body,
        "NumSegments": "1",
        "NumMedia": "0",
    }


def twilio_signature(url: str, form: dict, token: str = TWILIO_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, form)


def post_twilio(
    client: FlaskClient,
    path: str,
    form: dict,
    *,
    signed_url: str | None = None,
    signed_form: dict | None = None,
    headers: dict | None = None,
) -> TestResponse:
    """POST a form signed as Twilio signs it: over the URL it requested and every field it posted."""
    signature = twilio_signature(
        signed_url or f"http://localhost{path}", form if signed_form is None else signed_form
    )
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature, **(headers or {})})


def at_sms_form(message_id: str = "ATXid_1", sender: str = FOCAL_POINT_PHONE, text: str = "test") -> dict:
    return {
        "from": sender,
        "to": "12345",
        "text": text,
        "date": PROVIDER_DATE,
        "id": message_id,
        "linkId": "link-1",
        "networkCode": "63001",
    }


def post_at(
    client: FlaskClient, path: str, form: dict, *, key: str | None = AT_KEY, **kwargs
) -> TestResponse:
    query = f"?{urlencode({'key': key})}" if key is not None else ""
    return client.post(f"{path}{query}", data=form, **kwargs)


def process_stored(app) -> int:
    """What the engine does right after a webhook answered: process the stored messages."""
    return app.extensions["alerts_engine"].process_inbound()


def count_processing(monkeypatch) -> list[int]:
    """The ids of the messages the pipeline processes, whether the engine hands it a batch or one message."""
    calls: list[int] = []
    one, many = pipeline.process_message, pipeline.process_messages

    def counting_one(session, message_id, **kwargs):
        calls.append(message_id)
        return one(session, message_id, **kwargs)

    def counting_many(session, messages, **kwargs):
        calls.extend(m.id for m in messages)
        return many(session, messages, **kwargs)

    monkeypatch.setattr(pipeline, "process_message", counting_one)
    monkeypatch.setattr(pipeline, "process_messages", counting_many)
    return calls


def break_processing(monkeypatch, error: Callable[[], Exception]) -> None:
    """Processing raises `error()` whichever way it is called: batches fail, then each message alone."""

    def broken(*_args, **_kwargs):
        raise error()

    monkeypatch.setattr(pipeline, "process_message", broken)
    monkeypatch.setattr(pipeline, "process_messages", broken)
