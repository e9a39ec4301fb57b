"""The dispatcher sends the outbox through the real SDKs against a local fake API, retries, fails over."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from alerts.inbound import InboundForm, store_inbound
from alerts.models import EscalationStep, InboundMessage, IncidentEvent, OutboundMessage
from alerts.outbox import enqueue
from alerts.states import InboundState, OutboundState, StepState
from escalation.dispatcher import BACKLOG_HOLD, MAX_ATTEMPTS, SEND_LEASE, backoff, claim, dispatch
from escalation.engine import sweep
from escalation.gateways import AfricasTalkingGateway, TwilioGateway
from tests import factories
from tests.conftest import T0
from tests.fakes.providers import (
    AT_API_KEY,
    AT_SENDER_ID,
    AT_USERNAME,
    CLIENT_TIMEOUT_SECONDS,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_FROM,
)

TO = "+243970001234"


@pytest.fixture
def gateways(fake_providers):
    return [
        TwilioGateway(
            TWILIO_ACCOUNT_SID,
            TWILIO_AUTH_TOKEN,
            TWILIO_FROM,
            api_base=fake_providers.base_url,
            timeout=CLIENT_TIMEOUT_SECONDS,
        ),
        AfricasTalkingGateway(
            AT_USERNAME,
            AT_API_KEY,
            AT_SENDER_ID,
            api_base=fake_providers.base_url,
            timeout=CLIENT_TIMEOUT_SECONDS,
        ),
    ]


class Clock:
    """Time as a parameter: the test moves it."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def _queue(session, key="k1", body="ALERTE 1: ATTAQUE Mweso. Repondez OK 1", **fields):
    message = enqueue(
        session,
        recipient=TO,
        body=body,
        purpose=fields.pop("purpose", "page"),
        idempotency_key=key,
        now=T0,
        **fields,
    ).message
    session.commit()
    return message


def _reload(session, message):
    session.commit()
    return session.get(OutboundMessage, message.id, populate_existing=True)


def test_a_queued_message_is_sent_through_the_first_gateway(session, database, gateways, fake_providers):
    message = _queue(session)
    stats = dispatch(database.sessionmaker, gateways, Clock(T0))
    message = _reload(session, message)
    assert stats.sent == 1
    assert message.state == OutboundState.SENT
    assert message.provider == "twilio"
    assert message.provider_message_id.startswith("SM")
    assert [(r.provider, r.to, r.body) for r in fake_providers.received] == [("twilio", TO, message.body)]


@pytest.mark.parametrize("failure", ["500", "429", "timeout"])
def test_a_retryable_failure_fails_over_to_the_next_gateway(
    session, database, gateways, fake_providers, failure
):
    fake_providers.script("twilio", [failure])
    message = _queue(session)
    dispatch(database.sessionmaker, gateways, Clock(T0))
    message = _reload(session, message)
    assert message.state == OutboundState.SENT
    assert message.provider == "africastalking"
    assert "twilio" in message.last_error


def test_when_every_gateway_fails_the_message_waits_with_backoff_then_goes(
    session, database, gateways, fake_providers
):
    fake_providers.script("twilio", ["503", "ok"])
    fake_providers.script("africastalking", ["503"])
    message = _queue(session)
    clock = Clock(T0)
    dispatch(database.sessionmaker, gateways, clock)
    message = _reload(session, message)
    assert message.state == OutboundState.QUEUED
    assert message.next_attempt_at == T0 + backoff(1)
    clock.now = T0 + backoff(1) - timedelta(seconds=1)
    assert dispatch(database.sessionmaker, gateways, clock).sent == 0
    clock.now = T0 + backoff(1)
    assert dispatch(database.sessionmaker, gateways, clock).sent == 1
    assert _reload(session, message).attempts == 2


def test_backoff_grows_and_is_capped():
    delays = [backoff(n) for n in range(1, MAX_ATTEMPTS + 3)]
    assert delays == sorted(delays)
    assert delays[-1] == delays[-2]


def test_a_permanent_error_stops_shows_on_the_incident_and_hastens_the_next_step(
    session, database, gateways, fake_providers
):
    net = factories.network(session)
    incident = factories.incident(session, net["zone"])
    session.commit()
    sweep(database.sessionmaker, T0, "w1")
    fake_providers.script("twilio", ["reject:21211"] * 3)
    dispatch(database.sessionmaker, gateways, Clock(T0 + timedelta(seconds=5)))
    session.commit()
    failed = session.scalars(
        select(OutboundMessage).where(OutboundMessage.state == OutboundState.FAILED)
    ).all()
    assert len(failed) == 3
    kinds = session.scalars(select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident.id)).all()
    assert "send_failed" in kinds
    assert "escalation_hastened" in kinds
    tier3 = session.scalar(
        select(EscalationStep).where(EscalationStep.tier == 3).order_by(EscalationStep.due_at).limit(1)
    )
    assert tier3.due_at == T0 + timedelta(seconds=5)
    assert tier3.state == StepState.PENDING


