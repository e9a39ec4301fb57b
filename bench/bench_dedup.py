"""Per-report cost of the alert pipeline with 1,000 and with 1,000,000 past incidents (issue 5, "Scale").

    .venv/bin/python bench/bench_dedup.py --db both --history 1000,1000000 --reports 300

For each database kind and history size: a throwaway database (a SQLite file in a temporary directory, or
a fresh PostgreSQL database beside the admin URL's, dropped at the end) migrated with alerts.migrate.upgrade;
the demo network of North Kivu plus generated villages and focal points; HISTORY past incidents bulk-loaded
with their reports, inbound messages and receipts, spread over three years; then new reports from focal
points, arriving just after the history, each stored with store_inbound and processed by the real
process_message, which is what is timed. Half of the new reports name the village of a recent open incident
(matching merges them), half a village far from any.

The live part of the history (the incidents of the last two days) and the new reports come from their own
seeds, so they are the same whatever the history's size: only the past grows, which is what the issue asks.
The databases of one kind are loaded first, then fed their reports in alternating batches, so that whatever
else the machine does falls on every size alike. Last, one more report is processed with every SELECT it
runs on a history table captured, EXPLAINed and timed alone: a query whose time grows with the history is
named, with its plan, at the end. Exit status 1 when a ratio of medians reaches 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import platform
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from itertools import accumulate
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import create_engine, event, select, text  # noqa: E402 - needs the repo on sys.path first
from sqlalchemy.dialects import sqlite as sqlite_dialect  # noqa: E402 - needs the repo on sys.path first
from sqlalchemy.engine import make_url  # noqa: E402 - needs the repo on sys.path first

from alerts import demo, imports, migrate, pipeline  # noqa: E402 - needs the repo on sys.path first
from alerts.db import Database, normalise_url  # noqa: E402 - needs the repo on sys.path first
from alerts.dedup import LOCATION_CONFIDENCE, default_groups  # noqa: E402 - needs the repo on sys.path first
from alerts.geolocation import approx_km, zone_for_point  # noqa: E402 - needs the repo on sys.path first
from alerts.inbound import InboundForm, store_inbound  # noqa: E402 - needs the repo on sys.path first
from alerts.models import Base, FocalPoint, Place, Responder  # noqa: E402 - needs the repo on sys.path first
from alerts.parsing import load_keywords, parse_message  # noqa: E402 - needs the repo on sys.path first
from alerts.pipeline import PipelineSettings, process_message  # noqa: E402 - needs the repo on sys.path first
from alerts.states import IncidentStatus  # noqa: E402 - needs the repo on sys.path first

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # the new reports arrive just after this
HISTORY_SPAN = timedelta(days=3 * 365)
LIVE_SPAN = timedelta(hours=48)  # the recent past, where a realistic share of incidents is still open
LIVE_INCIDENTS = 240  # about five an hour over the province, whatever the size of the past
MAX_REPORT_SPREAD = timedelta(hours=4)  # first to last report of one past incident
ARRIVAL_GAP = timedelta(seconds=10)
CHUNK = 20_000  # past incidents generated and written at a time
TARGET_RATIO = 2.0
HISTORY_TABLES = ("incidents", "reports", "inbound_messages", "outbound_messages")
SHORT_CODE = "+15005550006"

# Texts as focal points write them; category, severity and language come from the real parser.
TEMPLATES = (
    "ATTAQUE a {p} ce matin, {n} hommes armes",
    "{n} personnes tuees a {p} par des hommes armes",
    "enlevement de {n} femmes au champ pres de {p}",
    "hommes armes signales a {p}",
    "Watu wenye silaha wameonekana {p} asubuhi hii, karibu {n}",
    "watu {n} wameuawa {p} usiku wa leo",
    "Mapigano makali karibu na {p} tangu jana",
    "Abantu bitwaje intwaro bageze i {p}",
    "Armed men attacked {p} last night, {n} killed",
    "maisons incendiees a {p}, population en fuite",
    "pillage des boutiques au marche de {p}",
    "deplacement des familles a {p}",
    "menaces contre la population de {p}",
    "affrontements entre groupes armes a {p}",
    "viol de {n} femmes a {p}",
)
SYLLABLES = (
    "ka", "ki", "ku", "ma", "mu", "ba", "bu", "ru", "ri", "nya", "sha", "shi", "tshi", "nga", "ngo", "mbo",
    "mba", "lu", "le", "ga", "go", "to", "we", "wa", "so", "ni", "nzi", "bi", "mi", "yo", "ndu", "nde", "ro",
)  # fmt: skip
# (status, weight): old incidents are mostly closed, a few never were; recent ones are mostly still open.
OLD_STATUSES = (("resolved", 75), ("false_alarm", 20), ("acknowledged", 3), ("open", 2))
LIVE_STATUSES = (("open", 45), ("acknowledged", 30), ("resolved", 18), ("false_alarm", 7))
MERGED_SHARE = 0.01  # old incidents a coordinator merged into the one before
LOCATED_BY = (("gazetteer", 72), ("home", 15), ("coordinates", 10), ("none", 3))
REPORTS_PER_INCIDENT = ((1, 65), (2, 20), (3, 10), (4, 3), (6, 2))
OPEN_STATES = (IncidentStatus.OPEN.value, IncidentStatus.ACKNOWLEDGED.value)

INBOUND_COLUMNS = (
    "id", "provider", "provider_message_id", "channel", "sender", "recipient", "text", "received_at", "raw",
    "sender_kind", "state", "attempts", "processed_at",
)  # fmt: skip
INCIDENT_COLUMNS = (
    "id", "number", "category", "secondary_categories", "severity", "status", "count", "lat", "lon",
    "place_id", "place_name", "zone_id", "confidence", "first_report_at", "last_report_at", "acknowledged_at",
    "acknowledged_by_id", "resolved_at", "merged_into_id", "policy_snapshot", "escalation_generation",
    "created_at",
)  # fmt: skip
REPORT_COLUMNS = (
    "id", "inbound_message_id", "focal_point_id", "incident_id", "category", "secondary_categories",
    "severity", "count", "language", "place_text", "place_id", "lat", "lon", "located_by", "location_note",
    "confidence", "is_repeat", "received_at",
)  # fmt: skip
OUTBOUND_COLUMNS = (
    "id", "recipient", "body", "purpose", "state", "idempotency_key", "incident_id", "focal_point_id",
    "provider", "provider_message_id", "provider_status", "attempts", "segments", "created_at", "sent_at",
    "delivered_at",
)  # fmt: skip
# Written in this order, so that every foreign key points at a row already there.
ROWS = (
    ("inbound_messages", INBOUND_COLUMNS),
    ("incidents", INCIDENT_COLUMNS),
    ("reports", REPORT_COLUMNS),
    ("outbound_messages", OUTBOUND_COLUMNS),
)
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format, checked in _sqlite_stamp

Row = tuple[Any, ...]
Stamp = Callable[[datetime | None], Any]


@dataclass(frozen=True)
class TableLoad:
    """The columns one history table is loaded with: the bench's own, then the model's scalar defaults."""

    name: str
    columns: tuple[str, ...]
    defaults: Row

    @classmethod
    def of(cls, name: str, columns: tuple[str, ...]) -> TableLoad:
        # Columns added by later migrations are filled with their model default, so the bench keeps working.
        names, values = [], []
        for column in Base.metadata.tables[name].columns:
            if column.name in columns:
                continue
            default = column.default
            if default is not None and default.is_scalar:
                names.append(column.name)
                arg = default.arg
                values.append(arg.value if isinstance(arg, Enum) else arg)
            elif not column.nullable and column.server_default is None:
                raise SystemExit(
                    f"{name}.{column.name} is required and has no scalar default: add it to ROWS"
                )
        return cls(name, columns + tuple(names), tuple(values))


def table_loads() -> tuple[TableLoad, ...]:
    return tuple(TableLoad.of(name, columns) for name, columns in ROWS)


@dataclass(frozen=True)
class Template:
    text: str
    category: str
    severity: str
    language: str


@dataclass(frozen=True)
class Village:
    place_id: int
    name: str
    lat: float
    lon: float
    zone_id: int


@dataclass(frozen=True)
class Sender:
    focal_point_id: int
    phone: str
    home: Village


@dataclass
class Network:
    villages: list[Village]
    senders: list[Sender]
    senders_by_zone: dict[int, list[Sender]]
    responder_ids: list[int]

    def sender_in(self, zone_id: int, rng: random.Random) -> Sender:
        return rng.choice(self.senders_by_zone.get(zone_id) or self.senders)


@dataclass(frozen=True)
class PastIncident:
    """One incident of the history as it happened: where, what, who reported it, how it ended."""

    village: Village | None  # None when nothing located it
    template: Template
    located_by: str
    lat: float | None
    lon: float | None
    zone_id: int
    count: int | None
    reports: tuple[tuple[Sender, datetime], ...]
    status: str
    acknowledged_at: datetime | None
    acknowledged_by_id: int | None
    resolved_at: datetime | None
    merged: bool

    @property
    def last_report_at(self) -> datetime:
        return self.reports[-1][1]


@dataclass
class RunResult:
    db: str
    history: int
    load_seconds: float
    timings_ms: list[float]
    decisions: Counter[tuple[str, str]]
    probes: list[QueryProbe] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.timings_ms)

    @property
    def p95(self) -> float:
        ordered = sorted(self.timings_ms)
        return ordered[round(0.95 * (len(ordered) - 1))]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.timings_ms)


def _weighted(pairs: Sequence[tuple[Any, int]]) -> Callable[[random.Random], Any]:
    values = [v for v, _ in pairs]
    cumulative = list(accumulate(w for _, w in pairs))
    return lambda rng: rng.choices(values, cum_weights=cumulative)[0]


_old_status = _weighted(OLD_STATUSES)
_live_status = _weighted(LIVE_STATUSES)
_located_by = _weighted(LOCATED_BY)
_reports_per_incident = _weighted(REPORTS_PER_INCIDENT)


def parsed_templates() -> list[Template]:
    """Each template with the category, severity and language the parser gives it."""
    keywords = load_keywords(())
    out = []
    for template in TEMPLATES:
        parsed = parse_message(template.format(p="Kalembushi", n=12), keywords)
        assert parsed.category is not None, template
        assert parsed.severity is not None, template
        out.append(Template(template, parsed.category.value, parsed.severity.value, parsed.language or "fr"))
    return out


# --- the network --------------------------------------------------------------------------------------


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> io.StringIO:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    out.seek(0)
    return out


def _village_name(rng: random.Random, taken: set[str]) -> str:
    while True:
        name = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(3, 4))).capitalize()
        if name.lower() not in taken:
            taken.add(name.lower())
            return name


def _point_in_circle(rng: random.Random, lat: float, lon: float, radius_km: float) -> tuple[float, float]:
    distance = radius_km * math.sqrt(rng.random())
    bearing = rng.uniform(0, 2 * math.pi)
    dlat = distance * math.cos(bearing) / 111.32
    dlon = distance * math.sin(bearing) / (111.32 * math.cos(math.radians(lat)))
    return round(lat + dlat, 5), round(lon + dlon, 5)


def seed_network(database: Database, seed: int, villages: int, focal_points: int) -> Network:
    """The demo network (zones, responders, policies, 40 focal points) plus generated villages and senders."""
    rng = random.Random(seed)
    with database.session() as session:
        demo.seed_demo(session)
        taken = {name.lower() for name in session.scalars(select(Place.name))}
        rows = []
        for i in range(max(0, villages - len(taken))):
            zone_name, lat, lon, radius_km = demo.ZONES[i % len(demo.ZONES)]
            rows.append([_village_name(rng, taken), *_point_in_circle(rng, lat, lon, radius_km), "Nord-Kivu"])
        imports.import_places(
            session,
            _csv(("name", "lat", "lon", "admin1", "admin2", "alt_names"), [[*r, "", ""] for r in rows]),
        )
        areas = pipeline.zone_areas(session)
        zone_names = {area.id: area.name for area in areas}
        all_villages = []
        for place in session.execute(select(Place.id, Place.name, Place.lat, Place.lon).order_by(Place.id)):
            zone = zone_for_point(place.lat, place.lon, areas)
            assert zone is not None
            all_villages.append(Village(place.id, place.name, place.lat, place.lon, zone.id))

        existing = len(session.scalars(select(FocalPoint.id)).all())
        sender_rows = []
        for i in range(max(0, focal_points - existing)):
            home = rng.choice(all_villages)
            zone_name = zone_names[home.zone_id]
            sender_rows.append(
                [
                    f"{rng.choice(demo.FIRST_NAMES)} {rng.choice(demo.LAST_NAMES)}",
                    f"+2438170{i:05d}",
                    home.lat,
                    home.lon,
                    zone_name,
                    demo.LANGUAGE_BY_ZONE.get(zone_name, "fr"),
                ]
            )
        imports.import_focal_points(
            session, _csv(("name", "phone", "lat", "lon", "zone", "language"), sender_rows)
        )
        by_position = {(round(v.lat, 4), round(v.lon, 4)): v for v in all_villages}
        senders = []
        for fp in session.execute(
            select(FocalPoint.id, FocalPoint.phone, FocalPoint.home_lat, FocalPoint.home_lon).order_by(
                FocalPoint.id
            )
        ):
            home = by_position.get((round(fp.home_lat, 4), round(fp.home_lon, 4))) or min(
                all_villages, key=lambda v: approx_km((v.lat, v.lon), (fp.home_lat, fp.home_lon))
            )
            senders.append(Sender(fp.id, fp.phone, home))
        responder_ids = list(session.scalars(select(Responder.id).order_by(Responder.id)))
    by_zone: dict[int, list[Sender]] = {}
    for sender in senders:
        by_zone.setdefault(sender.home.zone_id, []).append(sender)
    return Network(all_villages, senders, by_zone, responder_ids)


# --- the history --------------------------------------------------------------------------------------


def past_incident(
    rng: random.Random,
    network: Network,
    templates: Sequence[Template],
    first_at: datetime,
    latest: datetime,
    *,
    live: bool,
) -> PastIncident:
    """One past incident starting at first_at whose reports all arrive before latest."""
    template = rng.choice(templates)
    located_by = _located_by(rng)
    if located_by in ("home", "none"):
        first_sender = rng.choice(network.senders)
        village: Village | None = first_sender.home if located_by == "home" else None
        zone_id = first_sender.home.zone_id
    else:
        village = rng.choice(network.villages)
        first_sender = network.sender_in(village.zone_id, rng)
        zone_id = village.zone_id
    lat = lon = None
    if village is not None:
        lat, lon = village.lat, village.lon
        if located_by == "coordinates":
            lat, lon = round(lat + rng.uniform(-0.01, 0.01), 5), round(lon + rng.uniform(-0.01, 0.01), 5)
    spread = min(MAX_REPORT_SPREAD, latest - first_at)
    later = sorted(first_at + spread * rng.random() for _ in range(_reports_per_incident(rng) - 1))
    reports = ((first_sender, first_at), *((network.sender_in(zone_id, rng), at) for at in later))
    status = _live_status(rng) if live else _old_status(rng)
    acknowledged_at = acknowledged_by = resolved_at = None
    if status != "open":
        acknowledged_at = first_at + timedelta(minutes=rng.uniform(3, 90))
        acknowledged_by = rng.choice(network.responder_ids)
    if status in ("resolved", "false_alarm"):
        assert acknowledged_at is not None
        resolved_at = acknowledged_at + timedelta(hours=rng.uniform(1, 72))
    return PastIncident(
        village=village,
        template=template,
        located_by=located_by,
        lat=lat,
        lon=lon,
        zone_id=zone_id,
        count=rng.randint(1, 60) if "{n}" in template.text else None,
        reports=reports,
        status=status,
        acknowledged_at=acknowledged_at,
        acknowledged_by_id=acknowledged_by,
        resolved_at=resolved_at,
        merged=not live and rng.random() < MERGED_SHARE,
    )


def live_incidents(
    network: Network, templates: Sequence[Template], count: int, seed: int
) -> list[PastIncident]:
    """The incidents of the last two days: the same for every history size."""
    rng = random.Random(seed + 1)
    start, step = NOW - LIVE_SPAN, LIVE_SPAN / count
    return [
        past_incident(
            rng, network, templates, start + step * (i + rng.random()), NOW - timedelta(minutes=1), live=True
        )
        for i in range(count)
    ]


class HistoryRows:
    """Turns past incidents into rows of the four history tables, numbering them as the pipeline would."""

    def __init__(self, stamp: Stamp) -> None:
        self.stamp = stamp
        # Every past incident was escalated: the engine snapshotted its severity's default policy.
        policies = json.loads((demo.DATA / "default_policies.json").read_text(encoding="utf-8"))
        self.snapshots = {k: json.dumps(v) for k, v in policies.items() if not k.startswith("_")}
        self.incident_id = self.report_id = 0
        self.tables: tuple[list[Row], ...] = ([], [], [], [])

    def take(self) -> tuple[list[Row], ...]:
        tables, self.tables = self.tables, ([], [], [], [])
        return tables

    def add(self, past: PastIncident) -> None:
        inbound, incidents, reports, outbound = self.tables
        stamp, template = self.stamp, past.template
        self.incident_id += 1
        incident_id = self.incident_id
        place_id = past.village.place_id if past.village and past.located_by == "gazetteer" else None
        place_name = past.village.name if place_id else ""
        place_text = past.village.name.lower() if past.village else ""
        confidence = LOCATION_CONFIDENCE[past.located_by]
        incidents.append(
            (
                incident_id,
                incident_id,
                template.category,
                "[]",
                template.severity,
                IncidentStatus.MERGED.value if past.merged else past.status,
                past.count,
                past.lat,
                past.lon,
                place_id,
                place_name,
                past.zone_id,
                round(min(0.99, confidence + 0.1 * (len(past.reports) - 1)), 3),
                stamp(past.reports[0][1]),
                stamp(past.last_report_at),
                stamp(past.acknowledged_at),
                past.acknowledged_by_id,
                stamp(past.resolved_at),
                incident_id - 1 if past.merged and incident_id > 1 else None,
                self.snapshots[template.severity],
                0,
                stamp(past.reports[0][1]),
            )
        )
        body = template.text.format(p=past.village.name if past.village else "ici", n=past.count)
        for sender, at in past.reports:
            self.report_id += 1
            report_id = self.report_id
            received, replied = stamp(at), stamp(at + timedelta(seconds=2))
            inbound.append(
                (
                    report_id,
                    "twilio" if report_id % 3 else "africastalking",
                    f"H{report_id:012d}",
                    "sms",
                    sender.phone,
                    SHORT_CODE,
                    body,
                    received,
                    "{}",
                    "focal_point",
                    "processed",
                    0,
                    replied,
                )
            )
            reports.append(
                (
                    report_id,
                    report_id,
                    sender.focal_point_id,
                    incident_id,
                    template.category,
                    "[]",
                    template.severity,
                    past.count,
                    template.language,
                    place_text,
                    place_id,
                    past.lat,
                    past.lon,
                    past.located_by,
                    past.located_by,
                    confidence,
                    False,
                    received,
                )
            )
            outbound.append(
                (
                    report_id,
                    sender.phone,
                    f"Alerte {incident_id} recue. Merci.",
                    "receipt",
                    "delivered",
                    f"reply:{report_id}",
                    incident_id,
                    sender.focal_point_id,
                    "twilio",
                    f"HR{report_id:012d}",
                    "delivered",
                    1,
                    1,
                    replied,
                    replied,
                    stamp(at + timedelta(seconds=9)),
                )
            )


def history_chunks(
    network: Network,
    templates: Sequence[Template],
    live: Sequence[PastIncident],
    total: int,
    seed: int,
    stamp: Stamp,
) -> Iterator[tuple[list[Row], ...]]:
    """The old incidents, spread over three years, then the live ones; in chunks of rows per table."""
    rng = random.Random(seed + 3)
    old = total - len(live)
    start = NOW - HISTORY_SPAN
    step = (HISTORY_SPAN - LIVE_SPAN) / max(old, 1)
    rows = HistoryRows(stamp)
    for i in range(old):
        first_at = start + step * (i + rng.random())
        rows.add(past_incident(rng, network, templates, first_at, first_at + MAX_REPORT_SPREAD, live=False))
        if rows.incident_id % CHUNK == 0:
            yield rows.take()
    for past in live:
        rows.add(past)
    yield rows.take()


def _sqlite_stamp() -> Stamp:
    """Datetimes as SQLAlchemy stores them in SQLite (naive UTC text), checked against SQLAlchemy itself."""
    sample = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    expected = sqlite_dialect.DATETIME().bind_processor(sqlite_dialect.dialect())(sample.replace(tzinfo=None))
    assert sample.strftime(SQLITE_DATETIME) == expected, expected
    return lambda at: at.strftime(SQLITE_DATETIME) if at is not None else None


def _counter_upsert(placeholder: str) -> str:
    return (
        f"INSERT INTO counters (name, value) VALUES ('incident', {placeholder}) "  # noqa: S608 - a placeholder
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
    )


def load_postgresql(database: Database, chunks: Iterator[tuple[list[Row], ...]], total: int) -> None:
    """COPY every chunk in one transaction, then set the sequences and the incident counter, then VACUUM."""
    with database.engine.connect() as connection:
        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
        if connection.exec_driver_sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").scalar():
            # The generated rows are consistent by construction: skip the per-row foreign key triggers.
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        raw = connection.connection.driver_connection
        assert raw is not None
        loads = table_loads()
        with raw.cursor() as cursor:
            for chunk in chunks:
                for load, rows in zip(loads, chunk, strict=True):
                    with cursor.copy(f"COPY {load.name} ({', '.join(load.columns)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row + load.defaults)
        for table, _ in ROWS:
            connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - our own table names
                f"(SELECT coalesce(max(id), 1) FROM {table}))"
            )
        connection.exec_driver_sql(_counter_upsert("%(total)s"), {"total": total})
        connection.commit()
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        # A production database's old rows are vacuumed; fresh ones would make autovacuum run mid-measure.
        connection.exec_driver_sql("VACUUM (ANALYZE)")
        connection.exec_driver_sql("CHECKPOINT")


def load_sqlite(path: Path, chunks: Iterator[tuple[list[Row], ...]], total: int) -> None:
    """executemany in one transaction without a journal or fsync (for the load only), then ANALYZE."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        mode = connection.execute("PRAGMA journal_mode=OFF").fetchone()[0]
        assert mode == "off", mode
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-524288")  # 512 MiB
        connection.execute("PRAGMA temp_store=MEMORY")
        connection.execute("BEGIN")
        loads = table_loads()
        statements = [
            f"INSERT INTO {load.name} ({', '.join(load.columns)}) "  # noqa: S608 - our own table names
            f"VALUES ({', '.join('?' * len(load.columns))})"
            for load in loads
        ]
        for chunk in chunks:
            for statement, load, rows in zip(statements, loads, chunk, strict=True):
                defaults = load.defaults
                connection.executemany(statement, (row + defaults for row in rows))
        connection.execute(_counter_upsert("?"), (total,))
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


