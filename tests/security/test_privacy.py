"""Realistic flows with logging at DEBUG through the root handler and its RedactPhonesFilter: no party's
phone number and no message text in what the logs write, none in a failed message's stored error; no secret
in logs, pages or API answers; the access log never shows a query string (Africa's Talking's key)."""

from __future__ import annotations

import io
import logging
import re
import runpy
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from twilio.request_validator import RequestValidator

from alerts import pipeline
from alerts.api import issue_token
from alerts.logs import RedactPhonesFilter
from alerts.models import FocalPoint, InboundMessage, Incident, OutboundMessage, Place, User
from alerts.states import InboundState, OutboundState
from tests import factories
from tests.alerts.test_pipeline import PLACES
from tests.fakes import providers as fake
from tests.security.conftest import SECRET_KEY
from tests.webhooks.conftest import AT_KEY, OUR_NUMBER

ROOT = Path(__file__).resolve().parents[2]
FOCAL_POINT = "+243815550101"
REGISTRANT = "+243815550199"
STRANGER = "+243815550177"
ALERT = "Attaque a Mweso ce matin, 4 morts et maisons brulees"
SECOND_ALERT = "pillage a Rubaya hier soir par des hommes armes"
FAILING_ALERT = "enlevement de deux enfants pres du marche de Kitchanga"
REGISTRATION = "REG Jeanne Bahati Kitchanga"


@pytest.fixture
def app_config(fake_providers) -> dict[str, object]:
    """Both real gateways against the local fake, so sends, failures and delivery reports are real."""
    return {
        "SECRET_KEY": SECRET_KEY,
        "SMS_GATEWAYS": ["twilio", "africastalking"],
        "TWILIO_ACCOUNT_SID": fake.TWILIO_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": fake.TWILIO_AUTH_TOKEN,  # also what Twilio signs webhooks with
        "TWILIO_FROM": fake.TWILIO_FROM,
        "TWILIO_API_BASE": fake_providers.base_url,
        "AT_USERNAME": fake.AT_USERNAME,
        "AT_API_KEY": fake.AT_API_KEY,
        "AT_SENDER_ID": fake.AT_SENDER_ID,
        "AT_API_BASE": fake_providers.base_url,
        "AT_WEBHOOK_KEY": AT_KEY,
        "LOG_LEVEL": "DEBUG",
    }


@pytest.fixture
def written_logs(app, caplog):
    """What the root handler (with its RedactPhonesFilter) writes, at DEBUG, and the records themselves."""
    root = logging.getLogger()
    [handler] = [h for h in root.handlers if any(isinstance(f, RedactPhonesFilter) for f in h.filters)]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    caplog.set_level(logging.DEBUG)
    try:
        yield stream, caplog
    finally:
        handler.setStream(previous)


@pytest.fixture
def net(session):
    for name, lat, lon, alt in PLACES:
        session.add(Place(name=name, lat=lat, lon=lon, alt_names=alt))
    built = factories.network(session)
    built["focal_point"].phone = FOCAL_POINT
    admin = User(username="admin", password_hash="!", role="admin", language="en")
    session.add(admin)
    session.flush()
    built["admin_id"] = admin.id
    built["admin_token"] = issue_token(session, admin)
    session.commit()
    built["phones"] = [
        FOCAL_POINT,
        REGISTRANT,
        STRANGER,
        *(r.phone for tier in ("tier1", "tier2", "tier3") for r in built[tier]),
    ]
    return built


def phone_forms(phone: str) -> list[str]:
    """A number as a log line could carry it: E.164, without +, national (0...), the subscriber digits."""
    digits = phone.lstrip("+")
    return [phone, digits, "0" + digits[3:], digits[3:]]


def leaks(text: str, phones: list[str], texts: list[str]) -> list[str]:
    found = [form for phone in phones for form in phone_forms(phone) if form in text]
    found += [t for t in texts if t.lower() in text.lower()]
    return found


def post_twilio(client, path: str, form: dict[str, str]):
    signature = RequestValidator(fake.TWILIO_AUTH_TOKEN).compute_signature(f"http://localhost{path}", form)
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature})


def post_at(client, path: str, form: dict[str, str]):
    return client.post(f"{path}?{urlencode({'key': AT_KEY})}", data=form)


def twilio_sms(sid: str, sender: str, body: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "AccountSid": fake.TWILIO_ACCOUNT_SID,
        "From": sender,
        "To": OUR_NUMBER,
        "Body": body,
    }


def at_sms(message_id: str, sender: str, text: str) -> dict[str, str]:
    return {"id": message_id, "from": sender, "to": "12345", "text": text, "date": "", "linkId": "l1"}


