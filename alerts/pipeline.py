"""The alert pipeline: one stored inbound message in, decisions out (reports, incidents, outbox rows).

Who sent it decides the path: a focal point's text is parsed, located and deduplicated into an incident;
a responder's is a command; an unknown number's waits for a coordinator. Every decision lands on the
incident's timeline. The escalation engine takes over from the incident's state (DESIGN.md).
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified, set_committed_value

from alerts import incidents
from alerts.db import among, get_locked, not_among
from alerts.dedup import (
    LOCATION_CONFIDENCE,
    REPEAT_WINDOW,
    Candidate,
    DedupRules,
    Match,
    NewReport,
    best_match,
    bounding_box,
    combined_confidence,
    is_upgrade,
)
from alerts.deferred import DeferredRow, add_row, deferred_inserts
from alerts.geocoder import OnlineGeocoder, geocoder_from_config
from alerts.geolocation import (
    Gazetteer,
    LocatedBy,
    Location,
    PlaceRecord,
    ZoneArea,
    approx_km,
    zone_for_point,
)
from alerts.imports import LANGUAGES
from alerts.models import (
    Counter,
    FocalPoint,
    InboundMessage,
    Incident,
    OutboundMessage,
    Place,
    Report,
    Responder,
    Zone,
)
from alerts.outbox import ReplyBook, enqueue
from alerts.parsing import Command, Keywords, Kind, ParsedMessage, load_keywords, parse_message
from alerts.states import FocalPointStatus, InboundState, IncidentStatus, SenderKind
from alerts.texts import render

log = logging.getLogger(__name__)
OPEN_STATES = (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED)
MAX_CANDIDATES = 50
# A report the batch made: its queued row (alerts/deferred.py), or outside a batch the object.
ReportRow = Report | DeferredRow


@dataclass(frozen=True)
class PipelineSettings:
    default_region: str = "CD"
    sender_rate_limit: int = 10
    sender_rate_window: timedelta = timedelta(minutes=10)
    reply_cap_per_hour: int = 6
    keywords_dirs: tuple[Path, ...] = ()
    geocoder: OnlineGeocoder | None = None
    beep_severity: str = "high"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PipelineSettings:
        return cls(
            default_region=config["DEFAULT_REGION"],
            sender_rate_limit=config["SENDER_RATE_LIMIT"],
            sender_rate_window=timedelta(minutes=config["SENDER_RATE_WINDOW_MINUTES"]),
            reply_cap_per_hour=config["AUTO_REPLY_CAP_PER_HOUR"],
            keywords_dirs=(Path(config["KEYWORDS_DIR"]),) if config.get("KEYWORDS_DIR") else (),
            geocoder=geocoder_from_config(config),
            beep_severity=config.get("BEEP_SEVERITY", "high"),
        )


@dataclass(frozen=True)
class Outcome:
    """What processing decided; `reply` is the text owed to the sender, already in the outbox."""

    decision: str
    reply: str | None = None
    reply_outbound_id: int | None = None
    incident_number: int | None = None
    # The reply's row, whose id is known once the batch is flushed.
    reply_message: OutboundMessage | DeferredRow | None = field(default=None, repr=False, compare=False)

    def committed(self) -> Outcome:
        if self.reply_message is None or self.reply_outbound_id is not None:
            return self
        return replace(self, reply_outbound_id=self.reply_message.id)


@dataclass
class _Batch:
    """What the messages of one transaction share, each read from the database once for all of them:
    their senders, their senders' recent traffic (the rate limit), replies already owed (the reply cap),
    the gazetteer and the zones. A message that changes one of these (a registration, a reply) updates it
    here too, so the next message of the batch sees what the database would show it."""

    session: Session
    now: datetime
    settings: PipelineSettings
    messages: Sequence[InboundMessage]
    focal_points: dict[str, FocalPoint]
    responders: dict[str, Responder]
    replies: ReplyBook
    # Per sender, when its other messages in the rate window arrived (sorted; none of this batch's).
    recent: dict[str, list[datetime]]
    # Matching without a flush per message: incidents this transaction opened or changed (their rows may
    # be stale until the batch's flush), the ones it holds a row lock on, its reports, and per incident the
    # focal points that reported it.
    incidents: dict[int, Incident] = field(default_factory=dict)
    locked: set[int] = field(default_factory=set)
    reports: list[tuple[ReportRow, str]] = field(default_factory=list)
    # The same, found without a scan of the whole batch per alert (which grew with the batch's square): the
    # incidents by map cell (see `_cell`), the reports by incident and by focal point.
    _incident_cells: dict[tuple[int, int], dict[int, Incident]] = field(default_factory=dict)
    _reports_of_incident: dict[int | None, list[ReportRow]] = field(default_factory=dict)
    _reports_of_focal_point: dict[int | None, list[tuple[ReportRow, str]]] = field(default_factory=dict)
    # A batch of one message: how many other messages its sender sent in the rate window (a count, not rows).
    alone_count: int | None = None
    # Per focal point of the batch: (incident, received, text) of its stored reports recent enough to be
    # repeated by one of its messages; read when a message first has candidates.
    _recent_reports: dict[int, list[tuple[int | None, datetime, str]]] | None = None
    _reporters: dict[int, set[int]] = field(default_factory=dict)
    # Candidate incidents read for a place and dedup rules: (the `since` they were read for, rows).
    nearby: dict[tuple[float, float, float, timedelta], tuple[datetime, list[Any]]] = field(
        default_factory=dict
    )
    _parsed: dict[int, ParsedMessage] = field(default_factory=dict)
    # Per (message, sender's home): where the gazetteer places it.
    located: dict[tuple[int, tuple[float, float] | None], Location] = field(default_factory=dict)
    _prefetched: bool = False
    _by_sender: dict[str, list[InboundMessage]] | None = None
    _gazetteer: Gazetteer | None = None
    _zones: list[ZoneArea] | None = None
    _zone_rows: dict[int, Zone] = field(default_factory=dict)
    _zone_at: dict[tuple[float, float], ZoneArea | None] = field(default_factory=dict)

    @classmethod
    def load(
        cls, session: Session, messages: Sequence[InboundMessage], now: datetime, settings: PipelineSettings
    ) -> _Batch:
        # The texts are parsed before the matching lock (parsing reads nothing): a worker waiting for the
        # lock behind another's batch has its own batch parsed by the time it gets it.
        vocabulary = keywords(settings.keywords_dirs)
        parsed = {m.id: parse_message(m.text, vocabulary) for m in messages}
        # So are the alerts placed (the gazetteer and the zones), from the senders' homes as they are now: a
        # home that changes before the lock is taken (a coordinator's edit) is read again below, and places
        # its alerts anew (`located` is keyed by home).
        located, zone_rows = _place_before_lock(session, messages, parsed)
        # The matching lock comes first, before this transaction holds any row lock: a transaction that
        # updated a focal point and then waited for it would deadlock with the holder updating the same one.
        _lock_matching(session)
        senders = {m.sender for m in messages}
        focal_points = {
            f.phone: f
            for f in session.scalars(select(FocalPoint).where(among(session, FocalPoint.phone, senders)))
        }
        others = senders - focal_points.keys()
        responders = (
            {
                r.phone: r
                for r in session.scalars(select(Responder).where(among(session, Responder.phone, others)))
            }
            if others
            else {}
        )
        ids = [m.id for m in messages]
        first, last = min(m.received_at for m in messages), max(m.received_at for m in messages)
        in_window = (
            among(session, InboundMessage.sender, senders),
            InboundMessage.received_at > first - settings.sender_rate_window,
            InboundMessage.received_at <= last,
            InboundMessage.state != InboundState.RATE_LIMITED,
            not_among(session, InboundMessage.id, ids),
        )
        recent: dict[str, list[datetime]] = {}
        alone_count = None
        if len(messages) == 1:  # one number is enough (SQLite runs every message alone)
            alone_count = session.scalar(select(func.count()).select_from(InboundMessage).where(*in_window))
        else:
            for sender, at in session.execute(
                select(InboundMessage.sender, InboundMessage.received_at).where(*in_window)
            ):
                recent.setdefault(sender, []).append(at)
            for times in recent.values():
                times.sort()
        replies = ReplyBook.load(session, (_reply_key(m) for m in messages), senders, now)
        batch = cls(session, now, settings, messages, focal_points, responders, replies, recent)
        batch.alone_count = alone_count
        batch._parsed = parsed
        batch.located = located
        if zone_rows is not None:
            batch._use_zones(zone_rows)
        return batch

    def recent_reports(self, focal_point_id: int) -> list[tuple[int | None, datetime, str]]:
        """The focal point's stored reports recent enough to be repeated by one of the batch's messages (read
        for all the batch's focal points the first time one is asked for)."""
        if self._recent_reports is None:
            self._recent_reports = {}
            focal_point_ids = [f.id for f in self.focal_points.values() if f.id is not None]
            if focal_point_ids:
                first = min(m.received_at for m in self.messages)
                statement = (
                    select(Report.focal_point_id, Report.incident_id, Report.received_at, InboundMessage.text)
                    .join(InboundMessage, InboundMessage.id == Report.inbound_message_id)
                    .where(
                        among(self.session, Report.focal_point_id, focal_point_ids),
                        Report.received_at >= first - REPEAT_WINDOW,
                    )
                )
                with self.session.no_autoflush:
                    for sender, incident_id, at, text in self.session.execute(statement):
                        self._recent_reports.setdefault(sender, []).append((incident_id, at, text))
        return self._recent_reports.get(focal_point_id, [])

    def over_rate_limit(self, message: InboundMessage) -> bool:
        """More than the limit of other messages from this sender in the window before this one (those
        already rate limited do not count, so a flood cannot keep a phone silenced for good)."""
        if self.alone_count is not None:
            return self.alone_count >= self.settings.sender_rate_limit
        start, end = message.received_at - self.settings.sender_rate_window, message.received_at
        times = self.recent.get(message.sender, [])
        earlier = bisect_right(times, end) - bisect_right(times, start)
        earlier += sum(
            1
            for other in self.from_sender(message.sender)
            if other is not message
            and start < other.received_at <= end
            and other.state != InboundState.RATE_LIMITED
        )
        return earlier >= self.settings.sender_rate_limit

    def from_sender(self, sender: str) -> list[InboundMessage]:
        """The batch's messages from this number (grouped once: a batch of one sender's flood is the case
        the rate limit is for, and a scan of the whole batch per message grew with its square)."""
        if self._by_sender is None:
            self._by_sender = {}
            for other in self.messages:
                self._by_sender.setdefault(other.sender, []).append(other)
        return self._by_sender.get(sender, [])

    def parsed(self, message: InboundMessage) -> ParsedMessage:
        """The message's text parsed (the batch's own are parsed before it takes the matching lock)."""
        if message.id not in self._parsed:
            self._parsed[message.id] = parse_message(message.text, keywords(self.settings.keywords_dirs))
        return self._parsed[message.id]

    def gazetteer(self) -> Gazetteer:
        if self._gazetteer is None:
            self._gazetteer = gazetteer(self.session)
        return self._gazetteer

    def zone_areas(self) -> list[ZoneArea]:
        if self._zones is None:
            self._use_zones(list(self.session.scalars(select(Zone))))
        return self._zones

    def _use_zones(self, rows: list[Zone]) -> None:
        self._zone_rows = {z.id: z for z in rows}
        self._zones = [_zone_area(z) for z in rows]

    def zone_at(self, lat: float, lon: float) -> ZoneArea | None:
        """The zone a point lies in (alerts of one place ask once)."""
        key = (lat, lon)
        if key not in self._zone_at:
            self._zone_at[key] = zone_for_point(lat, lon, self.zone_areas())
        return self._zone_at[key]

    def zone(self, zone_id: int | None) -> Zone | None:
        if zone_id is None:
            return None
        self.zone_areas()
        return self._zone_rows.get(zone_id) or self.session.get(Zone, zone_id)

    def lock_incident(self, incident_id: int) -> Incident:
        """The incident, row-locked for this transaction (once)."""
        if incident_id in self.locked:
            return self.incidents[incident_id]
        # The batch may have read it as a candidate before this lock, and another worker changed it since.
        with self.session.no_autoflush:
            incident = get_locked(self.session, Incident, incident_id, incidents.INCIDENT_LOCK)
        if incident is None:
            raise LookupError(f"incident {incident_id} vanished during matching")
        self._hold(incident)
        return incident

    def lock_incidents(self, incident_ids: set[int]) -> None:
        """Row-lock these incidents together, in id order, read as they are now (see `lock_incident`)."""
        wanted = sorted(incident_ids - self.locked)
        if not wanted:
            return
        statement = (
            select(Incident)
            .where(among(self.session, Incident.id, wanted))
            .order_by(Incident.id)
            .with_for_update(**incidents.INCIDENT_LOCK)
            .execution_options(populate_existing=True)
        )
        with self.session.no_autoflush:
            for incident in self.session.scalars(statement):
                self._hold(incident)

    def opened(self, incident: Incident) -> None:
        self._hold(incident)
        self._reporters[incident.id] = set()

    def _hold(self, incident: Incident) -> None:
        """An incident the batch opened or row-locked: matching takes it from here, as it is now."""
        self.locked.add(incident.id)
        self.incidents[incident.id] = incident
        # A batch never moves an incident (merging keeps its place): its cell is set once.
        if incident.lat is not None and incident.lon is not None:
            self._incident_cells.setdefault(_cell(incident.lat, incident.lon), {})[incident.id] = incident

    def incidents_in(
        self, min_lat: float, max_lat: float, min_lon: float, max_lon: float
    ) -> dict[int, Incident]:
        """The batch's placed incidents in the map cells this box touches (a superset of those in the box)."""
        south, west = _cell(min_lat, min_lon)
        north, east = _cell(max_lat, max_lon)
        found: dict[int, Incident] = {}
        if (north - south + 1) * (east - west + 1) <= len(self._incident_cells):
            for cell in ((a, b) for a in range(south, north + 1) for b in range(west, east + 1)):
                found.update(self._incident_cells.get(cell, ()))
        else:  # a box wider than the batch's cells: the batch's cells, each looked at once
            for (a, b), held in self._incident_cells.items():
                if south <= a <= north and west <= b <= east:
                    found.update(held)
        return found

    def add_report(self, report: ReportRow, text: str) -> None:
        self.reports.append((report, text))
        self._reports_of_incident.setdefault(report.incident_id, []).append(report)
        self._reports_of_focal_point.setdefault(report.focal_point_id, []).append((report, text))

    def reports_of(self, focal_point_id: int) -> list[tuple[ReportRow, str]]:
        """The batch's reports from this focal point (with their texts), in the order they were made."""
        return self._reports_of_focal_point.get(focal_point_id, [])

    def load_reporters(self, incident_ids: Sequence[int]) -> None:
        """Who reported each of these incidents before the batch (its own reports are in `reports`)."""
        found: dict[int, set[int]] = {i: set() for i in incident_ids}
        # Distinct: an incident of hundreds of reports has a few dozen reporters.
        statement = (
            select(Report.incident_id, Report.focal_point_id)
            .distinct()
            .where(among(self.session, Report.incident_id, incident_ids))
        )
        with self.session.no_autoflush:
            for incident_id, focal_point_id in self.session.execute(statement):
                found[incident_id].add(focal_point_id)
        self._reporters.update(found)

    def reporters(self, incident_id: int, besides: ReportRow) -> set[int]:
        """Focal points of the incident's reports other than `besides` (which is not flushed yet)."""
        if incident_id not in self._reporters:
            self.load_reporters([incident_id])
        here = {r.focal_point_id for r in self._reports_of_incident.get(incident_id, ()) if r is not besides}
        return {f for f in self._reporters[incident_id] | here if f is not None}


# The map cells a batch files its incidents under: a quarter of a degree (28 km north-south), the order of a
# zone's dedup distance, so that a candidate box touches a few cells.
CELL_DEGREES = 0.25


def _cell(lat: float, lon: float) -> tuple[int, int]:
    return math.floor(lat / CELL_DEGREES), math.floor(lon / CELL_DEGREES)


def _place_before_lock(
    session: Session, messages: Sequence[InboundMessage], parsed: Mapping[int, ParsedMessage]
) -> tuple[dict[tuple[int, tuple[float, float] | None], Location], list[Zone] | None]:
    """Where the gazetteer places each alert of registered focal points (keyed as `_Batch.located`), and the
    zones, read before the matching lock: a tenth of a batch's work that needs no lock, done while another
    worker's batch holds it."""
    alerts = [m for m in messages if _is_alert(m, parsed[m.id])]
    if not alerts:
        return {}, None
    with session.no_autoflush:
        homes = {
            phone: (lat, lon) if lat is not None and lon is not None else None
            for phone, lat, lon in session.execute(
                select(FocalPoint.phone, FocalPoint.home_lat, FocalPoint.home_lon).where(
                    among(session, FocalPoint.phone, {m.sender for m in alerts})
                )
            )
        }
        places = gazetteer(session)
        zones = list(session.scalars(select(Zone)))
    located = {}
    for message in alerts:
        if message.sender in homes:
            home, text = homes[message.sender], parsed[message.id]
            located[(message.id, home)] = places.locate(text.place_words, text.coordinates, home)
    return located, zones


def _is_alert(message: InboundMessage, parsed: ParsedMessage) -> bool:
    """What a focal point's message reports as an alert: a missed call, or a text that is no command and
    not unclear."""
    return message.channel == "voice" or parsed.kind not in (Kind.COMMAND, Kind.UNKNOWN)


def _lock_matching(session: Session) -> None:
    """The matching lock, held to the end of the transaction (PostgreSQL; on SQLite every transaction
    starts with BEGIN IMMEDIATE, which already serialises writers)."""
    if session.get_bind().dialect.name == "postgresql":
        with session.no_autoflush:
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext('alerts.dedup'))"))


