"""The alert pipeline end to end on a real database: stored message in, incident and outbox rows out."""

from __future__ import annotations

import threading
from datetime import timedelta
from itertools import count

import pytest
from sqlalchemy import func, select

from alerts.inbound import InboundForm, store_inbound
from alerts.models import InboundMessage, Incident, IncidentEvent, OutboundMessage, Place, Report
from alerts.pipeline import PipelineSettings, process_message
from alerts.states import InboundState, IncidentStatus
from tests import factories
from tests.conftest import T0, postgresql_only

SETTINGS = PipelineSettings(sender_rate_limit=5, reply_cap_per_hour=20)
_ids = count(1)
PLACES = [
    ("Kitchanga", -1.18, 28.92, "Kitshanga|Kichanga"),
    ("Mweso", -1.10, 28.94, ""),
    ("Masisi", -1.40, 28.8167, ""),
    ("Nyabiondo", -1.37, 28.76, ""),
    ("Rubaya", -1.56, 28.88, ""),
    ("Kalungu", -1.52, 28.95, ""),
    ("Kalungu", -2.95, 28.90, ""),
]


@pytest.fixture
def net(session):
    for name, lat, lon, alt in PLACES:
        session.add(Place(name=name, lat=lat, lon=lon, alt_names=alt))
    from alerts.incidents import next_number

    next_number(session, "places_version")
    built = factories.network(session)
    built["second"] = factories.focal_point(session, built["zone"], lat=-1.40, lon=28.8167)
    built["third"] = factories.focal_point(session, built["zone"], lat=-1.37, lon=28.76)
    session.commit()
    return built


def receive(session, sender, text, at=T0, settings=SETTINGS):
    phone = sender if isinstance(sender, str) else sender.phone
    message_id, _ = store_inbound(
        session,
        InboundForm("twilio", f"SM{next(_ids):032d}", phone, "+15005550006", text, at, {"Body": text}),
    )
    return process_message(session, message_id, now=at, settings=settings)


def _incidents(session):
    return session.scalars(select(Incident).order_by(Incident.id)).all()


def _events(session, incident):
    return session.scalars(
        select(IncidentEvent).where(IncidentEvent.incident_id == incident.id).order_by(IncidentEvent.id)
    ).all()


def test_a_focal_points_alert_opens_a_located_incident_and_owes_a_receipt(session, net):
    outcome = receive(session, net["focal_point"], "Attaque a Kitchanga ce matin, 20 hommes armes")
    [incident] = _incidents(session)
    assert (incident.category, incident.severity, incident.count) == ("attack", "critical", 20)
    assert incident.place_name == "Kitchanga"
    assert incident.zone_id == net["zone"].id
    assert incident.status == IncidentStatus.OPEN
    report = session.scalar(select(Report))
    assert report.located_by == "gazetteer"
    receipt = session.scalar(select(OutboundMessage).where(OutboundMessage.purpose == "receipt"))
    assert receipt.recipient == net["focal_point"].phone
    assert str(incident.number) in receipt.body
    assert outcome.reply == receipt.body
    assert outcome.reply_outbound_id == receipt.id
    assert [e.kind for e in _events(session, incident)] == ["opened", "located"]


def test_the_same_sender_repeating_within_30_minutes_is_attached_and_counted_once(session, net):
    receive(session, net["focal_point"], "attaque a Kitchanga 20 hommes armes")
    receive(session, net["focal_point"], "attaque a kitchanga 20 hommes armés", at=T0 + timedelta(minutes=4))
    [incident] = _incidents(session)
    reports = session.scalars(select(Report).where(Report.incident_id == incident.id)).all()
    assert [r.is_repeat for r in reports] == [False, True]
    assert _events(session, incident)[-1].detail.startswith("repeat:")


def test_reports_from_other_focal_points_corroborate_and_raise_confidence(session, net):
    receive(session, net["focal_point"], "attaque a Kitchanga 20 hommes armes")
    [incident] = _incidents(session)
    before = incident.confidence
    receive(session, net["second"], "Attaque en cours a Kitshanga", at=T0 + timedelta(minutes=14))
    assert len(_incidents(session)) == 1
    session.refresh(incident)
    assert incident.confidence > before
    merged = next(e for e in _events(session, incident) if e.kind == "merged")
    assert merged.detail.startswith("merged: ")
    assert "14 min" in merged.detail
    assert " km" in merged.detail


def test_far_apart_or_incompatible_or_late_reports_open_new_incidents(session, net):
    receive(session, net["focal_point"], "attaque a Kitchanga 20 hommes armes")
    receive(session, net["second"], "attaque a Rubaya", at=T0 + timedelta(minutes=5))  # ~40 km away
    receive(
        session, net["third"], "deplacement des familles a Kitchanga", at=T0 + timedelta(minutes=6)
    )  # displacement
    receive(session, net["second"], "attaque a Kitchanga", at=T0 + timedelta(hours=7))  # outside 6 h
    assert len(_incidents(session)) == 4


def test_a_more_severe_report_upgrades_the_incident_and_restarts_escalation(session, net):
    receive(session, net["focal_point"], "des hommes armes vus a Kitchanga")
    [incident] = _incidents(session)
    assert incident.severity == "high"
    incident.policy_snapshot = [{"tier": 1}]
    session.commit()
    receive(session, net["second"], "3 personnes tuees a Kitchanga", at=T0 + timedelta(minutes=20))
    session.refresh(incident)
    assert (incident.category, incident.severity, incident.count) == ("killing", "critical", 3)
    assert incident.escalation_generation == 1
    assert incident.policy_snapshot is None
    assert "upgraded" in [e.kind for e in _events(session, incident)]