def run_every_flow(app, client, session, net, fake_providers, monkeypatch) -> list:
    """An alert, its escalation, a responder's OK, a registration, delivery reports, a failed send and
    a processing failure (in the engine and inline); returns every HTTP answer."""
    engine = app.extensions["alerts_engine"]
    answers = []
    # A focal point's alert, through the webhook and the engine: incident, pages, receipt.
    answers.append(
        post_twilio(client, "/webhooks/twilio/sms", twilio_sms("SM" + "1" * 32, FOCAL_POINT, ALERT))
    )
    engine.run_once()
    # A responder's OK over Africa's Talking.
    responder = net["tier1"][0].phone
    answers.append(post_at(client, "/webhooks/africastalking/sms", at_sms("ATXid_ok", responder, "OK 1")))
    engine.run_once()
    # A registration from an unknown number, and a stranger's alert.
    answers.append(
        post_at(client, "/webhooks/africastalking/sms", at_sms("ATXid_reg", REGISTRANT, REGISTRATION))
    )
    answers.append(
        post_at(client, "/webhooks/africastalking/sms", at_sms("ATXid_str", STRANGER, SECOND_ALERT))
    )
    engine.run_once()
    # Delivery reports for what went out: delivered, and failed with the provider's reason.
    session.expire_all()
    sent = session.scalars(
        select(OutboundMessage).where(OutboundMessage.provider_message_id.is_not(None))
    ).all()
    session.commit()
    for n, message in enumerate(sent):
        if message.provider == "twilio":
            form = {
                "MessageSid": message.provider_message_id,
                "MessageStatus": "undelivered",
                "ErrorCode": "30003",
            }
            answers.append(post_twilio(client, "/webhooks/twilio/status", {**form, "To": message.recipient}))
        else:
            form = {"id": message.provider_message_id, "status": "Failed", "failureReason": "UserInBlacklist"}
            answers.append(post_at(client, "/webhooks/africastalking/delivery", {**form, "phoneNumber": "x"}))
        if n > 3:
            break
    # A failed send: Twilio refuses the number (its error quotes it), Africa's Talking too.
    fake_providers.script("twilio", ["reject:21211"] * 5)
    fake_providers.script("africastalking", ["status:403"] * 5)
    answers.append(
        post_twilio(client, "/webhooks/twilio/sms", twilio_sms("SM" + "2" * 32, FOCAL_POINT, SECOND_ALERT))
    )
    engine.run_once()

    # A processing failure whose exception quotes the sender and the text, in the engine and inline.
    def explode(db, message_id, **_kwargs):
        message = db.get(InboundMessage, message_id)
        raise ValueError(f"cannot parse {message.text!r} from {message.sender} ({message.sender[4:]})")

    def explode_batch(db, messages, **kwargs):
        explode(db, messages[0].id, **kwargs)

    monkeypatch.setattr(pipeline, "process_message", explode)
    monkeypatch.setattr(pipeline, "process_messages", explode_batch)
    answers.append(
        post_twilio(client, "/webhooks/twilio/sms", twilio_sms("SM" + "3" * 32, FOCAL_POINT, FAILING_ALERT))
    )
    engine.process_inbound()
    app.config["TWILIO_REPLY_WITH_RECEIPT"] = True
    answers.append(
        post_twilio(client, "/webhooks/twilio/sms", twilio_sms("SM" + "4" * 32, FOCAL_POINT, FAILING_ALERT))
    )
    app.config["TWILIO_REPLY_WITH_RECEIPT"] = False
    monkeypatch.undo()
    assert_the_flows_happened(session)
    return answers


def assert_the_flows_happened(session) -> None:
    """Otherwise the absence of leaks would prove nothing."""
    session.expire_all()
    states = dict(session.execute(select(InboundMessage.provider_message_id, InboundMessage.state)).all())
    outbound = session.execute(select(OutboundMessage.purpose, OutboundMessage.state)).all()
    incident = session.scalar(select(Incident).where(Incident.number == 1))
    registrant = session.scalar(select(FocalPoint).where(FocalPoint.phone == REGISTRANT))
    session.commit()
    assert states["SM" + "1" * 32] == InboundState.PROCESSED
    assert states["ATXid_ok"] == InboundState.PROCESSED
    assert incident is not None
    assert incident.acknowledged_at is not None
    assert registrant is not None
    assert {state for _, state in outbound} >= {OutboundState.FAILED}, outbound
    assert states["SM" + "3" * 32] == states["SM" + "4" * 32] == InboundState.FAILED