def _reply_key(message: InboundMessage) -> str:
    return f"reply:{message.id}"


@dataclass
class _Context:
    batch: _Batch
    message: InboundMessage
    parsed: ParsedMessage
    beep: bool = False  # a missed call: no words, the sender's home, category "unknown"
    sender_kind: SenderKind = SenderKind.UNKNOWN  # a registration makes it a focal point's

    @property
    def session(self) -> Session:
        return self.batch.session

    @property
    def now(self) -> datetime:
        return self.batch.now

    @property
    def settings(self) -> PipelineSettings:
        return self.batch.settings

    @property
    def category(self) -> str:
        if self.beep:
            return "unknown"
        return self.parsed.category.value if self.parsed.category else "other"

    @property
    def severity(self) -> str:
        if self.beep:
            return self.settings.beep_severity
        return self.parsed.severity.value if self.parsed.severity else "low"

    def reply(
        self,
        key: str,
        language: str | None,
        decision: str,
        *,
        focal_point_id: int | None = None,
        responder_id: int | None = None,
        incident: Incident | None = None,
        **fields: Any,
    ) -> Outcome:
        body = render(key, language, **fields)
        queued = enqueue(
            self.session,
            recipient=self.message.sender,
            body=body,
            purpose="receipt" if key.startswith("receipt") else "confirmation",
            idempotency_key=_reply_key(self.message),
            now=self.now,
            incident_id=incident.id if incident else None,
            focal_point_id=focal_point_id,
            responder_id=responder_id,
            reply_cap_per_hour=self.settings.reply_cap_per_hour,
            book=self.batch.replies,
        )
        outbound = queued.message
        return Outcome(
            decision,
            reply=outbound.body if outbound else None,
            reply_outbound_id=outbound.id if outbound else None,
            reply_message=outbound,
            incident_number=incident.number if incident else None,
        )


