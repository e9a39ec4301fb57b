"""CAP 1.2 out: the mapping as a table, schema validity of every alert, and nothing about the reporters."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from functools import cache
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import select

from alerts import cap, incidents
from alerts.models import Incident, OutboundMessage
from alerts.states import IncidentStatus
from tests import factories
from tests.alerts.test_api import TEXT, bearer, build_api_net
from tests.conftest import T0, make_test_app

XSD = Path(__file__).resolve().parent.parent / "data" / "CAP-v1.2.xsd"
NS = {"cap": cap.CAP_NS, "atom": cap.ATOM_NS}
SETTINGS = cap.CapSettings(sender="alerts.example.org")
STATUSES = ("open", "acknowledged", "resolved", "false_alarm")


@cache
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD)))


def assert_valid(alert: etree._Element) -> None:
    """Validate one <alert> as a document of its own (it may come from inside a feed)."""
    document = etree.fromstring(etree.tostring(alert))
    assert schema().validate(document), schema().error_log


def field(alert: etree._Element, path: str) -> str | None:
    return alert.findtext(path, namespaces=NS)


def sample(**changes) -> cap.CapIncident:
    incident = cap.CapIncident(
        number=7,
        category="attack",
        severity="critical",
        status="open",
        place="Kitchanga",
        zone="Masisi",
        reports=2,
        count=20,
        confidence=0.7,
        lat=-1.18123,
        lon=28.92456,
        radius_km=10.0,
        polygon=None,
        first_report_at=T0,
        last_report_at=T0 + timedelta(minutes=5),
        acknowledged_at=None,
        resolved_at=None,
    )
    return dataclasses.replace(incident, **changes)


ACK = T0 + timedelta(minutes=12)
CLOSE = T0 + timedelta(hours=3)


# --- the mapping, as plain data -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "msg_type", "urgency", "certainty", "sent"),
    [
        ({}, "Alert", "Immediate", "Likely", T0),
        ({"severity": "high"}, "Alert", "Immediate", "Likely", T0),
        ({"severity": "medium"}, "Alert", "Expected", "Likely", T0),
        ({"severity": "low", "confidence": 0.3}, "Alert", "Expected", "Possible", T0),
        ({"confidence": 0.9}, "Alert", "Immediate", "Observed", T0),
        ({"status": "acknowledged", "acknowledged_at": ACK}, "Update", "Immediate", "Likely", ACK),
        (
            {"status": "resolved", "acknowledged_at": ACK, "resolved_at": CLOSE},
            "Update",
            "Past",
            "Likely",
            CLOSE,
        ),
        (
            {"status": "false_alarm", "acknowledged_at": CLOSE, "resolved_at": CLOSE},
            "Cancel",
            "Past",
            "Unlikely",
            CLOSE,
        ),
        ({"status": "merged", "merged_into": 3}, "Cancel", "Past", "Likely", T0 + timedelta(minutes=5)),
    ],
)
def test_status_severity_and_confidence_map_to_cap(changes, msg_type, urgency, certainty, sent):
    alert = etree.fromstring(cap.alert_xml(sample(**changes), SETTINGS))
    assert_valid(alert)
    assert field(alert, "cap:msgType") == msg_type
    assert field(alert, "cap:info/cap:urgency") == urgency
    assert field(alert, "cap:info/cap:certainty") == certainty
    assert field(alert, "cap:sent") == cap.cap_time(sent)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("critical", "Extreme"), ("high", "Severe"), ("medium", "Moderate"), ("low", "Minor")],
)
def test_our_severities_are_caps(severity, expected):
    alert = etree.fromstring(cap.alert_xml(sample(severity=severity), SETTINGS))
    assert field(alert, "cap:info/cap:severity") == expected


@pytest.mark.parametrize(
    ("category", "cap_category", "event"),
    [
        ("killing", "Security", "Killing"),
        ("armed_presence", "Security", "Armed presence"),
        ("displacement", "Safety", "Displacement"),
        ("unknown", "Safety", "Unspecified alert"),
    ],
)
def test_categories_become_security_or_safety_with_a_label(category, cap_category, event):
    alert = etree.fromstring(cap.alert_xml(sample(category=category), SETTINGS))
    assert field(alert, "cap:info/cap:category") == cap_category
    assert field(alert, "cap:info/cap:event") == event
    assert field(alert, "cap:info/cap:eventCode/cap:value") == category


def test_every_category_and_severity_we_store_has_a_cap_mapping():
    from alerts.models import CATEGORIES, SEVERITIES

    assert set(cap.CAP_CATEGORY) == set(CATEGORIES) == set(cap.EVENT_LABEL)
    assert set(cap.CAP_SEVERITY) == set(SEVERITIES)
    assert set(cap.MSG_TYPE) == {s.value for s in IncidentStatus}


def test_an_update_references_every_earlier_message_of_the_incident():
    alert = etree.fromstring(
        cap.alert_xml(sample(status="resolved", acknowledged_at=ACK, resolved_at=CLOSE), SETTINGS)
    )
    base = "urn:x-alert-relay:alerts.example.org:incident:7"
    assert field(alert, "cap:identifier") == f"{base}:resolved"
    assert field(alert, "cap:references").split() == [
        f"alerts.example.org,{base},2026-11-23T08:00:00+00:00",
        f"alerts.example.org,{base}:acknowledged,2026-11-23T08:12:00+00:00",
    ]
    assert field(alert, "cap:incidents") == base
    assert field(alert, "cap:info/cap:responseType") == "AllClear"


def test_a_false_alarm_closed_without_acknowledgement_cancels_the_first_alert_only():
    alert = etree.fromstring(
        cap.alert_xml(sample(status="false_alarm", acknowledged_at=CLOSE, resolved_at=CLOSE), SETTINGS)
    )
    assert field(alert, "cap:references") == (
        "alerts.example.org,urn:x-alert-relay:alerts.example.org:incident:7,2026-11-23T08:00:00+00:00"
    )


def test_the_area_is_place_and_zone_with_a_coarse_circle_in_kilometres():
    alert = etree.fromstring(cap.alert_xml(sample(), SETTINGS))
    assert field(alert, "cap:info/cap:area/cap:areaDesc") == "Kitchanga, zone Masisi"
    assert field(alert, "cap:info/cap:area/cap:circle") == "-1.18,28.92 10"


def test_an_incident_without_a_point_gets_its_zones_polygon_closed():
    square = [[-1.0, 28.0], [-1.0, 29.0], [-2.0, 29.0], [-2.0, 28.0]]
    alert = etree.fromstring(cap.alert_xml(sample(lat=None, lon=None, polygon=square, place=""), SETTINGS))
    assert_valid(alert)
    assert field(alert, "cap:info/cap:area/cap:areaDesc") == "zone Masisi"
    assert field(alert, "cap:info/cap:area/cap:polygon") == (
        "-1.00,28.00 -1.00,29.00 -2.00,29.00 -2.00,28.00 -1.00,28.00"
    )
    assert field(alert, "cap:info/cap:area/cap:circle") is None


def test_the_headline_and_description_say_what_where_and_how_many():
    alert = etree.fromstring(cap.alert_xml(sample(), SETTINGS))
    assert field(alert, "cap:info/cap:headline") == "Critical: Attack at Kitchanga (incident 7)"
    description = field(alert, "cap:info/cap:description")
    assert "Attack (critical) reported at Kitchanga, zone Masisi." in description
    assert "Number of people reported: 20." in description
    assert "2 reports from the community alert network." in description


def test_scope_is_restricted_by_default_and_public_only_when_configured():
    restricted = etree.fromstring(cap.alert_xml(sample(), SETTINGS))
    assert field(restricted, "cap:scope") == "Restricted"
    assert field(restricted, "cap:restriction") == cap.DEFAULT_RESTRICTION
    public = etree.fromstring(cap.alert_xml(sample(), dataclasses.replace(SETTINGS, scope="Public")))
    assert_valid(public)
    assert field(public, "cap:scope") == "Public"
    assert field(public, "cap:restriction") is None


@pytest.mark.parametrize(("scope", "sender"), [("Private", "ok.example.org"), ("Public", "has space, comma")])
def test_settings_refuse_a_scope_or_sender_cap_cannot_carry(scope, sender):
    with pytest.raises(ValueError, match="CAP"):
        cap.CapSettings(sender=sender, scope=scope)


@pytest.mark.parametrize(
    ("cap_sender", "public_url", "host", "expected"),
    [
        ("ews@ocha.example", "https://alerts.example.org", "localhost", "ews@ocha.example"),
        ("", "https://Alerts.Example.org:8443/relay", "localhost", "alerts.example.org"),
        ("", "", "10.0.0.5:5000", "10.0.0.5"),
    ],
)
def test_the_sender_is_configured_or_the_deployments_host(cap_sender, public_url, host, expected):
    assert cap.sender_from(cap_sender, public_url, host) == expected


def test_cap_times_have_whole_seconds_and_an_offset():
    assert cap.cap_time(T0 + timedelta(microseconds=123456)) == "2026-11-23T08:00:00+00:00"


# --- over HTTP, from the database ---------------------------------------------------------------------


@pytest.fixture
def api_net(session):
    return build_api_net(session)


def put_in_status(session, incident: Incident, status: str) -> None:
    """Move an incident through the same services the SMS commands and the pages use."""
    if status in ("acknowledged", "resolved"):
        incidents.acknowledge(
            session, incident, incident.first_report_at + timedelta(minutes=12), "coordinator c"
        )
    if status in ("resolved", "false_alarm"):
        incidents.close(
            session,
            incident,
            IncidentStatus(status),
            incident.first_report_at + timedelta(hours=3),
            "coordinator c",
        )
    session.commit()


def first_incident(session) -> Incident:
    return session.scalar(select(Incident).where(Incident.number == 1))


@pytest.mark.parametrize("status", STATUSES)
def test_an_incidents_alert_validates_and_maps_its_status(client, api_net, session, status):
    put_in_status(session, first_incident(session), status)
    response = client.get("/api/incidents/1/cap.xml", headers=bearer(api_net, "coord"))
    assert response.status_code == 200
    assert response.mimetype == "application/cap+xml"
    alert = etree.fromstring(response.data)
    assert_valid(alert)
    assert field(alert, "cap:status") == "Actual"
    assert (
        field(alert, "cap:msgType")
        == {
            "open": "Alert",
            "acknowledged": "Update",
            "resolved": "Update",
            "false_alarm": "Cancel",
        }[status]
    )
    assert (field(alert, "cap:references") is None) == (status == "open")
    assert field(alert, "cap:info/cap:onset") == "2026-11-23T08:00:00+00:00"
    again = client.get("/api/incidents/1/cap.xml", headers=bearer(api_net, "admin"))
    assert field(etree.fromstring(again.data), "cap:identifier") == field(alert, "cap:identifier")


@pytest.mark.parametrize("status", STATUSES)
def test_every_alert_of_the_feed_validates(client, api_net, session, status):
    put_in_status(session, first_incident(session), status)
    response = client.get("/api/cap.xml", headers=bearer(api_net, "coord"))
    assert response.mimetype == "application/atom+xml"
    feed = etree.fromstring(response.data)
    assert feed.tag == f"{{{cap.ATOM_NS}}}feed"
    alerts = feed.findall("atom:entry/atom:content/cap:alert", NS)
    assert len(alerts) == len(feed.findall("atom:entry", NS)) == 2
    for alert in alerts:
        assert_valid(alert)
    [mine] = [a for a in alerts if field(a, "cap:info/cap:parameter/cap:value") == "1"]
    assert field(mine, "cap:msgType") == {"open": "Alert", "false_alarm": "Cancel"}.get(status, "Update")


def test_a_feed_of_every_status_at_once_validates_and_links_each_alert(client, api_net, session):
    for offset, status in enumerate(STATUSES[1:], start=1):
        row = factories.incident(
            session,
            api_net["zone"],
            at=T0 + timedelta(hours=offset),
            place_name=f"Place {offset}",
            confidence=0.9,
        )
        put_in_status(session, row, status)
    feed = etree.fromstring(client.get("/api/cap.xml?per_page=500", headers=bearer(api_net, "admin")).data)
    entries = feed.findall("atom:entry", NS)
    assert len(entries) == 5
    types = []
    for entry in entries:
        alert = entry.find("atom:content/cap:alert", NS)
        assert_valid(alert)
        types.append(field(alert, "cap:msgType"))
        assert field(entry, "atom:id") == field(alert, "cap:identifier")
        link = entry.find("atom:link[@rel='alternate']", NS).get("href")
        number = field(alert, "cap:info/cap:parameter/cap:value")
        assert link.endswith(f"/api/incidents/{number}/cap.xml")
    assert sorted(types) == ["Alert", "Alert", "Cancel", "Update", "Update"]


def test_the_feed_takes_the_logs_filters_and_the_tokens_zones(client, api_net):
    only_beni = etree.fromstring(client.get("/api/cap.xml", headers=bearer(api_net, "elsewhere")).data)
    assert [field(a, "cap:info/cap:parameter/cap:value") for a in only_beni.iterfind(".//cap:alert", NS)] == [
        "2"
    ]
    looting = etree.fromstring(
        client.get("/api/cap.xml?category=killing", headers=bearer(api_net, "admin")).data
    )
    assert [field(a, "cap:info/cap:parameter/cap:value") for a in looting.iterfind(".//cap:alert", NS)] == [
        "1"
    ]
    assert client.get("/api/cap.xml?per_page=501", headers=bearer(api_net, "admin")).status_code == 400


def test_an_alert_from_an_sms_maps_the_incidents_fields(client, api_net):
    alert = etree.fromstring(client.get("/api/incidents/1/cap.xml", headers=bearer(api_net, "coord")).data)
    assert field(alert, "cap:sender") == "localhost"
    assert field(alert, "cap:identifier") == "urn:x-alert-relay:localhost:incident:1"
    assert field(alert, "cap:sent") == "2026-11-23T08:00:00+00:00"
    assert field(alert, "cap:scope") == "Restricted"
    assert field(alert, "cap:info/cap:severity") == "Extreme"
    assert field(alert, "cap:info/cap:category") == "Security"
    assert field(alert, "cap:info/cap:area/cap:areaDesc") == "Mweso, zone Masisi"
    # Mweso's point, with the zone's deduplication distance (10 km by default) as the radius.
    assert field(alert, "cap:info/cap:area/cap:circle") == "-1.10,28.94 10"
    assert "1 report from the community alert network" in field(alert, "cap:info/cap:description")


@pytest.mark.parametrize(
    "app_config",
    [{"CAP_SENDER": "ews@ocha.example", "CAP_SCOPE": "Public", "PUBLIC_URL": "https://alerts.example.org"}],
)
def test_the_sender_and_scope_come_from_the_configuration(client, api_net):
    alert = etree.fromstring(client.get("/api/incidents/1/cap.xml", headers=bearer(api_net, "coord")).data)
    assert_valid(alert)
    assert field(alert, "cap:sender") == "ews@ocha.example"
    assert field(alert, "cap:identifier") == "urn:x-alert-relay:ews@ocha.example:incident:1"
    assert field(alert, "cap:scope") == "Public"
    assert field(alert, "cap:restriction") is None
    assert field(alert, "cap:info/cap:web") == "https://alerts.example.org/incidents/1"


def test_a_scope_cap_cannot_carry_stops_the_app_at_start(database_url, tmp_path):
    with pytest.raises(ValueError, match="CAP_SCOPE"):
        make_test_app(database_url, tmp_path / "instance", CAP_SCOPE="Private")


@pytest.mark.parametrize("status", STATUSES)
def test_no_reporter_or_responder_name_number_or_text_leaves_in_cap(client, api_net, session, status):
    put_in_status(session, first_incident(session), status)
    focal_point = api_net["focal_point"]
    people = [focal_point, *api_net["tier1"], *api_net["tier2"], *api_net["tier3"]]
    secrets = [
        TEXT,
        "3 morts",
        *(p.name for p in people),
        *(p.phone for p in people),
        *(p.phone[-7:] for p in people),
    ]
    secrets += [m.body for m in session.scalars(select(OutboundMessage))]
    for path in ("/api/incidents/1/cap.xml", "/api/cap.xml"):
        body = client.get(path, headers=bearer(api_net, "admin")).get_data(as_text=True)
        for secret in secrets:
            assert secret not in body, (path, secret)
