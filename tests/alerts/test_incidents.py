"""Coordinators' merge and split, incident numbers, and throttled updates to responders."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from alerts import incidents
from alerts.models import EscalationStep, IncidentEvent, OutboundMessage, Report
from alerts.states import IncidentStatus, StepState
from escalation.engine import send_updates, sweep
from tests import factories
from tests.alerts.test_pipeline import PLACES, receive
from tests.conftest import T0, postgresql_only


@pytest.fixture
def net(session):
    from alerts.models import Place

    for name, lat, lon, alt in PLACES:
        session.add(Place(name=name, lat=lat, lon=lon, alt_names=alt))
    incidents.next_number(session, "places_version")
    built = factories.network(session)
    built["others"] = [factories.focal_point(session, built["zone"]) for _ in range(3)]
    session.commit()
    return built


def _kinds(session, incident):
    return session.scalars(select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident.id)).all()


def test_incident_numbers_are_short_consecutive_and_never_reused(session):
    numbers = [incidents.next_number(session) for _ in range(5)]
    assert numbers == [1, 2, 3, 4, 5]
    assert incidents.next_number(session, "other") == 1


def test_merging_moves_reports_keeps_the_graver_category_and_records_both(session, net):
    receive(session, net["focal_point"], "hommes armes a Mweso")
    receive(session, net["others"][0], "3 personnes tuees a Rubaya", at=T0 + timedelta(minutes=5))
    keep, absorb = session.scalars(select(incidents.Incident).order_by(incidents.Incident.id)).all()
    sweep(lambda: session, T0 + timedelta(minutes=6), "w")
    incidents.merge(session, keep, absorb, T0 + timedelta(minutes=7), "coordinator alice")
    session.commit()
    assert absorb.status == IncidentStatus.MERGED
    assert absorb.merged_into_id == keep.id
    assert (keep.category, keep.severity, keep.count) == ("killing", "critical", 3)
    assert len(session.scalars(select(Report).where(Report.incident_id == keep.id)).all()) == 2
    assert "merged_incident" in _kinds(session, keep)
    assert "merged_into" in _kinds(session, absorb)
    pending = session.scalars(
        select(EscalationStep).where(
            EscalationStep.incident_id == absorb.id, EscalationStep.state == StepState.PENDING
        )
    ).all()
    assert pending == []
    with pytest.raises(incidents.CannotMerge):
        incidents.merge(session, keep, absorb, T0, "again")


def test_splitting_a_report_opens_its_own_incident(session, net):
    receive(session, net["focal_point"], "attaque a Mweso")
    receive(session, net["others"][0], "attaque a Mweso, 4 morts", at=T0 + timedelta(minutes=3))
    [source] = session.scalars(select(incidents.Incident)).all()
    second = session.scalars(select(Report).order_by(Report.id)).all()[1]
    new = incidents.split(session, second, T0 + timedelta(minutes=10), "coordinator alice")
    session.commit()
    assert new.number != source.number
    assert second.incident_id == new.id
    assert new.policy_snapshot is None  # the engine escalates it like any new incident
    assert "split" in _kinds(session, source)
    with pytest.raises(incidents.CannotMerge, match="only one"):
        incidents.split(session, second, T0, "x")


def test_corroborations_give_responders_one_update_per_throttle_period(session, net):
    receive(session, net["focal_point"], "attaque a Mweso")
    sweep(lambda: session, T0, "w")
    paged = len(incidents.paged_responders(session, session.scalar(select(incidents.Incident))))
    for minute, sender in enumerate(net["others"], start=1):
        receive(session, sender, "attaque a Mweso", at=T0 + timedelta(minutes=minute))
    throttle = timedelta(minutes=5)
    assert send_updates(session, T0 + timedelta(minutes=3), throttle) == 1
    assert send_updates(session, T0 + timedelta(minutes=3), throttle) == 0  # nothing new since
    receive(
        session, net["second"] if "second" in net else net["tier1"][0], "OK 1", at=T0 + timedelta(minutes=4)
    )
    receive(
        session, factories.focal_point(session, net["zone"]), "attaque a Mweso", at=T0 + timedelta(minutes=4)
    )
    session.commit()
    assert send_updates(session, T0 + timedelta(minutes=6), throttle) == 0  # within 5 minutes of the last
    assert send_updates(session, T0 + timedelta(minutes=8), throttle) == 1
    updates = session.scalars(
        select(OutboundMessage).where(
            OutboundMessage.purpose == "update", OutboundMessage.idempotency_key.like("update:%")
        )
    ).all()
    assert len(updates) == 2 * paged
    assert all(u.body.startswith("MAJ ") for u in updates)


def test_merge_and_split_commands_for_coordinators(app, session, net):
    receive(session, net["focal_point"], "attaque a Mweso")
    receive(session, net["others"][0], "attaque a Rubaya", at=T0 + timedelta(minutes=1))
    receive(session, net["others"][1], "attaque a Rubaya", at=T0 + timedelta(minutes=2))
    session.commit()
    runner = app.test_cli_runner()
    merged = runner.invoke(args=["incidents", "merge", "1", "2", "--by", "alice"])
    assert merged.exit_code == 0, merged.output
    again = runner.invoke(args=["incidents", "merge", "1", "2", "--by", "alice"])
    assert again.exit_code != 0
    assert "already merged" in again.output
    missing = runner.invoke(args=["incidents", "merge", "1", "99", "--by", "alice"])
    assert "incident 99 not found" in missing.output
    report_id = session.scalars(select(Report.id).order_by(Report.id)).all()[-1]
    split = runner.invoke(args=["incidents", "split", str(report_id), "--by", "alice"])
    assert split.exit_code == 0, split.output
    assert "is now incident 3" in split.output
    session.commit()
    actors = session.scalars(
        select(IncidentEvent.actor).where(IncidentEvent.kind.in_(["merged_incident", "split"]))
    )
    assert set(actors) == {"coordinator alice"}


@postgresql_only
def test_holding_an_incident_does_not_block_another_transaction_writing_rows_about_it(database):
    """Two workers each holding one incident and writing a row about the other's deadlocked (the soak found
    it): an incident's lock must not block the foreign-key check of a report, timeline line or SMS."""
    from sqlalchemy import text

    with database.session() as setup:
        number = factories.incident(setup, factories.zone(setup)).number
        setup.commit()
    with database.session() as holder, database.session() as writer:
        incident = incidents.find_by_number(holder, number, for_update=True)
        holder.execute(text("SELECT 1"))  # the lock is held until `holder` ends
        writer.execute(text("SET LOCAL lock_timeout = '5s'"))
        incidents.record(writer, incident, "note", "written while another worker holds the incident", T0)
        writer.commit()  # with FOR UPDATE this waited for the holder, and failed after lock_timeout
        holder.commit()
    with database.read_sessionmaker() as session:
        kinds = session.scalars(select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident.id))
        assert list(kinds) == ["note"]