@cache
def keywords(dirs: tuple[Path, ...]) -> Keywords:
    """The parser's vocabulary: bundled files plus a coordinator's directory, loaded once per process."""
    return load_keywords(dirs)


_gazetteers: dict[tuple[str, int], Gazetteer] = {}


def gazetteer(session: Session) -> Gazetteer:
    """The gazetteer built from the places table, rebuilt only when an import changed it."""
    version = session.scalar(select(Counter.value).where(Counter.name == "places_version")) or 0
    key = (str(session.get_bind().url), version)
    if key not in _gazetteers:
        places = session.execute(
            select(Place.id, Place.name, Place.lat, Place.lon, Place.admin1, Place.admin2, Place.alt_names)
        ).all()
        _gazetteers.clear()
        _gazetteers[key] = Gazetteer(
            PlaceRecord(
                id=p.id,
                name=p.name,
                lat=p.lat,
                lon=p.lon,
                admin1=p.admin1,
                admin2=p.admin2,
                alt_names=tuple(a for a in p.alt_names.split("|") if a),
            )
            for p in places
        )
    return _gazetteers[key]


def _zone_area(z: Zone) -> ZoneArea:
    return ZoneArea(
        id=z.id,
        name=z.name,
        lat=z.lat,
        lon=z.lon,
        radius_km=z.radius_km,
        polygon=tuple((float(a), float(b)) for a, b in z.polygon) if z.polygon else None,
    )


