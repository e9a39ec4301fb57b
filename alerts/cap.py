"""CAP 1.2 alerts of incidents, for other early-warning systems: a pure mapping, no Flask, no database.

What leaves the organisation here is the event, never its sources: no focal point's name, phone number or
message text is ever an input of this module.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MIMETYPE = "application/cap+xml"
ATOM_MIMETYPE = "application/atom+xml"
LANGUAGE = "en"  # the headline and description below are written in English
SCOPES = ("Restricted", "Public")  # "Private" would need <addresses>, which we do not keep
DEFAULT_RESTRICTION = (
    "Protection data from a community alert network: for humanitarian and protection partners only; "
    "do not publish or forward outside the receiving organisation."
)
DEFAULT_SENDER_NAME = "Community early-warning alert relay"
DEFAULT_RADIUS_KM = 10.0
# Coordinates leave at about 1 km precision: an incident located at a reporter's home village must not
# point at a house.
COORDINATE_DECIMALS = 2

CAP_SEVERITY: Mapping[str, str] = MappingProxyType(
    {"critical": "Extreme", "high": "Severe", "medium": "Moderate", "low": "Minor"}
)
# Our categories as CAP's: violence by people is Security; displacement and the unknown are Safety.
CAP_CATEGORY: Mapping[str, str] = MappingProxyType(
    {
        "killing": "Security",
        "sexual_violence": "Security",
        "abduction": "Security",
        "attack": "Security",
        "clash": "Security",
        "arson": "Security",
        "looting": "Security",
        "armed_presence": "Security",
        "threat": "Security",
        "displacement": "Safety",
        "other": "Safety",
        "unknown": "Safety",
    }
)
EVENT_LABEL: Mapping[str, str] = MappingProxyType(
    {
        "killing": "Killing",
        "sexual_violence": "Sexual violence",
        "abduction": "Abduction",
        "attack": "Attack",
        "clash": "Armed clash",
        "arson": "Arson",
        "looting": "Looting",
        "armed_presence": "Armed presence",
        "threat": "Threat",
        "displacement": "Displacement",
        "other": "Other incident",
        "unknown": "Unspecified alert",
    }
)
# The status of an incident -> the type of the CAP message that describes it now.
MSG_TYPE: Mapping[str, str] = MappingProxyType(
    {
        "open": "Alert",
        "acknowledged": "Update",
        "resolved": "Update",
        "false_alarm": "Cancel",
        "merged": "Cancel",
    }
)
STATUS_WORDS: Mapping[str, str] = MappingProxyType(
    {
        "open": "open, not yet acknowledged by a responder",
        "acknowledged": "acknowledged by a responder",
        "resolved": "resolved",
        "false_alarm": "cancelled: a false alarm",
        "merged": "cancelled: merged into another incident",
    }
)
CLOSED = frozenset({"resolved", "false_alarm", "merged"})
_UNSAFE_IN_ID = re.compile(r"[^A-Za-z0-9.\-_@]")


@dataclass(frozen=True)
class CapSettings:
    """Who we are to the receivers, and how far our alerts may travel."""

    sender: str
    scope: str = "Restricted"
    restriction: str = DEFAULT_RESTRICTION
    sender_name: str = DEFAULT_SENDER_NAME

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"CAP_SCOPE must be one of {', '.join(SCOPES)}, not {self.scope!r}")
        if not self.sender or _UNSAFE_IN_ID.search(self.sender):
            raise ValueError("the CAP sender must be a host name or address without spaces or commas")

    @property
    def urn(self) -> str:
        return f"urn:x-alert-relay:{self.sender}"


@dataclass(frozen=True)
class CapIncident:
    """What CAP may say about an incident: the event, its place and its state, nothing about its sources."""

    number: int
    category: str
    severity: str
    status: str
    place: str
    zone: str
    reports: int
    count: int | None
    confidence: float
    lat: float | None
    lon: float | None
    radius_km: float
    polygon: Sequence[Sequence[float]] | None
    first_report_at: datetime
    last_report_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    merged_into: int | None = None
    web: str = ""


@dataclass(frozen=True)
class CapMessage:
    """One message of an incident's chain: the first alert, then its updates or its cancellation."""

    identifier: str
    sent: datetime


