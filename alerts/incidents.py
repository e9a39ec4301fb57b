"""Incident services: numbering, the timeline, opening, merging reports, and status changes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import func, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from alerts.dedup import SEVERITY_RANK
from alerts.deferred import DeferredRow, add_row
from alerts.models import (
    Counter,
    EscalationStep,
    FocalPoint,
    Incident,
    IncidentEvent,
    OutboundMessage,
    Report,
    Responder,
)
from alerts.outbox import enqueue
from alerts.states import IncidentStatus, StepState
from alerts.texts import render

# Row locks on incidents are FOR NO KEY UPDATE: they serialise changes to an incident without blocking the
# foreign-key checks of rows that refer to it (reports, timeline, outbox), which FOR UPDATE would, and which
# let two workers deadlock, each holding one incident and inserting a row about the other's.
INCIDENT_LOCK = {"key_share": True}

CLOSED = frozenset({IncidentStatus.RESOLVED, IncidentStatus.FALSE_ALARM, IncidentStatus.MERGED})


class IncidentNotFound(LookupError):
    pass


class NotYourZone(PermissionError):
    pass


@cache
def _increment(dialect_name: str, name: str, with_incident_id: bool = False) -> Insert:
    """Add one to a named counter (created at 1), atomically, on SQLite and PostgreSQL alike, returning its
    value (and, on PostgreSQL, the incidents table's next id). Built once per counter: a new incident's
    number is asked for in every batch, and building the statement cost more than running it."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    statement = (
        dialect.insert(Counter)
        .values(name=name, value=1)
        .on_conflict_do_update(index_elements=[Counter.name], set_={"value": Counter.value + 1})
    )
    if with_incident_id:
        return statement.returning(
            Counter.value, func.nextval(func.pg_get_serial_sequence("incidents", "id"))
        )
    return statement.returning(Counter.value)


def next_number(session: Session, name: str = "incident") -> int:
    """The next value of a named counter."""
    return session.execute(_increment(session.get_bind().dialect.name, name)).scalar_one()


def allocate_incident(session: Session) -> tuple[int, int | None]:
    """(number, id) for a new incident. On PostgreSQL both come from one statement (the counter and the
    table's sequence), so the caller can add the incident without a flush to learn its id; on SQLite the id
    is None: the row gets it when it is flushed."""
    if session.get_bind().dialect.name != "postgresql":
        return next_number(session), None
    number, incident_id = session.execute(_increment("postgresql", "incident", with_incident_id=True)).one()
    return number, incident_id


def record(
    session: Session,
    incident: Incident,
    kind: str,
    detail: str,
    now: datetime,
    actor: str = "system",
    **data: Any,
) -> IncidentEvent | DeferredRow:
    """Append a line to the incident's timeline (joins the caller's transaction; inside a batch's
    `deferred_inserts`, a queued row written with its others)."""
    values = dict(incident_id=incident.id, at=now, kind=kind, actor=actor, detail=detail, data=data)
    return add_row(session, IncidentEvent, values)


def find_by_number(session: Session, number: int, *, for_update: bool = False) -> Incident:
    statement = select(Incident).where(Incident.number == number)
    if for_update:
        # The locked row's values, even if this session read the incident before (another worker may
        # have changed it since); the session's own changes are flushed before the query.
        statement = statement.with_for_update(key_share=True).execution_options(populate_existing=True)
    incident = session.scalar(statement)
    if incident is None:
        raise IncidentNotFound(number)
    return incident


def responder_may_act(responder: Responder, incident: Incident) -> bool:
    """Tier 3 coordinators act anywhere; others only in their zones."""
    if responder.tier >= 3 or incident.zone_id is None:
        return True
    return any(zone.id == incident.zone_id for zone in responder.zones)


class Ack(StrEnum):
    FIRST = "first"  # the incident was open: escalation stops (or counts towards a quorum)
    ADDITIONAL = "additional"  # someone else had it already; counted for a quorum
    REPEATED = "repeated"  # this responder had acknowledged already
    CLOSED = "closed"


def acknowledged_by(session: Session, incident: Incident) -> set[int]:
    """Responders who acknowledged the incident (by SMS or on the page)."""
    return acknowledgers(session, [incident.id])[incident.id]


def acknowledgers(session: Session, incident_ids: Sequence[int]) -> dict[int, set[int]]:
    """Per incident, the responders who acknowledged it, in one query for all of them."""
    found: dict[int, set[int]] = {incident_id: set() for incident_id in incident_ids}
    if not found:
        return found
    rows = session.execute(
        select(IncidentEvent.incident_id, IncidentEvent.data).where(
            IncidentEvent.incident_id.in_(found), IncidentEvent.kind == "acknowledged"
        )
    )
    for incident_id, data in rows:
        if data.get("responder") is not None:
            found[incident_id].add(data["responder"])
    return found