def zone_areas(session: Session) -> list[ZoneArea]:
    return [_zone_area(z) for z in session.scalars(select(Zone))]


PROCESSABLE = (InboundState.RECEIVED, InboundState.FAILED)


def process_message(
    session: Session, message_id: int, *, now: datetime, settings: PipelineSettings
) -> Outcome:
    """Process one stored inbound message and commit; a message already processed is left alone."""
    # The row lock makes the webhook and the retry job agree on who processes a message.
    message = get_locked(session, InboundMessage, message_id)
    if message is None:
        raise LookupError(f"inbound message {message_id} does not exist")
    if message.state not in PROCESSABLE:
        session.rollback()
        return Outcome("already processed")
    return _process_and_commit(session, [message], now, settings)[0]


def process_messages(
    session: Session, messages: Sequence[InboundMessage], *, now: datetime, settings: PipelineSettings
) -> list[Outcome]:
    """Process stored messages, already locked by the caller, in their order, and commit them together.

    One transaction for many messages saves most of the per-message round trips and commits; every
    message still sees what the ones before it did (an incident opened, a registration, a reply sent).
    An exception leaves the whole transaction to the caller to roll back.
    """
    if any(m.state not in PROCESSABLE for m in messages):
        raise ValueError("only received or failed messages can be processed")
    return _process_and_commit(session, messages, now, settings)


def _process_and_commit(
    session: Session, messages: Sequence[InboundMessage], now: datetime, settings: PipelineSettings
) -> list[Outcome]:
    if not messages:
        return []
    batch = _Batch.load(session, messages, now, settings)
    # The batch's reports, timeline lines and receipts go beside the unit of work (alerts/deferred.py).
    with deferred_inserts(session):
        outcomes = [_process(batch, message) for message in messages]
        _same_columns_for_merges(batch)
        _write_processed(batch)
    session.commit()
    outcomes = [outcome.committed() for outcome in outcomes]
    for message, outcome in zip(messages, outcomes, strict=True):
        log.info("inbound %s: %s", message.id, outcome.decision)
    return outcomes


# What a merge changes on its incident. SQLAlchemy updates rows that set the same columns with one
# executemany, and rows that differ with one statement each: a batch's thirty merges, each changing a
# different few of these, made a dozen UPDATEs. Written for every incident the batch changed, changed or not
# (the batch holds their row locks), they go out together; a rarer change (an upgrade) still splits them.
_MERGE_COLUMNS = ("last_report_at", "confidence", "update_pending", "count")


def _same_columns_for_merges(batch: _Batch) -> None:
    changed = batch.session.dirty
    for incident in batch.incidents.values():
        if incident in changed:
            for key in _MERGE_COLUMNS:
                flag_modified(incident, key)


def _process(batch: _Batch, message: InboundMessage) -> Outcome:
    now = batch.now
    focal_point = batch.focal_points.get(message.sender)
    responder = None if focal_point else batch.responders.get(message.sender)
    # Kept aside and written with the state at the end: the row is updated once, not once per autoflush.
    sender_kind = (
        SenderKind.FOCAL_POINT if focal_point else SenderKind.RESPONDER if responder else SenderKind.UNKNOWN
    )
    if focal_point is not None:
        focal_point.last_seen_at = now

    if batch.over_rate_limit(message):
        outcome = Outcome("rate limited")
        state = InboundState.RATE_LIMITED
    else:
        context = _Context(
            batch,
            message,
            batch.parsed(message),
            beep=message.channel == "voice",
            sender_kind=sender_kind,
        )
        if focal_point is not None:
            outcome = _from_focal_point(context, focal_point)
        elif responder is not None:
            outcome = _from_responder(context, responder)
        elif context.parsed.command == Command.REGISTER and not context.beep:
            outcome = _register(context)
        else:
            outcome = Outcome("unverified sender: waiting for a coordinator")
        sender_kind = context.sender_kind
        unverified = (
            responder is None and focal_point is None and not outcome.decision.startswith("registration")
        )
        state = InboundState.UNVERIFIED if unverified else InboundState.PROCESSED
        if (
            focal_point is not None
            and focal_point.status != FocalPointStatus.ACTIVE
            and outcome.incident_number is None
        ):
            state = InboundState.UNVERIFIED
    # Written for the whole batch by `_write_processed`, not by the unit of work (one object's history
    # and one row of an executemany per message were a tenth of a batch's CPU).
    for key, value in (
        ("state", state),
        ("sender_kind", sender_kind),
        ("processed_at", now),
        ("error", None),
        ("next_attempt_at", None),
    ):
        set_committed_value(message, key, value)
    return outcome


