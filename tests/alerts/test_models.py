"""Constraints live in the schema: the database itself refuses what the code must never write."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, StatementError

from alerts.models import FocalPoint, InboundMessage, Incident, IncidentEvent, Responder, Zone
from tests.conftest import ON_POSTGRESQL, T0


def _inbound(**overrides):
    fields = {
        "provider": "twilio",
        "provider_message_id": "SM1",
        "sender": "+243815550001",
        "received_at": T0,
    }
    return InboundMessage(**{**fields, **overrides})


def _incident(number=1, **overrides):
    fields = {
        "number": number,
        "category": "attack",
        "severity": "critical",
        "first_report_at": T0,
        "last_report_at": T0,
    }
    return Incident(**{**fields, **overrides})


def test_the_same_provider_message_id_is_stored_once(session):
    session.add(_inbound())
    session.commit()
    session.add(_inbound(text="retry"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_the_same_message_id_from_another_provider_is_a_different_message(session):
    session.add_all([_inbound(), _inbound(provider="africastalking")])
    session.commit()
    assert len(session.scalars(select(InboundMessage)).all()) == 2


@pytest.mark.parametrize("model", [FocalPoint, Responder])
def test_a_phone_number_belongs_to_one_person_of_each_kind(session, model):
    extra = {"tier": 1} if model is Responder else {}
    session.add(model(name="A", phone="+243815550001", **extra))
    session.commit()
    session.add(model(name="B", phone="+243815550001", **extra))
    with pytest.raises(IntegrityError):
        session.commit()


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (InboundMessage, {"state": "lost"}),
        (Incident, {"status": "forgotten"}),
        (Incident, {"category": "weather"}),
        (Incident, {"severity": "apocalyptic"}),
        (Incident, {"confidence": 1.5}),
        (Responder, {"tier": 4}),
        (FocalPoint, {"phone": "0815550001"}),
        (Zone, {"radius_km": 0}),
    ],
)
def test_check_constraints_refuse_impossible_values(session, model, fields):
    base = {
        InboundMessage: lambda: _inbound(),
        Incident: lambda: _incident(),
        Responder: lambda: Responder(name="R", phone="+243825550001", tier=1),
        FocalPoint: lambda: FocalPoint(name="F", phone="+243815550001"),
        Zone: lambda: Zone(name="Z", lat=-1.6, lon=29.2, radius_km=10),
    }[model]()
    for name, value in fields.items():
        setattr(base, name, value)
    session.add(base)
    with pytest.raises(IntegrityError):
        session.commit()


def test_foreign_keys_are_enforced(session):
    session.add(FocalPoint(name="F", phone="+243815550001", zone_id=9999))
    with pytest.raises(IntegrityError):
        session.commit()


def test_incident_numbers_are_unique(session):
    session.add(_incident(number=7))
    session.commit()
    session.add(_incident(number=7))
    with pytest.raises(IntegrityError):
        session.commit()


def test_times_come_back_timezone_aware_in_utc(session):
    from zoneinfo import ZoneInfo

    goma = T0.astimezone(ZoneInfo("Africa/Lubumbashi"))
    session.add(_inbound(received_at=goma))
    session.commit()
    session.expunge_all()
    stored = session.scalar(select(InboundMessage))
    assert stored.received_at == T0
    assert stored.received_at.utcoffset() == timedelta(0)


def test_a_naive_time_is_refused(session):
    session.add(_inbound(received_at=datetime(2026, 1, 1)))  # noqa: DTZ001 - the point of the test
    with pytest.raises(StatementError, match="naive datetime"):
        session.commit()


def test_the_incident_timeline_is_append_only(session):
    incident = _incident()
    session.add(incident)
    session.flush()
    event = IncidentEvent(incident_id=incident.id, at=T0, kind="opened", detail="new incident")
    session.add(event)
    session.commit()
    event.detail = "rewritten"
    with pytest.raises(ValueError, match="append-only"):
        session.commit()
    session.rollback()
    session.delete(session.get(IncidentEvent, event.id))
    with pytest.raises(ValueError, match="append-only"):
        session.commit()


@pytest.mark.skipif(ON_POSTGRESQL, reason="SQLite connection settings")
def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(database):
    with database.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


@pytest.mark.skipif(not ON_POSTGRESQL, reason="PostgreSQL driver")
def test_postgresql_is_reached_through_psycopg_3(database):
    assert database.engine.dialect.driver == "psycopg"
