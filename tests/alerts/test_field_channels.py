"""Field channels: missed-call alerts, SMS self-registration and line checks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from alerts.models import FocalPoint, Incident, IncidentEvent, OutboundMessage, Place, Report
from alerts.queries import network_health
from alerts.states import FocalPointStatus, InboundState
from escalation.engine import sweep
from escalation.line_checks import send_line_checks
from tests import factories
from tests.alerts.test_pipeline import PLACES, SETTINGS, receive
from tests.conftest import T0


@pytest.fixture
def net(session):
    for name, lat, lon, alt in PLACES:
        session.add(Place(name=name, lat=lat, lon=lon, alt_names=alt))
    from alerts.incidents import next_number

    next_number(session, "places_version")
    built = factories.network(session)
    session.commit()
    return built


def beep(session, sender, at=T0):

    from alerts.inbound import InboundForm, store_inbound
    from alerts.pipeline import process_message

    phone = sender if isinstance(sender, str) else sender.phone
    message_id, _ = store_inbound(
        session,
        InboundForm("twilio", f"CA{at.timestamp()}{phone}", phone, "+15005550006", "", at, {}, "voice"),
    )
    return process_message(session, message_id, now=at, settings=SETTINGS)


def _events(session, incident):
    return session.scalars(select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident.id)).all()


def test_a_beep_opens_a_high_incident_at_home_with_a_call_back_task(session, net):
    focal_point = net["focal_point"]
    outcome = beep(session, focal_point)
    [incident] = session.scalars(select(Incident)).all()
    assert (incident.category, incident.severity) == ("unknown", "high")
    assert (incident.lat, incident.lon) == (focal_point.home_lat, focal_point.home_lon)
    assert incident.callback_pending
    assert "callback_needed" in _events(session, incident)
    assert outcome.incident_number == incident.number


def test_the_tier_1_page_for_a_beep_names_the_village_and_the_number_to_call(session, net, database):
    beep(session, net["focal_point"])
    sweep(database.sessionmaker, T0, "w")
    session.commit()
    page = session.scalar(select(OutboundMessage).where(OutboundMessage.purpose == "page").limit(1))
    assert page.body.startswith("BEEP 1")
    assert net["focal_point"].phone in page.body
    assert page.segments == 1


def test_several_beeps_then_an_sms_make_one_incident_that_takes_the_sms_category(session, net):
    focal_point = net["focal_point"]
    beep(session, focal_point)
    beep(session, focal_point, at=T0 + timedelta(minutes=2))
    receive(session, focal_point, "attaque a Kitchanga, 4 morts", at=T0 + timedelta(minutes=9))
    [incident] = session.scalars(select(Incident)).all()
    assert incident.category == "killing"
    assert incident.severity == "critical"
    assert incident.escalation_generation == 1  # graver than the beep: escalation restarts
    assert "categorised" in _events(session, incident)
    assert len(session.scalars(select(Report)).all()) == 3


def test_an_appel_sms_records_the_call_back_and_sets_the_category(session, net):
    beep(session, net["focal_point"])
    outcome = receive(
        session,
        net["tier1"][0],
        "APPEL 1 ils ont enleve 3 enfants, partis vers Pinga",
        at=T0 + timedelta(minutes=5),
    )
    incident = session.scalar(select(Incident))
    assert not incident.callback_pending
    assert (incident.category, incident.severity) == ("abduction", "critical")
    callback = session.scalar(select(IncidentEvent).where(IncidentEvent.kind == "callback"))
    assert "enleve 3 enfants" in callback.detail
    assert callback.actor.startswith("responder ")
    assert "1" in outcome.reply


def test_a_beep_from_an_unknown_number_is_stored_unverified(session, net):
    from alerts.models import InboundMessage

    beep(session, "+243990001234")
    assert session.scalars(select(Incident)).all() == []
    assert session.scalar(select(InboundMessage.state)) == InboundState.UNVERIFIED


def test_reg_from_an_unknown_number_creates_a_pending_located_focal_point(session, net):
    outcome = receive(session, "+243990004321", "REG Jean Bosco Mweso")
    focal_point = session.scalar(select(FocalPoint).where(FocalPoint.phone == "+243990004321"))
    assert focal_point.status == FocalPointStatus.PENDING
    assert focal_point.name == "Jean Bosco"
    assert (focal_point.home_lat, focal_point.home_lon) == (-1.10, 28.94)
    assert focal_point.zone_id == net["zone"].id
    assert "Mweso" in outcome.reply  # the reply says which village it awaits approval for
    assert network_health(session, T0, 7).pending_registrations == [focal_point]


def test_a_pending_focal_points_alert_is_held_until_approved(app, session, net):
    receive(session, "+243990004321", "ENREG Neema Mweso")
    receive(session, "+243990004321", "attaque a Mweso", at=T0 + timedelta(minutes=1))
    assert session.scalars(select(Incident)).all() == []
    session.commit()  # end the test's read snapshot before another connection writes
    result = app.test_cli_runner().invoke(args=["focal-points", "approve", "+243990004321"])
    assert result.exit_code == 0, result.output
    receive(session, "+243990004321", "attaque a Mweso", at=T0 + timedelta(minutes=5))
    assert len(session.scalars(select(Incident)).all()) == 1


def test_a_rejected_registration_stays_out(app, session, net):
    receive(session, "+243990004321", "REG Neema Mweso")
    session.commit()
    assert app.test_cli_runner().invoke(args=["focal-points", "reject", "0990004321"]).exit_code == 0
    receive(session, "+243990004321", "attaque a Mweso", at=T0 + timedelta(minutes=5))
    assert session.scalars(select(Incident)).all() == []


def test_reg_without_a_village_gets_the_instructions(session, net):
    outcome = receive(session, "+243990004321", "REG")
    assert "REG" in outcome.reply
    assert session.scalar(select(FocalPoint).where(FocalPoint.phone == "+243990004321")) is None


def _silent(session, zone, days_ago, **fields):
    return factories.focal_point(session, zone, last_seen_at=T0 - timedelta(days=days_ago), **fields)


def test_line_checks_ask_the_silent_once_per_period_within_a_daily_cap(session, net):
    net["focal_point"].last_seen_at = T0
    quiet = [_silent(session, net["zone"], days) for days in (30, 20, 15)]
    _silent(session, net["zone"], 3)
    session.commit()
    assert send_line_checks(session, T0, default_days=14, daily_cap=2) == 2
    asked = {m.focal_point_id for m in session.scalars(select(OutboundMessage))}
    assert asked == {quiet[0].id, quiet[1].id}  # the longest silent first
    assert send_line_checks(session, T0 + timedelta(hours=1), default_days=14, daily_cap=2) == 0  # cap
    assert send_line_checks(session, T0 + timedelta(days=1, minutes=1), default_days=14, daily_cap=2) == 1
    assert send_line_checks(session, T0 + timedelta(days=2, minutes=2), default_days=14, daily_cap=2) == 0


def test_who_answers_a_line_check_is_alive_and_who_does_not_is_listed(session, net):
    net["focal_point"].last_seen_at = T0
    answers, stays_quiet = _silent(session, net["zone"], 30), _silent(session, net["zone"], 30)
    session.commit()
    send_line_checks(session, T0, default_days=14, daily_cap=10)
    receive(session, answers, "TEST", at=T0 + timedelta(hours=2))
    health = network_health(session, T0 + timedelta(days=2), 7)
    assert stays_quiet in health.unanswered_checks
    assert answers not in health.unanswered_checks


def test_a_zone_can_check_its_lines_more_often(session, net):
    net["zone"].line_check_days = 3
    net["focal_point"].last_seen_at = T0
    quiet = _silent(session, net["zone"], 5)
    session.commit()
    assert send_line_checks(session, T0, default_days=14, daily_cap=10) == 1
    assert session.scalar(select(OutboundMessage.focal_point_id)) == quiet.id