def _write_processed(batch: _Batch) -> None:
    """The batch's messages marked processed: one UPDATE per (state, sender kind), a handful for a batch."""
    session = batch.session
    groups: dict[tuple[str, str], list[int]] = {}
    for message in batch.messages:
        groups.setdefault((message.state, message.sender_kind), []).append(message.id)
    for (state, sender_kind), ids in groups.items():
        session.execute(
            update(InboundMessage)
            .where(among(session, InboundMessage.id, ids))
            .values(
                state=state, sender_kind=sender_kind, processed_at=batch.now, error=None, next_attempt_at=None
            )
            .execution_options(synchronize_session=False)
        )


# --- focal points ---------------------------------------------------------------------------------


def _from_focal_point(ctx: _Context, focal_point: FocalPoint) -> Outcome:
    parsed = ctx.parsed
    if ctx.beep:
        if focal_point.status != FocalPointStatus.ACTIVE:
            return Outcome(f"missed call from a {focal_point.status} focal point: held for review")
        return _alert(ctx, focal_point)
    if parsed.kind == Kind.COMMAND:
        if parsed.command == Command.REGISTER:
            return ctx.reply(
                "registration_exists",
                focal_point.language,
                "already registered",
                focal_point_id=focal_point.id,
            )
        handler = FOCAL_POINT_COMMANDS.get(parsed.command)
        if handler is None:
            return Outcome(f"command {parsed.command} from a focal point: no action")
        return handler(ctx, focal_point)
    if parsed.kind == Kind.UNKNOWN:
        return ctx.reply(
            "unclear",
            focal_point.language,
            "not an alert: asked the sender for details",
            focal_point_id=focal_point.id,
        )
    if focal_point.status != FocalPointStatus.ACTIVE:
        _make_report(ctx, focal_point, incident=None)
        return Outcome(f"alert from a {focal_point.status} focal point: held for review")
    return _alert(ctx, focal_point)


def _focal_point_test(ctx: _Context, focal_point: FocalPoint) -> Outcome:
    return ctx.reply("test_ok", focal_point.language, "line test answered", focal_point_id=focal_point.id)


def _focal_point_help(ctx: _Context, focal_point: FocalPoint) -> Outcome:
    return ctx.reply("help_focal_point", focal_point.language, "help sent", focal_point_id=focal_point.id)


FOCAL_POINT_COMMANDS: dict[Command | None, Callable[[_Context, FocalPoint], Outcome]] = {
    Command.TEST: _focal_point_test,
    Command.HELP: _focal_point_help,
}


def _home(focal_point: FocalPoint | None) -> tuple[float, float] | None:
    if focal_point is not None and focal_point.home_lat is not None and focal_point.home_lon is not None:
        return (focal_point.home_lat, focal_point.home_lon)
    return None


def _gazetteer_location(batch: _Batch, message: InboundMessage, focal_point: FocalPoint | None) -> Location:
    """Where the gazetteer places a message: its coordinates, a place it names, else the sender's home.

    Worked out once per message and home (reading the batch's candidates needs it before the message's turn;
    a message earlier in the batch may have moved the sender's home since, which asks again)."""
    home = _home(focal_point)
    key = (message.id, home)
    if key not in batch.located:
        parsed = batch.parsed(message)
        batch.located[key] = batch.gazetteer().locate(parsed.place_words, parsed.coordinates, home)
    return batch.located[key]


def _locate(ctx: _Context, focal_point: FocalPoint | None) -> Location:
    home = _home(focal_point)
    location = _gazetteer_location(ctx.batch, ctx.message, focal_point)
    online = ctx.settings.geocoder
    if (
        online is not None
        and ctx.parsed.place_words
        and location.located_by in (LocatedBy.HOME, LocatedBy.NONE)
    ):
        return online.locate(ctx.parsed.place_words, home) or location
    return location


def _make_report(
    ctx: _Context,
    focal_point: FocalPoint,
    incident: Incident | None,
    location: Location | None = None,
    is_repeat: bool = False,
) -> ReportRow:
    parsed = ctx.parsed
    location = location or _locate(ctx, focal_point)
    values = dict(
        inbound_message_id=ctx.message.id,
        focal_point_id=focal_point.id,
        incident_id=incident.id if incident else None,
        category=ctx.category,
        secondary_categories=[c.value for c in parsed.secondary_categories],
        severity=ctx.severity,
        count=parsed.count,
        language=parsed.language,
        place_text=" / ".join(parsed.place_words)[:200],
        place_id=location.place_id,
        lat=location.lat,
        lon=location.lon,
        located_by=location.located_by.value,
        location_note=location.note,
        confidence=report_confidence(location),
        is_repeat=is_repeat,
        received_at=ctx.message.received_at,
    )
    report = add_row(ctx.session, Report, values)
    ctx.batch.add_report(report, ctx.message.text)
    return report


def report_confidence(location: Location) -> float:
    """How sure the report's place is: the method caps it, the matcher's own confidence scales it."""
    return round(LOCATION_CONFIDENCE[location.located_by.value] * (0.5 + 0.5 * location.confidence), 3)


# What matching reads of a candidate incident: plain rows, not ORM objects (a batch reads every open incident
# near its alerts, and the one it merges into is loaded and row-locked on its own).
_CANDIDATE_COLUMNS = (
    Incident.id,
    Incident.status,
    Incident.merged_into_id,
    Incident.last_report_at,
    Incident.lat,
    Incident.lon,
    Incident.category,
    Incident.severity,
)