def test_logs_never_show_a_phone_number_or_a_message_text(
    app, client, session, net, fake_providers, monkeypatch, written_logs
):
    stream, caplog = written_logs

    run_every_flow(app, client, session, net, fake_providers, monkeypatch)

    session.expire_all()
    bodies = [b for b in session.scalars(select(OutboundMessage.body)) if len(b) >= 20]
    session.commit()
    texts = [ALERT, SECOND_ALERT, FAILING_ALERT, REGISTRATION, *bodies]
    written = stream.getvalue()
    assert len(caplog.records) > 10, "the flows logged nothing: the check would prove nothing"
    assert leaks(written, net["phones"], texts) == []
    final = "\n".join(r.getMessage() for r in caplog.records)
    assert leaks(final, net["phones"], texts) == []


def test_a_failed_inbound_messages_stored_error_carries_no_phone_or_text(
    app, client, session, net, fake_providers, monkeypatch
):
    run_every_flow(app, client, session, net, fake_providers, monkeypatch)

    session.expire_all()
    failed = session.scalars(select(InboundMessage).where(InboundMessage.state == InboundState.FAILED)).all()
    session.commit()
    assert len(failed) == 2  # the engine's and the inline processing failure
    for message in failed:
        assert message.error.startswith("ValueError")
        assert leaks(message.error, net["phones"], [FAILING_ALERT]) == []


def test_a_database_error_never_quotes_the_sender_or_the_text(database):
    """An exception's text is what a job's traceback or an error page would show."""
    row = {
        "provider": "twilio",
        "provider_message_id": "SM-duplicate",
        "sender": "+243815550077",
        "recipient": OUR_NUMBER,
        "text": "Hommes armes a Kalembe, secret",
        "received_at": datetime.now(UTC),
        "raw": {},
        "state": InboundState.RECEIVED,
    }
    with database.engine.begin() as connection:
        connection.execute(insert(InboundMessage), row)
    with pytest.raises(IntegrityError) as raised, database.engine.begin() as connection:
        connection.execute(insert(InboundMessage), row)  # the same provider message again

    assert "inbound_messages" in str(raised.value)  # the statement is still named
    assert "+243815550077" not in str(raised.value)
    assert "Kalembe" not in str(raised.value)
    with database.engine.begin() as connection:
        connection.execute(delete(InboundMessage))


def secrets_of(net) -> dict[str, str]:
    return {
        "TWILIO_AUTH_TOKEN": fake.TWILIO_AUTH_TOKEN,
        "AT_WEBHOOK_KEY": AT_KEY,
        "AT_API_KEY": fake.AT_API_KEY,
        "SECRET_KEY": SECRET_KEY,
        "API token": net["admin_token"],
        "API token hash": issue_token.__globals__["token_hash"](net["admin_token"]),
    }


def every_page_and_api_answer(app, net) -> list:
    """Every GET route as an admin (who sees the most), with a browser session and with the API token."""
    client = app.test_client()
    with client.session_transaction() as browser:
        browser["user_id"] = net["admin_id"]
    bearer = {"Authorization": f"Bearer {net['admin_token']}"}
    answers = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static":
            continue
        path = rule.rule.replace("<int:number>", "1").replace("<kind>", "focal-points")
        path = path.replace("<int:policy_id>", "1").replace("<path:unknown>", "nothing")
        answers.append(client.get(path, headers=bearer if path.startswith("/api/") else {}))
    return answers


def test_no_secret_appears_in_logs_pages_or_api_answers(
    app, client, session, net, fake_providers, monkeypatch, written_logs
):
    stream, caplog = written_logs

    answers = run_every_flow(app, client, session, net, fake_providers, monkeypatch)
    answers += every_page_and_api_answer(app, net)

    assert sum(1 for a in answers if a.status_code == 200) > 20
    secrets = secrets_of(net)
    for answer in answers:
        shown = answer.get_data(as_text=True) + str(answer.headers)
        assert [name for name, value in secrets.items() if value in shown] == [], answer.request.path
    written = stream.getvalue() + "\n".join(r.getMessage() for r in caplog.records)
    assert [name for name, value in secrets.items() if value in written] == []


def test_the_access_log_never_shows_the_query_string():
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    atoms = set(re.findall(r"%\(([^)]+)\)s", str(config["access_log_format"])))
    # r: the request line and q: the query string both carry ?key=; {...}i headers could carry a referer.
    assert atoms
    assert not atoms & {"r", "q", "f", "{referer}i", "{Referer}i"}
    assert "U" in atoms  # the path, without its query string