# --- the new reports ----------------------------------------------------------------------------------


def arrivals(
    network: Network, templates: Sequence[Template], live: Sequence[PastIncident], count: int, seed: int
) -> list[tuple[str, InboundForm]]:
    """New reports arriving after NOW: half name the village of a recent open incident, half a far village.

    One more report, near an open incident, follows the `count`: it is the one explain_pipeline processes.
    """
    rng = random.Random(seed + 2)
    groups = default_groups()
    targets = [
        p
        for p in live
        if p.status in OPEN_STATES and p.village is not None and p.last_report_at >= NOW - timedelta(hours=5)
    ]
    assert targets, "no recent open incident to report on"
    far = [
        v
        for v in network.villages
        if all(approx_km((v.lat, v.lon), (t.village.lat, t.village.lon)) > 25 for t in targets if t.village)
    ]
    kinds = ["near", "elsewhere"] * (count // 2) + ["near"] * (count % 2)
    rng.shuffle(kinds)
    kinds.append("near")  # the last one, untimed, is the one whose queries are explained
    out = []
    for i, kind in enumerate(kinds):
        if kind == "near":
            target = rng.choice(targets)
            assert target.village is not None
            village = target.village
            template = rng.choice(
                [t for t in templates if groups.compatible(t.category, target.template.category)]
            )
        else:
            village = rng.choice(far)
            template = rng.choice(templates)
        sender = network.sender_in(village.zone_id, rng)
        body = template.text.format(p=village.name, n=rng.randint(1, 60))
        at = NOW + ARRIVAL_GAP * (i + 1)
        out.append(
            (
                kind,
                InboundForm("twilio", f"SMbench{i:026d}", sender.phone, SHORT_CODE, body, at, {"Body": body}),
            )
        )
    return out


def process(
    database: Database,
    forms: Sequence[tuple[str, InboundForm]],
    result: RunResult | None = None,
) -> None:
    """Store then process each message, each in its own session as a worker would; time process_message.

    Timings and decisions go to `result`; without one the messages only warm up.
    """
    settings = PipelineSettings()
    pipeline.keywords(settings.keywords_dirs)
    with database.session() as session:
        # The pipeline caches one gazetteer per process: rebuild it for this database outside the timing.
        pipeline.gazetteer(session)
        session.rollback()
    for kind, form in forms:
        with database.session() as session:
            message_id, created = store_inbound(session, form)
            assert created
            started = time.perf_counter()
            outcome = process_message(session, message_id, now=form.received_at, settings=settings)
            elapsed_ms = (time.perf_counter() - started) * 1000
        if result is not None:
            result.timings_ms.append(elapsed_ms)
            result.decisions[(kind, outcome.decision.split()[0].rstrip(":"))] += 1


def _touches_history(statement: str) -> bool:
    return any(re.search(rf"\b(FROM|JOIN) {table}\b", statement) for table in HISTORY_TABLES)


def query_label(statement: str) -> str:
    """A short name for a captured query: its table and the columns its WHERE clause tests."""
    statement = " ".join(statement.split())
    table = re.search(r"\bFROM (\w+)", statement)
    where = statement.split(" WHERE ", 1)[1] if " WHERE " in statement else ""
    columns = dict.fromkeys(re.findall(r"\w+\.(\w+) (?:=|!=|>=|<=|>|<|IN|BETWEEN|IS)", where))
    order = " order by last_report_at" if "ORDER BY incidents.last_report_at" in statement else ""
    return f"{table.group(1) if table else '?'} by {', '.join(columns) or '-'}{order}"


@dataclass(frozen=True)
class QueryProbe:
    """One SELECT the pipeline ran on a history table: its plan and how long it takes on its own."""

    label: str
    statement: str
    plan: str
    median_ms: float

    @property
    def is_candidates(self) -> bool:
        return "ORDER BY incidents.last_report_at DESC" in self.statement


def explain_pipeline(
    database: Database, form: InboundForm, repeat: int = 30
) -> tuple[list[QueryProbe], list[str]]:
    """Process one more message, capturing each SELECT it runs on a history table; EXPLAIN and time each.

    Returns the probes and the problems seen in the plans: a full scan of a history table, or an index used
    but thousands of its rows thrown away by a filter (PostgreSQL only: SQLite's plans carry no counts).
    """
    captured: list[tuple[str, Any]] = []

    def capture(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT") and _touches_history(statement):
            captured.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        with database.session() as session:
            message_id, _ = store_inbound(session, form)
            process_message(session, message_id, now=form.received_at, settings=PipelineSettings())
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)

    postgresql = database.is_postgresql
    probes, problems = [], []
    with database.engine.connect() as connection:
        for statement, parameters in captured:
            prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgresql else "EXPLAIN QUERY PLAN "
            rows = connection.exec_driver_sql(prefix + statement, parameters).all()
            plan = "\n".join(str(row[0]) if postgresql else str(row[-1]) for row in rows)
            timings = []
            for _ in range(repeat):
                started = time.perf_counter()
                connection.exec_driver_sql(statement, parameters).all()
                timings.append((time.perf_counter() - started) * 1000)
            label = query_label(statement)
            probes.append(QueryProbe(label, statement, plan, statistics.median(timings)))
            for line in plan.splitlines():
                scan = re.search(r"Seq Scan on (\w+)", line) or re.match(r"\s*SCAN (\w+)", line)
                if scan and scan.group(1) in HISTORY_TABLES:
                    problems.append(f"full scan of {scan.group(1)} ({line.strip()}) in: {label}")
                removed = re.search(r"Rows Removed by Filter: (\d+)", line)
                if removed and int(removed.group(1)) >= 1000:
                    problems.append(f"{removed.group(1)} rows read and thrown away in: {label}")
        connection.rollback()
    return probes, problems


# --- databases and the run ----------------------------------------------------------------------------


@contextmanager
def throwaway_database(kind: str, history: int, admin_url: str, keep: bool) -> Iterator[str]:
    """A URL to a new, empty database of this kind, removed afterwards unless keep."""
    if kind == "sqlite":
        directory = tempfile.mkdtemp(prefix="bench_dedup_")
        path = Path(directory) / "bench.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            if keep:
                print(f"  kept {path}")
            else:
                for leftover in Path(directory).iterdir():
                    leftover.unlink()
                Path(directory).rmdir()
        return
    name = f"bench_dedup_{history}"
    admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        if keep:
            print(f"  kept database {name}")
        else:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Prepared:
    """A loaded database of one history size and the new reports it will receive."""

    database: Database
    forms: list[tuple[str, InboundForm]]
    result: RunResult


def prepare(
    kind: str, history: int, args: argparse.Namespace, templates: Sequence[Template], stack: ExitStack
) -> Prepared:
    """A throwaway database, migrated, seeded and loaded with `history` past incidents."""
    print(f"\n## {kind}, history {history:,}", flush=True)
    url = stack.enter_context(throwaway_database(kind, history, args.pg_admin_url, args.keep))
    migrate.upgrade(url)
    database = Database(url)
    stack.callback(database.dispose)
    if args.after_migrate_sql:
        # To try a schema change (an index) on the throwaway database before writing its migration.
        with database.engine.begin() as connection:
            for statement in filter(None, (s.strip() for s in args.after_migrate_sql.split(";"))):
                print(f"  after migrating: {statement}")
                connection.exec_driver_sql(statement)
    started = time.perf_counter()
    network = seed_network(database, args.seed, args.villages, args.focal_points)
    print(
        f"  network: {len(network.villages):,} places, {len(network.senders)} focal points, "
        f"{len(network.responder_ids)} responders, seeded in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    live = live_incidents(network, templates, min(LIVE_INCIDENTS, history // 2), args.seed)
    started = time.perf_counter()
    if kind == "postgresql":
        load_postgresql(
            database, history_chunks(network, templates, live, history, args.seed, lambda at: at), history
        )
    else:
        database.engine.dispose()  # the load's connection must be the only one
        path = Path(make_url(url).database or "")
        load_sqlite(
            path, history_chunks(network, templates, live, history, args.seed, _sqlite_stamp()), history
        )
    load_seconds = time.perf_counter() - started
    with database.session() as session:
        counts = {
            table: session.scalar(text(f"SELECT count(*) FROM {table}"))  # noqa: S608 - our own table names
            for table, _ in ROWS
        }
    print(
        f"  history loaded in {load_seconds:.1f} s (generation, insert, analyze): "
        + ", ".join(f"{table} {n:,}" for table, n in counts.items()),
        flush=True,
    )
    forms = arrivals(network, templates, live, args.warmup + args.reports, args.seed)
    return Prepared(database, forms, RunResult(kind, history, load_seconds, [], Counter()))


def run_kind(
    kind: str, sizes: Sequence[int], args: argparse.Namespace, templates: Sequence[Template]
) -> list[RunResult]:
    """Load one database per history size, then feed them the same reports in alternating batches.

    Alternating (small, large, then large, small, ...) spreads whatever else the machine is doing over
    every size alike, so that the ratio compares histories, not moments.
    """
    with ExitStack() as stack:
        prepared = [prepare(kind, size, args, templates, stack) for size in sizes]
        os.sync()  # the loads' dirty pages are written now, not during the measurement
        for p in prepared:
            process(p.database, p.forms[: args.warmup])
        timed = len(prepared[0].forms) - args.warmup - 1
        batches = max(1, min(args.batches, timed))
        for batch in range(batches):
            start = args.warmup + timed * batch // batches
            end = args.warmup + timed * (batch + 1) // batches
            for p in prepared if batch % 2 == 0 else prepared[::-1]:
                process(p.database, p.forms[start:end], p.result)
        for p in prepared:
            p.result.probes, p.result.problems = explain_pipeline(p.database, p.forms[-1][1])
    for result in (p.result for p in prepared):
        print(f"\n## {kind}, history {result.history:,}: results")
        print(
            f"  process_message over {len(result.timings_ms)} reports: median {result.median:.2f} ms, "
            f"p95 {result.p95:.2f} ms, mean {result.mean:.2f} ms"
        )
        print("  decisions: " + ", ".join(f"{k} {d} {n}" for (k, d), n in sorted(result.decisions.items())))
        print("  the history queries of one more report near an open incident, each run alone (median):")
        for probe in result.probes:
            print(f"    {probe.median_ms:7.3f} ms  {probe.label}")
        for probe in result.probes:
            if args.explain_all or probe.is_candidates:
                print("  " + " ".join(probe.statement.split()))
                print("    " + probe.plan.replace("\n", "\n    "))
        for problem in result.problems:
            print(f"  PROBLEM: {problem}")
    return [p.result for p in prepared]


def machine() -> list[str]:
    cpu = "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")
            ),
            "?",
        )
    return [
        f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu})",
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
    ]