def _candidates(batch: _Batch, report: NewReport, rules: DedupRules) -> list[Candidate]:
    """Open incidents near the report in space and time, with the focal point's recent reports on each.

    The database is read without flushing the batch: what this transaction changed is taken from its
    own objects (incidents opened or merged into, reports made), and every condition is checked again on
    the objects, whose values are the current ones.
    """
    session = batch.session
    min_lat, max_lat, min_lon, max_lon = bounding_box(report.lat, report.lon, rules.distance_km)
    since = report.received_at - rules.window
    # Reports of one event mostly name the same place: the batch asks once per place and rules. Rows read
    # for an earlier `since` are a superset (filtered again below); nobody else matches meanwhile (the
    # batch holds the matching lock), and what the batch itself changes is in `batch.incidents`.
    key = (report.lat, report.lon, rules.distance_km, rules.window)
    if not batch._prefetched:
        _read_batch_candidates(batch)
    cached = batch.nearby.get(key)
    if cached is not None and cached[0] <= since:
        rows = cached[1]
    else:
        with session.no_autoflush:
            rows = session.execute(
                select(*_CANDIDATE_COLUMNS)
                .where(
                    Incident.status.in_(OPEN_STATES),
                    Incident.merged_into_id.is_(None),
                    Incident.last_report_at >= since,
                    Incident.lat.between(min_lat, max_lat),
                    Incident.lon.between(min_lon, max_lon),
                )
                .order_by(Incident.last_report_at.desc())
                .limit(MAX_CANDIDATES)
            ).all()
        batch.nearby[key] = (since, rows)
    found = {i.id: i for i in rows} | batch.incidents_in(min_lat, max_lat, min_lon, max_lon)
    live = sorted(
        (
            i
            for i in found.values()
            if i.lat is not None  # the box first: it rules out most of what the batch holds
            and i.lon is not None
            and min_lat <= i.lat <= max_lat
            and min_lon <= i.lon <= max_lon
            and i.status in OPEN_STATES
            and i.merged_into_id is None
            and i.last_report_at >= since
        ),
        key=lambda i: i.last_report_at,
        reverse=True,
    )[:MAX_CANDIDATES]
    if not live:
        return []
    ids = {i.id for i in live}
    earlier: dict[int, list[tuple[int | None, datetime, str]]] = {}
    if report.focal_point_id is not None:
        repeat_since = report.received_at - REPEAT_WINDOW
        # This focal point's reports stored before the batch began (read with it), then the batch's own.
        sender = report.focal_point_id
        mine = [(r.incident_id, r.received_at, t) for r, t in batch.reports_of(sender)]
        for incident_id, at, body in [*batch.recent_reports(sender), *mine]:
            if incident_id in ids and at >= repeat_since:
                earlier.setdefault(incident_id, []).append((sender, at, body))
    return [
        Candidate(i.id, i.category, i.severity, i.lat, i.lon, i.last_report_at, tuple(earlier.get(i.id, ())))
        for i in live
    ]


def _read_batch_candidates(batch: _Batch) -> None:
    """The candidate incidents of every alert in the batch, in one query instead of one per message.

    Where each alert of the batch would be matched is worked out from its text and its focal point (the
    gazetteer and the zones, no online geocoder); the rows read for all those places and windows together
    are a superset of each one's, which `_candidates` filters again on the objects. An alert that ends up
    elsewhere (the online geocoder placed it) misses this and is read on its own, as before.
    """
    batch._prefetched = True
    wanted: list[
        tuple[tuple[float, float, float, timedelta], datetime, tuple[float, float, float, float]]
    ] = []
    alerts: list[tuple[NewReport, DedupRules]] = []
    for message in batch.messages:
        focal_point = batch.focal_points.get(message.sender)
        if focal_point is None:
            continue
        parsed = batch.parsed(message)
        if not _is_alert(message, parsed):
            continue
        location = _gazetteer_location(batch, message, focal_point)
        if location.lat is None or location.lon is None:
            continue
        _zone_id, rules = _zone_and_rules(batch, location, focal_point)
        key = (location.lat, location.lon, rules.distance_km, rules.window)
        box = bounding_box(location.lat, location.lon, rules.distance_km)
        wanted.append((key, message.received_at - rules.window, box))
        ctx = _Context(batch, message, parsed, beep=message.channel == "voice")
        alerts.append((_new_report(ctx, location, focal_point), rules))
    if len(wanted) < 2:
        return  # one alert: its own query is the same query
    since = min(w[1] for w in wanted)
    # One box around them all: the same statement every batch (compiled and prepared once); each place's
    # own box is cut out of the rows below. Open incidents are few, so the wider box costs little.
    boxes = [w[2] for w in wanted]
    with batch.session.no_autoflush:
        rows = batch.session.execute(
            select(*_CANDIDATE_COLUMNS).where(
                Incident.status.in_(OPEN_STATES),
                Incident.merged_into_id.is_(None),
                Incident.last_report_at >= since,
                Incident.lat.between(min(b[0] for b in boxes), max(b[1] for b in boxes)),
                Incident.lon.between(min(b[2] for b in boxes), max(b[3] for b in boxes)),
            )
        ).all()
    near: set[int] = set()
    # By latitude, so that each place's box is cut from the few rows of its own latitudes (many places and
    # many rows made this a scan of every row for every place).
    rows.sort(key=lambda r: r.lat)
    lats = [r.lat for r in rows]
    for key, _since, (a, b, c, d) in wanted:
        if key not in batch.nearby:  # each place keeps the rows of its own box, cut once, not per message
            band = rows[bisect_left(lats, a) : bisect_right(lats, b)]
            batch.nearby[key] = (since, [r for r in band if c <= r.lon <= d])
            near.update(r.id for r in batch.nearby[key][1])
    # Who reported each of them, for the corroboration count of a merge: one query for all, not one per merge.
    unknown = [i for i in near if i not in batch._reporters]
    if unknown:
        batch.load_reporters(unknown)
    # The incidents the alerts will most likely merge into, matched as if each were the batch's first, are
    # row-locked in one statement rather than one each at its merge (a sixth of a batch's CPU). A guess that
    # misses costs only a row locked for the batch's short while; a merge it did not foresee locks its own.
    likely = set()
    for new_report, rules in alerts:
        match = best_match(new_report, _candidates(batch, new_report, rules), rules)
        if match is not None:
            likely.add(match.incident_id)
    batch.lock_incidents(likely)


def _alert(ctx: _Context, focal_point: FocalPoint) -> Outcome:
    session = ctx.session
    location = _locate(ctx, focal_point)
    zone_id, rules = _zone_and_rules(ctx.batch, location, focal_point)
    category, severity = ctx.category, ctx.severity

    # Matching reads then writes: the batch took the matching lock when it began (_Batch.load).
    match: Match | None = None
    if location.lat is not None and location.lon is not None:
        new = _new_report(ctx, location, focal_point)
        match = best_match(new, _candidates(ctx.batch, new, rules), rules)

    if match is None:
        incident = _open_incident(ctx, location, zone_id, category, severity)
        report = _make_report(ctx, focal_point, incident, location)
        incidents.record(
            session,
            incident,
            "opened",
            f"{category}, {severity}: first report",
            ctx.now,
            report_message=ctx.message.id,
        )
        incidents.record(
            session,
            incident,
            "located",
            location.note,
            ctx.now,
            located_by=location.located_by.value,
            confidence=report.confidence,
        )
        receipt, decision = "receipt", f"opened incident {incident.number}"
    else:
        incident = ctx.batch.lock_incident(match.incident_id)
        report = _make_report(ctx, focal_point, incident, location, is_repeat=match.repeat)
        _merge_into(ctx, incident, report, match, focal_point)
        receipt, decision = "receipt_corroboration", f"{match.reason} into {incident.number}"
    if ctx.beep:
        _request_callback(ctx, incident, focal_point)
    return ctx.reply(
        receipt,
        focal_point.language,
        decision,
        focal_point_id=focal_point.id,
        incident=incident,
        number=incident.number,
    )


