"""Response times: the figure protection teams are judged by."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from alerts import incidents
from alerts.metrics import percentile, response_times, summarise
from alerts.models import OutboundMessage
from alerts.states import IncidentStatus, OutboundState
from tests import factories
from tests.conftest import T0


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, None),
        ([4], 0.9, 4),
        ([1, 2, 3, 4], 0.5, 2),
        ([5, 1, 3, 2, 4], 0.5, 3),
        (list(range(1, 11)), 0.9, 9),
    ],
)
def test_percentile_is_a_time_that_really_happened(values, fraction, expected):
    assert percentile(values, fraction) == expected


def test_summary_counts_and_rounds():
    assert summarise([1.04, 2.0, 10.0]) == {"n": 3, "median": 2.0, "p90": 10.0}


def _handled(session, zone, start, ack_after, resolve_after, page_after=1):
    incident = factories.incident(session, zone, at=start)
    session.add(
        OutboundMessage(
            recipient="+243825550001",
            body="ALERTE",
            purpose="page",
            state=OutboundState.DELIVERED,
            idempotency_key=f"p{incident.id}",
            incident_id=incident.id,
            created_at=start,
            sent_at=start + timedelta(minutes=page_after),
            delivered_at=start + timedelta(minutes=page_after + 1),
        )
    )
    incident.status = IncidentStatus.RESOLVED
    incident.acknowledged_at = start + timedelta(minutes=ack_after)
    incident.resolved_at = start + timedelta(minutes=resolve_after)
    return incident


def test_response_times_per_zone_for_a_date_range(session):
    masisi = factories.zone(session)
    beni = factories.zone(session, "Beni", 0.49, 29.47, 40)
    for n, ack in enumerate((2, 4, 30)):
        _handled(session, masisi, T0 + timedelta(hours=n), ack, 120)
    _handled(session, beni, T0, 10, 60)
    _handled(session, beni, T0 - timedelta(days=30), 99, 999)  # outside the range
    factories.incident(session, beni, at=T0 + timedelta(hours=5))  # still open: counted, no times
    session.commit()
    rows = {r["zone"]: r for r in response_times(session, T0 - timedelta(days=1), T0 + timedelta(days=1))}
    assert rows["Masisi"]["incidents"] == 3
    assert rows["Masisi"]["acknowledged"] == {"n": 3, "median": 4.0, "p90": 30.0}
    assert rows["Masisi"]["first_page"]["median"] == 1.0
    assert rows["Masisi"]["first_delivery"]["median"] == 2.0
    assert rows["Beni"]["incidents"] == 2
    assert rows["Beni"]["acknowledged"] == {"n": 1, "median": 10.0, "p90": 10.0}


def test_report_response_times_command(app, session):
    zone = factories.zone(session)
    _handled(session, zone, T0, 3, 50)
    session.commit()
    result = app.test_cli_runner().invoke(
        args=["report", "response-times", "--since", "2026-11-01", "--until", "2026-11-30", "--json"]
    )
    assert result.exit_code == 0, result.output
    [row] = [json.loads(line) for line in result.output.splitlines()]
    assert row["zone"] == "Masisi"
    assert row["resolved"]["median"] == 50.0
    text = app.test_cli_runner().invoke(args=["report", "response-times", "--since", "2026-11-01"])
    assert "Masisi" in text.output
    assert "acknowledged 3.0/3.0" in text.output


def test_acknowledging_twice_is_recorded_once(session):
    net = factories.network(session)
    incident = factories.incident(session, net["zone"])
    responder = net["tier1"][0]
    assert incidents.acknowledge(session, incident, T0, "a", responder) == incidents.Ack.FIRST
    assert incidents.acknowledge(session, incident, T0, "a", responder) == incidents.Ack.REPEATED
    assert incidents.acknowledge(session, incident, T0, "b", net["tier1"][1]) == incidents.Ack.ADDITIONAL