def sender_from(cap_sender: str, public_url: str, request_host: str) -> str:
    """The configured CAP_SENDER, else the host of PUBLIC_URL, else the host the request came to."""
    if cap_sender:
        return cap_sender
    host = public_url.split("://", 1)[-1].split("/", 1)[0] if public_url else request_host
    return _UNSAFE_IN_ID.sub("-", host.split(":", 1)[0].lower()) or "localhost"


def cap_time(moment: datetime) -> str:
    """CAP's dateTime: whole seconds and an explicit offset ("Z" is not allowed)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def chain(incident: CapIncident, settings: CapSettings) -> list[CapMessage]:
    """Every message the incident's history implies, oldest first; the last one describes it now.

    Identifiers are derived from the incident and its state, so the same state always gives the same
    message and a receiver can tell a new message from one it has already taken in.
    """
    base = f"{settings.urn}:incident:{incident.number}"
    messages = [CapMessage(base, incident.first_report_at)]
    acknowledged = incident.acknowledged_at
    closed = incident.resolved_at or incident.last_report_at
    # Closing an unacknowledged incident also stamps acknowledged_at: only a separate earlier ack counts.
    if acknowledged is not None and (incident.status not in CLOSED or acknowledged < closed):
        messages.append(CapMessage(f"{base}:acknowledged", acknowledged))
    if incident.status in CLOSED:
        messages.append(CapMessage(f"{base}:{incident.status}", max(closed, messages[-1].sent)))
    return messages


def urgency(incident: CapIncident) -> str:
    if incident.status in CLOSED:
        return "Past"
    return "Immediate" if incident.severity in ("critical", "high") else "Expected"


def certainty(incident: CapIncident) -> str:
    if incident.status == "false_alarm":
        return "Unlikely"
    if incident.confidence >= 0.8:
        return "Observed"
    return "Likely" if incident.confidence >= 0.5 else "Possible"


def headline(incident: CapIncident) -> str:
    event = EVENT_LABEL.get(incident.category, incident.category)
    prefix = {"resolved": "Resolved", "false_alarm": "False alarm", "merged": "Merged"}.get(
        incident.status, incident.severity.capitalize()
    )
    return f"{prefix}: {event} at {incident.place or 'an unknown place'} (incident {incident.number})"


def description(incident: CapIncident) -> str:
    """Category, place, people, number of reports, state: never who reported or what they wrote."""
    event = EVENT_LABEL.get(incident.category, incident.category)
    where = incident.place or "an unknown place"
    if incident.zone:
        where += f", zone {incident.zone}"
    parts = [f"{event} ({incident.severity}) reported at {where}."]
    if incident.count:
        parts.append(f"Number of people reported: {incident.count}.")
    plural = "report" if incident.reports == 1 else "reports"
    parts.append(f"{incident.reports} {plural} from the community alert network.")
    parts.append(f"Status: {STATUS_WORDS.get(incident.status, incident.status)}.")
    if incident.merged_into is not None:
        parts.append(f"Follow incident {incident.merged_into}.")
    return " ".join(parts)


def area_description(incident: CapIncident) -> str:
    return ", ".join(p for p in (incident.place, incident.zone and f"zone {incident.zone}") if p) or (
        "unknown location"
    )


def _coordinate(value: float) -> str:
    return f"{round(value, COORDINATE_DECIMALS):.{COORDINATE_DECIMALS}f}"


def circle(incident: CapIncident) -> str | None:
    """CAP's circle: "lat,lon radius", the radius in kilometres."""
    if incident.lat is None or incident.lon is None:
        return None
    return f"{_coordinate(incident.lat)},{_coordinate(incident.lon)} {incident.radius_km:g}"


def polygon(incident: CapIncident) -> str | None:
    """CAP's polygon ("lat,lon" pairs, closed, at least four): the zone's, for an incident with no point."""
    if incident.lat is not None or not incident.polygon or len(incident.polygon) < 3:
        return None
    points = [(float(p[0]), float(p[1])) for p in incident.polygon]
    if points[0] != points[-1]:
        points.append(points[0])
    return " ".join(f"{_coordinate(lat)},{_coordinate(lon)}" for lat, lon in points)


def _sub(parent: ET.Element, tag: str, text: str | None) -> ET.Element:
    element = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    element.text = text
    return element