def test_a_message_whose_sender_died_mid_send_is_sent_again_after_its_lease(session, database, gateways):
    message = _queue(session)
    with database.session() as worker:
        assert [m[0] for m in claim(worker, T0, 10)] == [message.id]  # then the worker dies
    assert dispatch(database.sessionmaker, gateways, Clock(T0 + timedelta(seconds=30))).sent == 0
    stats = dispatch(database.sessionmaker, gateways, Clock(T0 + SEND_LEASE))
    assert stats.recovered == 1
    assert stats.sent == 1
    assert _reload(session, message).attempts == 2  # the possible duplicate is visible


def test_two_dispatchers_never_claim_the_same_message(session, database):
    for n in range(5):
        _queue(session, key=f"k{n}")
    with database.session() as a, database.session() as b:
        first = claim(a, T0, 3)
        second = claim(b, T0, 10)
    assert len(first) == 3
    assert len(second) == 2
    assert not {m[0] for m in first} & {m[0] for m in second}


def _unprocessed_alert(session):
    form = InboundForm("twilio", "SMbacklog", "+243970009999", "+243990000001", "ATTAQUE Mweso", T0, {})
    message_id, _ = store_inbound(session, form)
    session.commit()
    return session.get(InboundMessage, message_id)


def test_while_alerts_wait_to_be_processed_only_pages_are_sent(session, database):
    receipt = _queue(session, key="r1", body="Alerte recue", purpose="receipt")
    page = _queue(session, key="p1")
    waiting = _unprocessed_alert(session)
    with database.session() as worker:
        assert [m[0] for m in claim(worker, T0, 10)] == [page.id]
    with database.session() as worker:  # the backlog is gone: the receipt goes
        worker.get(InboundMessage, waiting.id).state = InboundState.PROCESSED
        worker.commit()
    with database.session() as worker:
        assert [m[0] for m in claim(worker, T0, 10)] == [receipt.id]


def test_a_receipt_held_behind_a_backlog_goes_after_the_hold(session, database):
    receipt = _queue(session, key="r1", body="Alerte recue", purpose="receipt")
    _unprocessed_alert(session)
    with database.session() as worker:
        assert claim(worker, T0 + BACKLOG_HOLD - timedelta(seconds=1), 10) == []
        assert [m[0] for m in claim(worker, T0 + BACKLOG_HOLD, 10)] == [receipt.id]


def test_automatic_replies_to_one_number_are_capped_per_hour(session):
    results = [
        enqueue(
            session,
            recipient=TO,
            body="recu",
            purpose="receipt",
            idempotency_key=f"r{n}",
            now=T0,
            reply_cap_per_hour=3,
        )
        for n in range(5)
    ]
    assert [r.reason for r in results] == ["", "", "", "reply cap", "reply cap"]
    later = enqueue(
        session,
        recipient=TO,
        body="recu",
        purpose="receipt",
        idempotency_key="r9",
        now=T0 + timedelta(hours=1, seconds=1),
        reply_cap_per_hour=3,
    )
    assert later.message is not None


def test_outbox_json_lists_messages_newest_first_with_the_documented_fields(app, session):
    net = factories.network(session)
    incident = factories.incident(session, net["zone"])
    _queue(session, key="old", body="first")
    enqueue(
        session,
        recipient=TO,
        body="second",
        purpose="page",
        idempotency_key="new",
        now=T0 + timedelta(minutes=1),
        incident_id=incident.id,
    )
    session.commit()
    result = app.test_cli_runner().invoke(args=["outbox", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["body"] for r in rows] == ["second", "first"]
    assert set(rows[0]) >= {"to", "body", "state", "incident", "created_at", "sent_at", "gateway"}
    assert rows[0]["incident"] == incident.number
    assert rows[1]["incident"] is None
    assert TO not in result.output


def test_an_undelivered_page_counts_as_no_answer_and_the_next_step_falls_due_now(session, database, gateways):
    from alerts.delivery import apply_delivery_report

    net = factories.network(session)
    incident = factories.incident(session, net["zone"])
    session.commit()
    sweep(database.sessionmaker, T0, "w1")
    dispatch(database.sessionmaker, gateways, Clock(T0))
    session.commit()
    page = session.scalar(select(OutboundMessage).where(OutboundMessage.purpose == "page").limit(1))
    later = T0 + timedelta(minutes=2)
    assert apply_delivery_report(
        session, "twilio", page.provider_message_id, "undelivered", "30003", later
    ) == ("applied")
    tier3 = session.scalar(
        select(EscalationStep).where(EscalationStep.tier == 3).order_by(EscalationStep.due_at).limit(1)
    )
    assert tier3.due_at == later
    kinds = session.scalars(select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident.id)).all()
    assert "not_delivered" in kinds
    assert "escalation_hastened" in kinds
    sweep(database.sessionmaker, later, "w1")
    session.commit()
    assert net["tier3"][0].id in {m.responder_id for m in session.scalars(select(OutboundMessage))}