def _new_report(ctx: _Context, location: Location, focal_point: FocalPoint) -> NewReport:
    """What matching knows of the alert a message is about to report (called once it is placed)."""
    return NewReport(
        ctx.category,
        ctx.severity,
        location.lat,
        location.lon,
        ctx.message.received_at,
        location.located_by.value,
        focal_point.id,
        ctx.message.text,
    )


def _zone_and_rules(
    batch: _Batch, location: Location, focal_point: FocalPoint
) -> tuple[int | None, DedupRules]:
    """The zone an alert belongs to (where it happened, else the focal point's) and its dedup rules."""
    zone_id = focal_point.zone_id
    if location.lat is not None and location.lon is not None:
        area = batch.zone_at(location.lat, location.lon)
        zone_id = area.id if area else zone_id
    zone = batch.zone(zone_id)
    return zone_id, DedupRules(
        distance_km=zone.dedup_distance_km if zone else 10.0,
        window=timedelta(minutes=zone.dedup_window_minutes if zone else 360),
    )


def _request_callback(ctx: _Context, incident: Incident, focal_point: FocalPoint) -> None:
    """A beep says only "something is wrong here": a responder must call back and record what was learned."""
    incident.callback_pending = True
    if not incident.place_name:
        incident.place_name = _home_village(ctx.session, focal_point)
    incidents.record(
        ctx.session,
        incident,
        "callback_needed",
        f"missed call from {focal_point.name}: call back and record the result (APPEL {incident.number} ...)",
        ctx.now,
        focal_point=focal_point.id,
    )


def _home_village(session: Session, focal_point: FocalPoint) -> str:
    """The name of the gazetteer place nearest the focal point's home (within a few km), or ''."""
    if focal_point.home_place is not None:
        return focal_point.home_place.name
    if focal_point.home_lat is None or focal_point.home_lon is None:
        return ""
    min_lat, max_lat, min_lon, max_lon = bounding_box(focal_point.home_lat, focal_point.home_lon, 5.0)
    nearby = session.execute(
        select(Place.name, Place.lat, Place.lon).where(
            Place.lat.between(min_lat, max_lat), Place.lon.between(min_lon, max_lon)
        )
    ).all()
    home = (focal_point.home_lat, focal_point.home_lon)
    return min(nearby, key=lambda p: approx_km(home, (p.lat, p.lon))).name if nearby else ""


def _open_incident(
    ctx: _Context, location: Location, zone_id: int | None, category: str, severity: str
) -> Incident:
    parsed = ctx.parsed
    with ctx.session.no_autoflush:
        number, incident_id = incidents.allocate_incident(ctx.session)
    incident = Incident(
        id=incident_id,
        number=number,
        category=category,
        secondary_categories=[c.value for c in parsed.secondary_categories],
        severity=severity,
        status=IncidentStatus.OPEN,
        count=parsed.count,
        lat=location.lat,
        lon=location.lon,
        place_id=location.place_id,
        place_name=location.place_name or "",
        zone_id=zone_id,
        confidence=report_confidence(location),
        first_report_at=ctx.message.received_at,
        last_report_at=ctx.message.received_at,
        created_at=ctx.now,
    )
    ctx.session.add(incident)
    if incident.id is None:  # SQLite: the id comes with the row (the batch's pending rows go with it)
        ctx.session.flush()
    else:  # written at the batch's flush: until then it must read as its row will
        _fill_defaults(incident)
    ctx.batch.opened(incident)
    return incident


def _fill_defaults(instance: Any) -> None:
    """Give the attributes left unset the column defaults an INSERT would give them, so that the object
    reads as its row will before it is flushed."""
    for column in instance.__table__.columns:
        default = column.default
        if default is None or getattr(instance, column.key) is not None:
            continue
        if default.is_scalar:
            setattr(instance, column.key, default.arg)
        elif default.is_callable:
            setattr(instance, column.key, default.arg(None))


def _merge_into(
    ctx: _Context, incident: Incident, report: ReportRow, match: Match, focal_point: FocalPoint
) -> None:
    session, now = ctx.session, ctx.now
    incident.last_report_at = max(incident.last_report_at, report.received_at)
    if match.repeat:
        incidents.record(session, incident, "repeat", match.reason, now, focal_point=focal_point.id)
        return
    reporters = ctx.batch.reporters(incident.id, besides=report)
    if focal_point.id in reporters:
        detail = f"{match.reason}; same focal point again"
    else:
        incident.confidence = combined_confidence(incident.confidence, report.confidence)
        incident.update_pending = True  # responders hear of it once per throttle period, not per report
        detail = f"{match.reason}; corroboration {len(reporters) + 1}, confidence {incident.confidence:.2f}"
    incidents.record(session, incident, "merged", detail, now, located_by=report.located_by)
    if report.count is not None and (incident.count is None or report.count > incident.count):
        incident.count = report.count
    if incident.category == "unknown" and report.category != "unknown":
        incidents.categorise(session, incident, report.category, report.severity, now, "a report's text")
    elif is_upgrade(incident.severity, report.severity):
        before = f"{incident.category}/{incident.severity}"
        incident.category, incident.severity = report.category, report.severity
        # A stricter policy applies: the engine replans escalation from the new generation.
        incident.escalation_generation += 1
        incident.policy_snapshot = None
        incidents.record(
            session,
            incident,
            "upgraded",
            f"upgraded from {before} to {incident.category}/{incident.severity}",
            now,
        )


# --- self-registration ----------------------------------------------------------------------------