def alert_element(incident: CapIncident, settings: CapSettings) -> ET.Element:
    """The CAP <alert> that describes the incident as it stands now."""
    messages = chain(incident, settings)
    current = messages[-1]
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", current.identifier)
    _sub(alert, "sender", settings.sender)
    _sub(alert, "sent", cap_time(current.sent))
    _sub(alert, "status", "Actual")
    _sub(alert, "msgType", MSG_TYPE[incident.status])
    _sub(alert, "scope", settings.scope)
    if settings.scope == "Restricted":
        _sub(alert, "restriction", settings.restriction)
    if len(messages) > 1:
        _sub(
            alert,
            "references",
            " ".join(f"{settings.sender},{m.identifier},{cap_time(m.sent)}" for m in messages[:-1]),
        )
    _sub(alert, "incidents", messages[0].identifier)

    info = _sub(alert, "info", None)
    _sub(info, "language", LANGUAGE)
    _sub(info, "category", CAP_CATEGORY.get(incident.category, "Other"))
    _sub(info, "event", EVENT_LABEL.get(incident.category, incident.category))
    if incident.status == "resolved":
        _sub(info, "responseType", "AllClear")
    _sub(info, "urgency", urgency(incident))
    _sub(info, "severity", CAP_SEVERITY.get(incident.severity, "Unknown"))
    _sub(info, "certainty", certainty(incident))
    code = _sub(info, "eventCode", None)
    _sub(code, "valueName", "alert-relay:category")
    _sub(code, "value", incident.category)
    _sub(info, "onset", cap_time(incident.first_report_at))
    _sub(info, "senderName", settings.sender_name)
    _sub(info, "headline", headline(incident))
    _sub(info, "description", description(incident))
    if incident.web:
        _sub(info, "web", incident.web)
    parameter = _sub(info, "parameter", None)
    _sub(parameter, "valueName", "alert-relay:incident")
    _sub(parameter, "value", str(incident.number))

    area = _sub(info, "area", None)
    _sub(area, "areaDesc", area_description(incident))
    if (shape := polygon(incident)) is not None:
        _sub(area, "polygon", shape)
    if (round_area := circle(incident)) is not None:
        _sub(area, "circle", round_area)
    return alert


def alert_xml(incident: CapIncident, settings: CapSettings) -> bytes:
    """One incident as a CAP 1.2 document."""
    return ET.tostring(
        alert_element(incident, settings), encoding="utf-8", xml_declaration=True, default_namespace=CAP_NS
    )


def feed_xml(
    incidents: Sequence[CapIncident],
    settings: CapSettings,
    self_url: str,
    alert_url: Callable[[int], str],
    now: datetime,
) -> bytes:
    """An Atom feed whose entries each carry an incident's full CAP alert (one fetch on a slow link)."""
    ET.register_namespace("cap", CAP_NS)  # a process-wide prefix map: idempotent, and only for output
    # Atom is the default namespace, declared by hand: ElementTree's default_namespace refuses the
    # unqualified attributes Atom needs (rel, href, type).
    feed = ET.Element("feed", xmlns=ATOM_NS)
    entries = [(incident, alert_element(incident, settings)) for incident in incidents]
    updated = max((_sent(alert) for _, alert in entries), default=cap_time(now))
    _atom(feed, "id", f"{settings.urn}:feed")
    _atom(feed, "title", f"Incidents from {settings.sender}")
    _atom(feed, "updated", updated)
    _atom(_atom(feed, "author"), "name", settings.sender_name)
    _atom(feed, "link", rel="self", href=self_url, type=ATOM_MIMETYPE)
    for incident, alert in entries:
        entry = _atom(feed, "entry")
        _atom(entry, "id", alert.findtext(f"{{{CAP_NS}}}identifier"))
        _atom(entry, "title", headline(incident))
        _atom(entry, "updated", _sent(alert))
        _atom(entry, "link", rel="alternate", href=alert_url(incident.number), type=CAP_MIMETYPE)
        _atom(entry, "content", type=CAP_MIMETYPE).append(alert)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _sent(alert: ET.Element) -> str:
    return alert.findtext(f"{{{CAP_NS}}}sent") or ""


def _atom(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    element.text = text
    return element
