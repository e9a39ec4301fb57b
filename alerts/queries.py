"""Read-side queries for the pages, the API and the exports: the alert log, one incident, network health."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from alerts.auth import Viewer
from alerts.models import (
    FocalPoint,
    InboundMessage,
    Incident,
    IncidentEvent,
    OutboundMessage,
    Report,
    Responder,
    Zone,
)
from alerts.states import FocalPointStatus, InboundState, IncidentStatus, OutboundState

PAGE_SIZE = 50


@dataclass(frozen=True)
class LogFilters:
    status: str = ""
    zone_id: int | None = None
    category: str = ""
    severity: str = ""
    since: date | None = None
    until: date | None = None
    q: str = ""

    @classmethod
    def from_args(cls, args: Any) -> LogFilters:
        def day(name: str) -> date | None:
            try:
                return date.fromisoformat(args.get(name, ""))
            except ValueError:
                return None

        zone = args.get("zone", "")
        return cls(
            status=args.get("status", ""),
            zone_id=int(zone) if _small_number(zone) else None,
            category=args.get("category", ""),
            severity=args.get("severity", ""),
            since=day("since"),
            until=day("until"),
            q=args.get("q", "").replace("\x00", "").strip()[:80],
        )

    def as_args(self) -> dict[str, str]:
        values = {
            "status": self.status,
            "zone": str(self.zone_id or ""),
            "category": self.category,
            "severity": self.severity,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "q": self.q,
        }
        return {k: v for k, v in values.items() if v}


def _small_number(text: str) -> bool:
    """Plain ASCII digits that fit the integer columns ('²' is a digit to Python, not to int())."""
    return text.isascii() and text.isdigit() and len(text) <= 9


@dataclass(frozen=True)
class LogRow:
    number: int
    first_report_at: datetime
    category: str
    severity: str
    place: str
    zone: str
    reports: int
    status: str
    acknowledged_by: str
    minutes_to_acknowledge: float | None
    lat: float | None
    lon: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "time": self.first_report_at.isoformat(),
            "category": self.category,
            "severity": self.severity,
            "place": self.place,
            "zone": self.zone,
            "reports": self.reports,
            "status": self.status,
            "acknowledged_by": self.acknowledged_by or None,
            "minutes_to_acknowledge": self.minutes_to_acknowledge,
            "lat": self.lat,
            "lon": self.lon,
        }


@dataclass
class LogPage:
    rows: list[LogRow]
    page: int
    pages: int
    total: int
    cursor: int  # the newest timeline event: what the page has seen
    filters: LogFilters = field(default_factory=LogFilters)


def _scoped(statement: Select[Any], viewer: Viewer) -> Select[Any]:
    if viewer.zone_ids is not None:
        statement = statement.where(Incident.zone_id.in_(viewer.zone_ids))
    return statement


def _filtered(statement: Select[Any], filters: LogFilters) -> Select[Any]:
    if filters.status:
        statement = statement.where(Incident.status == filters.status)
    else:
        statement = statement.where(Incident.status != IncidentStatus.MERGED)
    if filters.zone_id:
        statement = statement.where(Incident.zone_id == filters.zone_id)
    if filters.category:
        statement = statement.where(Incident.category == filters.category)
    if filters.severity:
        statement = statement.where(Incident.severity == filters.severity)
    if filters.since:
        statement = statement.where(Incident.first_report_at >= datetime.combine(filters.since, time(), UTC))
    if filters.until:
        end = datetime.combine(filters.until + timedelta(days=1), time(), UTC)
        statement = statement.where(Incident.first_report_at < end)
    if filters.q:
        term = filters.q.lstrip("#")
        conditions = [Incident.place_name.ilike(f"%{term}%")]
        if _small_number(term):
            conditions.append(Incident.number == int(term))
        statement = statement.where(or_(*conditions))
    return statement


def _rows(db: Session, statement: Select[Any]) -> list[LogRow]:
    reports = (
        select(Report.incident_id, func.count().label("n"))
        .where(Report.is_repeat.is_(False))
        .group_by(Report.incident_id)
        .subquery()
    )
    query = (
        statement.add_columns(Zone.name, Responder.name, reports.c.n)
        .outerjoin(Zone, Zone.id == Incident.zone_id)
        .outerjoin(Responder, Responder.id == Incident.acknowledged_by_id)
        .outerjoin(reports, reports.c.incident_id == Incident.id)
    )
    rows = []
    for incident, zone_name, responder_name, count in db.execute(query):
        minutes = None
        if incident.acknowledged_at is not None:
            minutes = round((incident.acknowledged_at - incident.first_report_at).total_seconds() / 60, 1)
        rows.append(
            LogRow(
                incident.number,
                incident.first_report_at,
                incident.category,
                incident.severity,
                incident.place_name,
                zone_name or "",
                count or 0,
                incident.status,
                responder_name or "",
                minutes,
                incident.lat,
                incident.lon,
            )
        )
    return rows


def newest_event(db: Session) -> int:
    return db.scalar(select(func.max(IncidentEvent.id))) or 0


def alert_log(
    db: Session, viewer: Viewer, filters: LogFilters, page: int = 1, per_page: int = PAGE_SIZE
) -> LogPage:
    """One page of the log, newest first, within what the viewer may see."""
    base = _filtered(_scoped(select(Incident), viewer), filters)
    total = db.scalar(select(func.count()).select_from(base.subquery())) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(page, 1), pages)
    statement = base.order_by(Incident.first_report_at.desc(), Incident.id.desc())
    rows = _rows(db, statement.offset((page - 1) * per_page).limit(per_page))
    return LogPage(rows, page, pages, total, newest_event(db), filters)


def changes_since(db: Session, viewer: Viewer, filters: LogFilters, cursor: int) -> tuple[int, list[LogRow]]:
    """Incidents whose timeline grew since `cursor` (new ones, acknowledgements, merges...)."""
    newest = newest_event(db)
    if newest <= cursor:
        return newest, []
    changed = select(IncidentEvent.incident_id).where(IncidentEvent.id > cursor).distinct()
    statement = _filtered(_scoped(select(Incident), viewer), filters).where(Incident.id.in_(changed))
    rows = _rows(db, statement.order_by(Incident.first_report_at.desc()).limit(PAGE_SIZE))
    return newest, rows


def visible_incident(db: Session, viewer: Viewer, number: int) -> Incident | None:
    incident = db.scalar(select(Incident).where(Incident.number == number))
    if incident is None or not viewer.may_see_zone(incident.zone_id):
        return None
    return incident


def incident_reports(
    db: Session, incident: Incident
) -> list[tuple[Report, InboundMessage, FocalPoint | None]]:
    rows = db.execute(
        select(Report, InboundMessage, FocalPoint)
        .join(InboundMessage, InboundMessage.id == Report.inbound_message_id)
        .outerjoin(FocalPoint, FocalPoint.id == Report.focal_point_id)
        .where(Report.incident_id == incident.id)
        .order_by(Report.received_at)
    )
    return [(report, message, focal_point) for report, message, focal_point in rows]


def incident_events(db: Session, incident: Incident) -> list[IncidentEvent]:
    return list(
        db.scalars(
            select(IncidentEvent).where(IncidentEvent.incident_id == incident.id).order_by(IncidentEvent.id)
        )
    )


def incident_messages(db: Session, incident: Incident) -> list[OutboundMessage]:
    return list(
        db.scalars(
            select(OutboundMessage)
            .where(OutboundMessage.incident_id == incident.id)
            .order_by(OutboundMessage.id)
        )
    )


@dataclass
class NetworkHealth:
    silent: list[FocalPoint]
    failed: list[OutboundMessage]
    unverified: list[InboundMessage]
    unprocessed: list[InboundMessage]
    unanswered_checks: list[FocalPoint] = field(default_factory=list)
    pending_registrations: list[FocalPoint] = field(default_factory=list)


def network_health(db: Session, now: datetime, silent_days: int, limit: int = 200) -> NetworkHealth:
    """Who has gone quiet, what failed to send, who waits for review, what is stuck."""
    cutoff = now - timedelta(days=silent_days)
    silent = db.scalars(
        select(FocalPoint)
        .where(or_(FocalPoint.last_seen_at.is_(None), FocalPoint.last_seen_at < cutoff))
        .order_by(FocalPoint.last_seen_at.is_not(None), FocalPoint.last_seen_at)
        .limit(limit)
    ).all()
    failed = db.scalars(
        select(OutboundMessage)
        .where(OutboundMessage.state.in_((OutboundState.FAILED, OutboundState.UNDELIVERED)))
        .order_by(OutboundMessage.id.desc())
        .limit(limit)
    ).all()
    unverified = db.scalars(
        select(InboundMessage)
        .where(InboundMessage.state == InboundState.UNVERIFIED)
        .order_by(InboundMessage.id.desc())
        .limit(limit)
    ).all()
    unprocessed = db.scalars(
        select(InboundMessage)
        .where(InboundMessage.state.in_((InboundState.RECEIVED, InboundState.FAILED)))
        .order_by(InboundMessage.id)
        .limit(limit)
    ).all()
    unanswered = db.scalars(
        select(FocalPoint)
        .where(
            FocalPoint.line_check_sent_at.is_not(None),
            or_(FocalPoint.last_seen_at.is_(None), FocalPoint.last_seen_at < FocalPoint.line_check_sent_at),
        )
        .order_by(FocalPoint.line_check_sent_at)
        .limit(limit)
    ).all()
    pending = db.scalars(
        select(FocalPoint)
        .where(FocalPoint.status == FocalPointStatus.PENDING)
        .order_by(FocalPoint.id)
        .limit(limit)
    ).all()
    return NetworkHealth(
        list(silent), list(failed), list(unverified), list(unprocessed), list(unanswered), list(pending)
    )