def _register(ctx: _Context) -> Outcome:
    """`REG <name> <village>` from an unknown number: a pending focal point, located through the gazetteer."""
    language = ctx.parsed.language or "fr"
    words = (ctx.parsed.argument or "").split()
    if len(words) < 2:
        return ctx.reply("registration_help", language, "registration: name or village missing")
    places = ctx.batch.gazetteer()
    name, village, location = " ".join(words[:-1]), words[-1], None
    for size in (3, 2, 1):  # the longest tail of words that is a known place is the village
        if len(words) > size:
            found = places.locate((" ".join(words[-size:]),), None, None)
            if found.located_by == LocatedBy.GAZETTEER:
                name, village, location = " ".join(words[:-size]), found.place_name or words[-1], found
                break
    zone_id = None
    if location is not None and location.lat is not None and location.lon is not None:
        area = zone_for_point(location.lat, location.lon, ctx.batch.zone_areas())
        zone_id = area.id if area else None
    focal_point = FocalPoint(
        name=name[:200],
        phone=ctx.message.sender,
        language=language if language in LANGUAGES else "fr",
        home_lat=location.lat if location else None,
        home_lon=location.lon if location else None,
        home_place_id=location.place_id if location else None,
        zone_id=zone_id,
        status=FocalPointStatus.PENDING,
        last_seen_at=ctx.now,
        created_at=ctx.now,
    )
    ctx.session.add(focal_point)
    ctx.session.flush()
    ctx.batch.focal_points[focal_point.phone] = focal_point  # the sender's next message in this batch
    ctx.sender_kind = SenderKind.FOCAL_POINT
    where = f"{village} (gazetteer)" if location else f"{village} (not in the gazetteer)"
    log.info(
        "registration request %s: focal point %s pending, village %s", ctx.message.id, focal_point.id, where
    )
    return ctx.reply(
        "registration_pending",
        focal_point.language,
        f"registration pending: focal point {focal_point.id}",
        focal_point_id=focal_point.id,
        name=name.split()[0],
        village=village,
    )


# --- responders -----------------------------------------------------------------------------------


def _from_responder(ctx: _Context, responder: Responder) -> Outcome:
    parsed = ctx.parsed
    if parsed.kind != Kind.COMMAND or parsed.command not in RESPONDER_COMMANDS:
        return ctx.reply(
            "unknown_command", responder.language, "responder text not understood", responder_id=responder.id
        )
    return RESPONDER_COMMANDS[parsed.command](ctx, responder)


def _incident_for_command(ctx: _Context, responder: Responder) -> Incident | Outcome:
    if ctx.parsed.ref is None:
        return ctx.reply(
            "command_needs_number",
            responder.language,
            "command without incident number",
            responder_id=responder.id,
        )
    try:
        incident = incidents.find_by_number(ctx.session, ctx.parsed.ref, for_update=True)
    except incidents.IncidentNotFound:
        return ctx.reply(
            "incident_not_found",
            responder.language,
            f"incident {ctx.parsed.ref} not found",
            responder_id=responder.id,
            number=ctx.parsed.ref,
        )
    if not incidents.responder_may_act(responder, incident):
        return ctx.reply(
            "not_your_zone",
            responder.language,
            f"incident {incident.number}: not their zone",
            responder_id=responder.id,
            number=incident.number,
        )
    return incident


def _actor(responder: Responder) -> str:
    return f"responder {responder.name} (tier {responder.tier})"


def _ack(ctx: _Context, responder: Responder) -> Outcome:
    found = _incident_for_command(ctx, responder)
    if isinstance(found, Outcome):
        return found
    incident = found
    result = incidents.acknowledge(ctx.session, incident, ctx.now, _actor(responder), responder)
    fields = {"responder_id": responder.id, "incident": incident, "number": incident.number}
    if result == incidents.Ack.CLOSED:
        return ctx.reply(
            "already_closed", responder.language, "ack of a closed incident", status=incident.status, **fields
        )
    if result == incidents.Ack.ADDITIONAL:
        holder = incident.acknowledged_by.name if incident.acknowledged_by else "?"
        return ctx.reply(
            "already_acknowledged", responder.language, "additional acknowledgement", name=holder, **fields
        )
    return ctx.reply(
        "ack_done", responder.language, f"incident {incident.number} acknowledged ({result})", **fields
    )


def _closer(status: IncidentStatus, done_key: str) -> Callable[[_Context, Responder], Outcome]:
    def handle(ctx: _Context, responder: Responder) -> Outcome:
        found = _incident_for_command(ctx, responder)
        if isinstance(found, Outcome):
            return found
        incident = found
        if not incidents.close(ctx.session, incident, status, ctx.now, _actor(responder)):
            return ctx.reply(
                "already_closed",
                responder.language,
                "already closed",
                responder_id=responder.id,
                incident=incident,
                number=incident.number,
                status=incident.status,
            )
        return ctx.reply(
            done_key,
            responder.language,
            f"incident {incident.number} {status.value}",
            responder_id=responder.id,
            incident=incident,
            number=incident.number,
        )

    return handle


def _status(ctx: _Context, responder: Responder) -> Outcome:
    found = _incident_for_command(ctx, responder)
    if isinstance(found, Outcome):
        return found
    incident = found
    reports = ctx.session.scalar(
        select(func.count()).select_from(Report).where(Report.incident_id == incident.id)
    )
    return ctx.reply(
        "status",
        responder.language,
        "status sent",
        responder_id=responder.id,
        incident=incident,
        number=incident.number,
        category=incident.category,
        place=incident.place_name or "?",
        status=incident.status,
        reports=reports,
    )


def _responder_help(ctx: _Context, responder: Responder) -> Outcome:
    return ctx.reply("help_responder", responder.language, "help sent", responder_id=responder.id)


def callback_category(learned: str, settings: PipelineSettings) -> tuple[str | None, str | None]:
    """The category and severity a call-back's notes name, if they read as an alert."""
    if not learned:
        return None, None
    parsed = parse_message(learned, keywords(settings.keywords_dirs))
    if parsed.kind != Kind.ALERT or parsed.category is None or parsed.severity is None:
        return None, None
    return parsed.category.value, parsed.severity.value


def _callback(ctx: _Context, responder: Responder) -> Outcome:
    """`APPEL 123 <what was learned>`: the call-back's result, which can give the beep its real category."""
    found = _incident_for_command(ctx, responder)
    if isinstance(found, Outcome):
        return found
    learned = (ctx.parsed.argument or "").strip()
    category, severity = callback_category(learned, ctx.settings)
    incidents.record_callback(ctx.session, found, learned, category, severity, ctx.now, _actor(responder))
    return ctx.reply(
        "callback_recorded",
        responder.language,
        f"call-back recorded on {found.number}",
        responder_id=responder.id,
        incident=found,
        number=found.number,
    )


RESPONDER_COMMANDS: dict[Command | None, Callable[[_Context, Responder], Outcome]] = {
    Command.CALLBACK: _callback,
    Command.ACK: _ack,
    Command.RESOLVE: _closer(IncidentStatus.RESOLVED, "resolve_done"),
    Command.FALSE_ALARM: _closer(IncidentStatus.FALSE_ALARM, "false_alarm_done"),
    Command.STATUS: _status,
    Command.HELP: _responder_help,
}