def acknowledge(
    session: Session, incident: Incident, now: datetime, actor: str, responder: Responder | None = None
) -> Ack:
    """Record an acknowledgement; the first one stops escalation and tells the others and the reporters."""
    if incident.status in CLOSED:
        return Ack.CLOSED
    responder_id = responder.id if responder else None
    if responder_id is not None and responder_id in acknowledged_by(session, incident):
        return Ack.REPEATED
    minutes = (now - incident.first_report_at).total_seconds() / 60
    record(
        session,
        incident,
        "acknowledged",
        f"acknowledged by {actor} after {minutes:.0f} min",
        now,
        actor,
        responder=responder_id,
    )
    if incident.status != IncidentStatus.OPEN:
        return Ack.ADDITIONAL
    incident.status = IncidentStatus.ACKNOWLEDGED
    incident.acknowledged_at = now
    incident.acknowledged_by_id = responder_id
    name = responder.name if responder else actor
    for other in paged_responders(session, incident):
        if other.id != responder_id:
            enqueue(
                session,
                recipient=other.phone,
                purpose="update",
                now=now,
                incident_id=incident.id,
                responder_id=other.id,
                idempotency_key=f"acked:{incident.id}:{other.id}",
                body=render("others_acknowledged", other.language, number=incident.number, name=name),
            )
    _tell_reporters(session, incident, "reporter_acknowledged", now)
    return Ack.FIRST


def close(session: Session, incident: Incident, status: IncidentStatus, now: datetime, actor: str) -> bool:
    """Resolve or mark a false alarm, and tell the reporters; False when the incident is already closed."""
    if incident.status in CLOSED:
        return False
    incident.status = status
    incident.resolved_at = now
    if incident.acknowledged_at is None:
        incident.acknowledged_at = now
    word = "resolved" if status == IncidentStatus.RESOLVED else "marked false alarm"
    record(session, incident, status.value, f"{word} by {actor}", now, actor)
    session.execute(
        update(EscalationStep)
        .where(EscalationStep.incident_id == incident.id, EscalationStep.state == StepState.PENDING)
        .values(state=StepState.CANCELLED, outcome=f"incident {status.value}", done_at=now)
    )
    _tell_reporters(session, incident, "reporter_closed", now)
    return True


def paged_responders(session: Session, incident: Incident) -> list[Responder]:
    """Responders who were paged about the incident."""
    return paged_responders_of(session, [incident.id])[incident.id]


def paged_responders_of(session: Session, incident_ids: Sequence[int]) -> dict[int, list[Responder]]:
    """Per incident, the responders who were paged about it (in id order): one query for them all."""
    found: dict[int, list[Responder]] = {i: [] for i in incident_ids}
    if not found:
        return found
    pairs = session.execute(
        select(OutboundMessage.incident_id, Responder)
        .join(Responder, Responder.id == OutboundMessage.responder_id)
        .where(OutboundMessage.incident_id.in_(found), OutboundMessage.purpose == "page")
        .order_by(OutboundMessage.incident_id, Responder.id)
    )
    for incident_id, responder in pairs:  # a responder paged twice (two steps) comes twice
        if not found[incident_id] or found[incident_id][-1] is not responder:
            found[incident_id].append(responder)
    return found


def _tell_reporters(session: Session, incident: Incident, key: str, now: datetime) -> None:
    reporters = session.scalars(
        select(FocalPoint)
        .where(FocalPoint.id.in_(select(Report.focal_point_id).where(Report.incident_id == incident.id)))
        .order_by(FocalPoint.id)
    )
    for focal_point in reporters:
        enqueue(
            session,
            recipient=focal_point.phone,
            purpose="update",
            now=now,
            incident_id=incident.id,
            focal_point_id=focal_point.id,
            idempotency_key=f"{key}:{incident.id}:{focal_point.id}",
            body=render(key, focal_point.language, number=incident.number),
        )


def pull_next_step_forward(session: Session, incident: Incident, now: datetime, reason: str) -> int:
    """A page that could not be delivered counts as no answer: the next pending step falls due at once."""
    step = session.scalar(
        select(EscalationStep)
        .where(
            EscalationStep.incident_id == incident.id,
            EscalationStep.generation == incident.escalation_generation,
            EscalationStep.state == StepState.PENDING,
            EscalationStep.due_at > now,
        )
        .order_by(EscalationStep.due_at, EscalationStep.position)
        .limit(1)
    )
    if step is None or incident.status != IncidentStatus.OPEN:
        return 0
    step.due_at = now
    record(session, incident, "escalation_hastened", f"{reason}: next step (tier {step.tier}) due now", now)
    return 1


class CannotMerge(ValueError):
    pass