def test_a_report_located_only_by_home_carries_less_confidence(session, net):
    receive(session, net["focal_point"], "attaque a Kitchanga")
    receive(session, net["second"], "attaque ici maintenant", at=T0 + timedelta(minutes=1))
    named, home = session.scalars(select(Report).order_by(Report.id)).all()
    assert home.located_by == "home"
    assert home.confidence < named.confidence


def test_the_nearest_of_two_places_with_the_same_name_is_chosen(session, net):
    receive(session, net["focal_point"], "pillage a Kalungu")
    report = session.scalar(select(Report))
    assert report.lat == pytest.approx(-1.52)


def test_an_unknown_number_is_stored_unverified_and_gets_no_reply(session, net):
    outcome = receive(session, "+243990000111", "attaque a Mweso")
    message = session.scalar(select(InboundMessage))
    assert message.state == InboundState.UNVERIFIED
    assert message.sender_kind == "unknown"
    assert outcome.reply is None
    assert _incidents(session) == []


def test_a_sender_over_the_rate_limit_is_stored_and_marked_not_escalated(session, net):
    for minute in range(SETTINGS.sender_rate_limit):
        receive(session, net["focal_point"], f"attaque a Mweso {minute}", at=T0 + timedelta(minutes=minute))
    outcome = receive(session, net["focal_point"], "attaque a Rubaya", at=T0 + timedelta(minutes=6))
    assert outcome.decision == "rate limited"
    states = session.scalars(select(InboundMessage.state).order_by(InboundMessage.id)).all()
    assert states[-1] == InboundState.RATE_LIMITED
    assert all(i.place_name != "Rubaya" for i in _incidents(session))


def test_processing_a_message_twice_does_nothing_the_second_time(session, net):
    receive(session, net["focal_point"], "attaque a Mweso")
    message_id = session.scalar(select(InboundMessage.id))
    again = process_message(session, message_id, now=T0, settings=SETTINGS)
    assert again.decision == "already processed"
    assert session.scalar(select(func.count()).select_from(Report)) == 1


def test_a_focal_point_test_gets_an_answer_in_their_language(session, net):
    net["focal_point"].language = "sw"
    session.commit()
    outcome = receive(session, net["focal_point"], "TEST")
    assert outcome.reply is not None
    assert "Asante" in outcome.reply
    assert _incidents(session) == []


@pytest.mark.parametrize(
    ("text", "reply_contains", "status"),
    [
        ("OK {n}", "{n}", IncidentStatus.ACKNOWLEDGED),
        ("ok{n}", "{n}", IncidentStatus.ACKNOWLEDGED),
        ("FIN {n}", "cloture", IncidentStatus.RESOLVED),
        ("FAUX {n}", "fausse alerte", IncidentStatus.FALSE_ALARM),
        ("STATUS {n}", "rapport", IncidentStatus.OPEN),
        ("OK 99999", "99999 introuvable", IncidentStatus.OPEN),
        ("OK", "manquant", IncidentStatus.OPEN),
        ("AIDE", "OK n", IncidentStatus.OPEN),
    ],
)
def test_responder_commands(session, net, text, reply_contains, status):
    receive(session, net["focal_point"], "attaque a Mweso")
    [incident] = _incidents(session)
    responder = net["tier1"][0]
    outcome = receive(session, responder, text.format(n=incident.number), at=T0 + timedelta(minutes=3))
    session.refresh(incident)
    assert incident.status == status
    assert reply_contains.format(n=incident.number) in outcome.reply


def test_a_responder_of_another_zone_cannot_act(session, net):
    receive(session, net["focal_point"], "attaque a Mweso")
    [incident] = _incidents(session)
    elsewhere = factories.responder(session, 1, [factories.zone(session, "Beni", 0.49, 29.47, 40)])
    session.commit()
    outcome = receive(session, elsewhere, f"OK {incident.number}", at=T0 + timedelta(minutes=1))
    assert "pas votre zone" in outcome.reply
    session.refresh(incident)
    assert incident.status == IncidentStatus.OPEN


def test_acknowledgement_and_closing_tell_the_reporter(session, net):
    receive(session, net["focal_point"], "attaque a Mweso")
    [incident] = _incidents(session)
    receive(session, net["tier1"][0], f"OK {incident.number}", at=T0 + timedelta(minutes=3))
    receive(session, net["tier1"][0], f"FIN {incident.number}", at=T0 + timedelta(minutes=50))
    to_reporter = session.scalars(
        select(OutboundMessage.idempotency_key).where(OutboundMessage.recipient == net["focal_point"].phone)
    ).all()
    assert any(k.startswith("reporter_acknowledged:") for k in to_reporter)
    assert any(k.startswith("reporter_closed:") for k in to_reporter)


@postgresql_only
def test_two_reports_of_one_event_at_the_same_moment_make_one_incident(app, net, database):
    barrier = threading.Barrier(2)
    ids = []
    with database.session() as s:
        for sender in (net["focal_point"], net["second"]):
            ids.append(
                store_inbound(
                    s, InboundForm("twilio", f"SMC{next(_ids)}", sender.phone, "", "attaque a Mweso", T0, {})
                )[0]
            )
    errors = []

    def work(message_id):
        try:
            with database.session() as s:
                barrier.wait()
                process_message(s, message_id, now=T0, settings=SETTINGS)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(Incident)) == 1
        assert s.scalar(select(func.count()).select_from(Report)) == 2