def postgresql_version(admin_url: str) -> str:
    engine = create_engine(normalise_url(admin_url))
    try:
        with engine.connect() as connection:
            return str(connection.exec_driver_sql("SHOW server_version").scalar())
    finally:
        engine.dispose()


def table(results: Sequence[RunResult]) -> str:
    lines = [
        "| db | history | load | median | p95 | mean | median / smallest history's |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        base = min((r for r in results if r.db == result.db), key=lambda r: r.history)
        lines.append(
            f"| {result.db} | {result.history:,} | {result.load_seconds:.1f} s | {result.median:.2f} ms "
            f"| {result.p95:.2f} ms | {result.mean:.2f} ms | {result.median / base.median:.2f} |"
        )
    return "\n".join(lines)


def query_table(results: Sequence[RunResult]) -> str:
    """Each history query of the pipeline, timed alone, in every run: which one grows with the history."""
    labels = list(dict.fromkeys(probe.label for result in results for probe in result.probes))
    lines = [
        "| query (run alone, median) | " + " | ".join(f"{r.db} {r.history:,}" for r in results) + " |",
        "| --- |" + " ---: |" * len(results),
    ]
    for label in labels:
        cells = []
        for result in results:
            times = [p.median_ms for p in result.probes if p.label == label]
            cells.append(f"{times[0]:.3f} ms" if times else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every (database, history size) pair and print the table; exit 1 when a ratio reaches 2."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--history", default="1000,1000000", help="past incident counts, comma-separated")
    parser.add_argument("--reports", type=int, default=300, help="new reports timed per run")
    parser.add_argument("--warmup", type=int, default=20, help="new reports processed first, not timed")
    parser.add_argument("--batches", type=int, default=10, help="alternations between the history sizes")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--villages", type=int, default=3000, help="places in the gazetteer")
    parser.add_argument("--focal-points", type=int, default=300)
    parser.add_argument("--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--keep", action="store_true", help="keep the databases (to EXPLAIN by hand)")
    parser.add_argument(
        "--after-migrate-sql",
        default="",
        help="statements (separated by ';') run after migrating, to try an index before its migration",
    )
    parser.add_argument("--explain-all", action="store_true", help="print the plan of every history query")
    args = parser.parse_args(argv)
    sizes = sorted(int(size.replace("_", "")) for size in args.history.split(","))
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    if min(sizes) < 20:
        parser.error("--history must be at least 20")

    print("# bench_dedup")
    for line in machine():
        print(line)
    if "postgresql" in kinds:
        print(f"PostgreSQL {postgresql_version(args.pg_admin_url)}")
    print(
        f"now {NOW.isoformat()}, seed {args.seed}, {args.reports} timed after {args.warmup} untimed reports"
    )
    templates = parsed_templates()
    results = [result for kind in kinds for result in run_kind(kind, sizes, args, templates)]

    print("\n" + table(results))
    print("\n" + query_table(results))
    failed = False
    for kind in kinds:
        runs = sorted((r for r in results if r.db == kind), key=lambda r: r.history)
        if len(runs) > 1:
            ratio = runs[-1].median / runs[0].median
            failed |= ratio >= TARGET_RATIO
            print(
                f"\n{kind}: median with {runs[-1].history:,} / with {runs[0].history:,} past incidents = "
                f"{ratio:.2f} (target < {TARGET_RATIO:g})"
            )
    for kind in kinds:
        runs = sorted((r for r in results if r.db == kind), key=lambda r: r.history)
        for probe in runs[-1].probes if len(runs) > 1 else ():
            base = next((p for p in runs[0].probes if p.label == probe.label), None)
            if base is not None and probe.median_ms > max(2 * base.median_ms, base.median_ms + 0.5):
                print(
                    f"\n{kind}: GROWS WITH THE HISTORY: {probe.label}: {base.median_ms:.3f} ms with "
                    f"{runs[0].history:,}, {probe.median_ms:.3f} ms with {runs[-1].history:,}; plan:\n    "
                    + probe.plan.replace("\n", "\n    ")
                )
    if any(r.problems for r in results):
        print("\nplans to look at: see PROBLEM lines above")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