def merge(session: Session, keep: Incident, absorb: Incident, now: datetime, actor: str) -> None:
    """A coordinator's merge: `absorb`'s reports join `keep`, which takes the graver category."""
    if keep.id == absorb.id:
        raise CannotMerge("an incident cannot be merged into itself")
    if absorb.status == IncidentStatus.MERGED:
        raise CannotMerge(f"incident {absorb.number} was already merged")
    if keep.status == IncidentStatus.MERGED:
        raise CannotMerge(f"incident {keep.number} was merged into another; merge into that one")
    moved = session.execute(
        update(Report).where(Report.incident_id == absorb.id).values(incident_id=keep.id)
    ).rowcount
    keep.first_report_at = min(keep.first_report_at, absorb.first_report_at)
    keep.last_report_at = max(keep.last_report_at, absorb.last_report_at)
    if absorb.count is not None and (keep.count is None or absorb.count > keep.count):
        keep.count = absorb.count
    keep.confidence = max(keep.confidence, absorb.confidence)
    if SEVERITY_RANK[absorb.severity] > SEVERITY_RANK[keep.severity]:
        keep.category, keep.severity = absorb.category, absorb.severity
        if keep.status == IncidentStatus.OPEN:
            keep.escalation_generation += 1
            keep.policy_snapshot = None
    absorb.status = IncidentStatus.MERGED
    absorb.merged_into_id = keep.id
    session.execute(
        update(EscalationStep)
        .where(EscalationStep.incident_id == absorb.id, EscalationStep.state == StepState.PENDING)
        .values(state=StepState.CANCELLED, outcome=f"merged into {keep.number}", done_at=now)
    )
    record(
        session,
        keep,
        "merged_incident",
        f"incident {absorb.number} merged in by {actor} ({moved} reports)",
        now,
        actor,
        absorbed=absorb.number,
    )
    record(
        session,
        absorb,
        "merged_into",
        f"merged into incident {keep.number} by {actor}",
        now,
        actor,
        into=keep.number,
    )


def split(session: Session, report: Report, now: datetime, actor: str) -> Incident:
    """A coordinator's split: one report becomes an incident of its own, escalated like a new one."""
    source = report.incident
    if source is None:
        raise CannotMerge("this report belongs to no incident")
    if session.scalar(select(func.count()).select_from(Report).where(Report.incident_id == source.id)) < 2:
        raise CannotMerge(f"report is the only one of incident {source.number}")
    incident = Incident(
        number=next_number(session),
        category=report.category,
        secondary_categories=list(report.secondary_categories),
        severity=report.severity,
        count=report.count,
        lat=report.lat,
        lon=report.lon,
        place_id=report.place_id,
        place_name=report.place.name if report.place else "",
        zone_id=source.zone_id,
        confidence=report.confidence,
        first_report_at=report.received_at,
        last_report_at=report.received_at,
        created_at=now,
    )
    session.add(incident)
    session.flush()
    report.incident_id = incident.id
    report.is_repeat = False
    record(
        session,
        source,
        "split",
        f"report {report.id} split off into incident {incident.number} by {actor}",
        now,
        actor,
        new=incident.number,
    )
    record(
        session,
        incident,
        "opened",
        f"split from incident {source.number} by {actor}",
        now,
        actor,
        source=source.number,
    )
    return incident


def updates_due(session: Session, now: datetime, throttle: timedelta) -> list[Incident]:
    """Open incidents with news for their responders, not told within the throttle period."""
    return list(
        session.scalars(
            select(Incident)
            .where(
                Incident.update_pending == true(),  # the form the partial index is defined with
                Incident.status.in_((IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED)),
                (Incident.last_update_at.is_(None)) | (Incident.last_update_at <= now - throttle),
            )
            .order_by(Incident.id)
            .with_for_update(skip_locked=True, key_share=True)
            .limit(100)
        )
    )


def categorise(
    session: Session, incident: Incident, category: str, severity: str, now: datetime, source: str
) -> None:
    """Give an incident known only as a beep its real category; a graver severity restarts escalation."""
    before = f"{incident.category}/{incident.severity}"
    incident.category = category
    if SEVERITY_RANK[severity] > SEVERITY_RANK[incident.severity]:
        incident.severity = severity
        if incident.status == IncidentStatus.OPEN:
            incident.escalation_generation += 1
            incident.policy_snapshot = None
    record(
        session,
        incident,
        "categorised",
        f"{before} -> {incident.category}/{incident.severity} from {source}",
        now,
    )


def record_callback(
    session: Session,
    incident: Incident,
    learned: str,
    category: str | None,
    severity: str | None,
    now: datetime,
    actor: str,
) -> None:
    """A responder called the beeping focal point back: what they learned goes on the timeline."""
    incident.callback_pending = False
    record(session, incident, "callback", learned or "(no details)", now, actor)
    if category is None or severity is None:
        return
    if incident.category == "unknown" or SEVERITY_RANK[severity] > SEVERITY_RANK[incident.severity]:
        categorise(session, incident, category, severity, now, f"the call-back by {actor}")


def message_lost(
    session: Session, message: OutboundMessage, kind: str, detail: str, reason: str, now: datetime
) -> None:
    """An SMS about an incident that will not arrive goes on its timeline; a lost page counts as no answer."""
    incident = session.get(Incident, message.incident_id) if message.incident_id else None
    if incident is None:
        return
    record(session, incident, kind, detail, now, outbound=message.id)
    if message.purpose == "page":
        pull_next_step_forward(session, incident, now, reason)
