"""The escalation engine: plans steps from the zone's policy and runs those that fall due.

Due work lives in the database (escalation_steps); a run keeps no state of its own. Claiming uses
SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL and BEGIN IMMEDIATE plus a conditional update on SQLite,
so several workers never run the same step. Pages are written to the outbox in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from alerts import incidents
from alerts.deferred import deferred_inserts
from alerts.models import (
    DutyPeriod,
    EscalationPolicy,
    EscalationStep,
    FocalPoint,
    Incident,
    Report,
    Responder,
    Zone,
    responder_zones,
)
from alerts.outbox import ReplyBook, enqueue
from alerts.phones import mask_phone
from alerts.states import IncidentStatus, StepState
from alerts.texts import render
from escalation.policy import PolicyError, on_duty, parse_policy, plan

log = logging.getLogger(__name__)
CATEGORY_WORDS = {
    "killing": "TUERIE",
    "sexual_violence": "VIOLENCE SEXUELLE",
    "abduction": "ENLEVEMENT",
    "attack": "ATTAQUE",
    "clash": "AFFRONTEMENT",
    "arson": "INCENDIE",
    "looting": "PILLAGE",
    "armed_presence": "HOMMES ARMES",
    "displacement": "DEPLACEMENT",
    "threat": "MENACE",
    "other": "AUTRE",
    "unknown": "BEEP",
}


DEFAULT_UPDATE_THROTTLE = timedelta(minutes=5)


class NoPolicy(LookupError):
    pass


def policy_for(session: Session, zone_id: int | None, severity: str) -> EscalationPolicy:
    """The zone's own policy for a severity, else the deployment's default."""
    candidates = session.scalars(
        select(EscalationPolicy).where(
            EscalationPolicy.severity == severity,
            (EscalationPolicy.zone_id == zone_id) | EscalationPolicy.zone_id.is_(None),
        )
    ).all()
    return _policy_among(candidates, zone_id, severity)


def _policy_among(
    policies: Iterable[EscalationPolicy], zone_id: int | None, severity: str
) -> EscalationPolicy:
    candidates = [p for p in policies if p.severity == severity and p.zone_id in (zone_id, None)]
    for policy in sorted(candidates, key=lambda p: p.zone_id is None):
        return policy
    raise NoPolicy(f"no escalation policy for severity {severity}")


def plan_escalations(session: Session, now: datetime) -> int:
    """Snapshot the policy of each open incident that has none (new, or upgraded) and write its steps."""
    planned = 0
    rows: list[dict[str, Any]] = []
    waiting = session.scalars(
        select(Incident)
        .where(Incident.status == IncidentStatus.OPEN, Incident.policy_snapshot.is_(None))
        .order_by(Incident.id)
        .with_for_update(skip_locked=True, key_share=True)
        .limit(100)
    ).all()
    policies = list(session.scalars(select(EscalationPolicy))) if waiting else []
    for incident in waiting:
        try:
            policy = _policy_among(policies, incident.zone_id, incident.severity)
            steps = parse_policy(policy.steps)
        except (NoPolicy, PolicyError) as exc:
            # Never leave an incident unescalated because of a broken policy: page every tier now.
            log.error("incident %s: %s; paging every tier", incident.number, exc)
            steps = parse_policy([{"tier": 1}, {"tier": 2}, {"tier": 3}])
            incidents.record(session, incident, "policy_error", f"{exc}; paging every tier at once", now)
        if incident.escalation_generation > 0:
            # Older generations (before an upgrade) stop: the stricter policy replaces them.
            session.execute(
                update(EscalationStep)
                .where(
                    EscalationStep.incident_id == incident.id,
                    EscalationStep.generation < incident.escalation_generation,
                    EscalationStep.state == StepState.PENDING,
                )
                .values(state=StepState.CANCELLED, outcome="replaced by a newer policy", done_at=now)
            )
        incident.policy_snapshot = [step.as_dict() for step in steps]
        rows.extend(
            {
                "incident_id": incident.id,
                "generation": incident.escalation_generation,
                "position": step.position,
                "repeat_index": step.repeat_index,
                "tier": step.tier,
                "quorum": step.quorum,
                "due_at": step.due_at,
                "state": StepState.PENDING,
            }
            for step in plan(steps, now)
        )
        summary = ", ".join(f"tier {s.tier} at +{s.after_minutes} min" for s in steps)
        incidents.record(
            session,
            incident,
            "escalation_planned",
            f"{incident.severity} policy: {summary}",
            now,
            generation=incident.escalation_generation,
        )
        planned += 1
    if rows:  # the steps are only read again after the commit: plain rows, one executemany, no objects
        session.execute(insert(EscalationStep), rows)
    session.commit()
    return planned


@dataclass(frozen=True)
class StepResult:
    step_id: int
    outcome: str
    paged: int


@dataclass
class _Run:
    """What the steps of one transaction share, read once: zones, who is on duty per zone and tier, the
    report counts their page texts quote, and the pages they already wrote. For steps, also their
    incidents, row-locked, and who acknowledged them, read once those locks are held: an acknowledgement
    committed before counts, and one arriving now waits for this transaction's commit."""

    session: Session
    now: datetime
    zones: dict[int, Zone]
    report_counts: dict[int, int]
    pages: ReplyBook | None = None
    incidents: dict[int, Incident] = field(default_factory=dict)
    acks: dict[int, set[int]] = field(default_factory=dict)
    _on_duty: dict[tuple[int | None, int], list[Responder]] = field(default_factory=dict)
    _roster: _Roster | None = None

    @classmethod
    def load(cls, session: Session, now: datetime, incident_ids: Iterable[int]) -> _Run:
        ids = list(set(incident_ids))
        zones = {z.id: z for z in session.scalars(select(Zone))}  # held here, so session.get finds them
        counts = dict(
            session.execute(
                select(Report.incident_id, func.count())
                .where(Report.incident_id.in_(ids), Report.is_repeat.is_(False))
                .group_by(Report.incident_id)
            ).all()
        )
        return cls(session, now, zones, {i: counts.get(i, 0) for i in ids})

    def on_duty(self, incident: Incident, tier: int) -> list[Responder]:
        key = (incident.zone_id if tier < 3 else None, tier)
        if key not in self._on_duty:
            if self._roster is None:  # the responders of the run's zones, read once for all its steps
                zones = {i.zone_id for i in (*self.incidents.values(), incident) if i.zone_id is not None}
                self._roster = _Roster.load(self.session, zones)
            zone_id = key[0]
            if tier == 3 or (zone_id is not None and zone_id in self._roster.zones):
                self._on_duty[key] = self._roster.on_duty(zone_id, tier, self.now)
            else:  # an incident without a zone pages its tier everywhere: rare, asked on its own
                self._on_duty[key] = responders_on_duty(self.session, incident, tier, self.now)
        return self._on_duty[key]


@dataclass
class _Roster:
    """The active responders of some zones (every tier) and of tier 3 (every zone), with their zones and duty
    periods: three queries for a run, where one per zone and tier (each with its own load of duty periods)
    took a sixth of a sweep's time."""

    zones: set[int]
    responders: list[Responder]  # by id, as `responders_on_duty` orders them
    zones_of: dict[int, set[int]]
    periods: dict[int, list[tuple[datetime, datetime]]]

    @classmethod
    def load(cls, session: Session, zones: set[int]) -> _Roster:
        zones_of: dict[int, set[int]] = {}
        if zones:
            for responder_id, zone_id in session.execute(
                select(responder_zones.c.responder_id, responder_zones.c.zone_id).where(
                    responder_zones.c.zone_id.in_(zones)
                )
            ):
                zones_of.setdefault(responder_id, set()).add(zone_id)
        wanted = Responder.tier == 3
        if zones_of:
            wanted = or_(wanted, Responder.id.in_(list(zones_of)))
        responders = list(
            session.scalars(
                select(Responder).where(Responder.active.is_(True), wanted).order_by(Responder.id)
            )
        )
        periods: dict[int, list[tuple[datetime, datetime]]] = {r.id: [] for r in responders}
        if responders:
            for responder_id, starts_at, ends_at in session.execute(
                select(DutyPeriod.responder_id, DutyPeriod.starts_at, DutyPeriod.ends_at).where(
                    DutyPeriod.responder_id.in_(list(periods))
                )
            ):
                periods[responder_id].append((starts_at, ends_at))
        return cls(zones, responders, zones_of, periods)

    def on_duty(self, zone_id: int | None, tier: int, now: datetime) -> list[Responder]:
        """As `responders_on_duty` for an incident of this zone (tier 3: any zone)."""
        return [
            r
            for r in self.responders
            if r.tier == tier
            and (tier == 3 or zone_id in self.zones_of.get(r.id, ()))
            and on_duty(self.periods[r.id], now)
        ]


def responders_on_duty(session: Session, incident: Incident, tier: int, now: datetime) -> list[Responder]:
    """Active responders of a tier for the incident's zone (tier 3 covers every zone) on duty now."""
    statement = (
        select(Responder)
        .where(Responder.tier == tier, Responder.active.is_(True))
        .options(selectinload(Responder.duty_periods))
        .order_by(Responder.id)
    )
    if incident.zone_id is not None and tier < 3:
        statement = statement.join(responder_zones).where(responder_zones.c.zone_id == incident.zone_id)
    return [
        r
        for r in session.scalars(statement)
        if on_duty([(p.starts_at, p.ends_at) for p in r.duty_periods], now)
    ]


def page_text(
    session: Session, incident: Incident, language: str, key: str = "page", run: _Run | None = None
) -> str:
    if run is not None and incident.id in run.report_counts:
        reports = run.report_counts[incident.id]
    else:
        reports = session.scalar(
            select(func.count())
            .select_from(Report)
            .where(Report.incident_id == incident.id, Report.is_repeat.is_(False))
        )
    zone = session.get(Zone, incident.zone_id) if incident.zone_id else None
    place = incident.place_name or (zone.name if zone else "?")
    if incident.category == "unknown" and key == "page":
        # A beep: the responder needs the caller's number to call back, and where the caller lives.
        caller = session.scalar(
            select(FocalPoint)
            .join(Report, Report.focal_point_id == FocalPoint.id)
            .where(Report.incident_id == incident.id)
            .order_by(Report.received_at)
            .limit(1)
        )
        return render(
            "page_beep", language, number=incident.number, place=place, phone=caller.phone if caller else "?"
        )
    return render(
        key,
        language,
        number=incident.number,
        category=CATEGORY_WORDS.get(incident.category, incident.category),
        place=place,
        count=f", {incident.count} pers." if incident.count else "",
        reports=reports,
        time=incident.first_report_at.strftime("%H:%M"),
    )


def _run_step(run: _Run, step: EscalationStep) -> StepResult | None:
    session, now = run.session, run.now
    incident = run.incidents.get(step.incident_id)
    if incident is None:  # another worker holds its row (see _lock_incidents): back to the queue
        step.state, step.claimed_by, step.claimed_at = StepState.PENDING, None, None
        return None
    if step.generation != incident.escalation_generation:
        return _finish(step, StepState.CANCELLED, "stale: the incident was upgraded", now)
    if incident.status in incidents.CLOSED:
        return _finish(step, StepState.CANCELLED, f"incident {incident.status}", now)
    already_acked = run.acks[incident.id]  # read under the incident's lock
    acks = len(already_acked)
    if incident.status == IncidentStatus.ACKNOWLEDGED and acks >= step.quorum:
        return _finish(step, StepState.CANCELLED, f"acknowledged ({acks} of {step.quorum})", now)

    tier, responders = step.tier, []
    while tier <= 3:
        responders = run.on_duty(incident, tier)
        if responders:
            break
        incidents.record(
            session, incident, "nobody_on_duty", f"nobody on duty in tier {tier}; next tier", now
        )
        tier += 1
    if not responders:
        incidents.record(session, incident, "escalation_failed", "nobody on duty in any tier", now)
        return _finish(step, StepState.DONE, "nobody on duty", now)

    paged = []
    texts: dict[str, str] = {}  # one page text per language, not per responder
    for responder in responders:
        if responder.id in already_acked:
            continue
        if responder.language not in texts:
            texts[responder.language] = page_text(session, incident, responder.language, run=run)
        queued = enqueue(
            session,
            recipient=responder.phone,
            body=texts[responder.language],
            purpose="page",
            idempotency_key=f"page:{step.id}:{responder.id}",
            now=now,
            incident_id=incident.id,
            responder_id=responder.id,
            escalation_step_id=step.id,
            book=run.pages,
        )
        if queued.message is not None:
            paged.append(responder)
    names = ", ".join(f"{r.name} ({mask_phone(r.phone)})" for r in paged)
    repeat = f" (repeat {step.repeat_index})" if step.repeat_index else ""
    incidents.record(
        session,
        incident,
        "paged",
        f"tier {tier}{repeat}: {names or 'nobody new'}",
        now,
        step=step.id,
        responders=[r.id for r in paged],
    )
    return _finish(step, StepState.DONE, f"paged {len(paged)} in tier {tier}", now, len(paged))


def _finish(
    step: EscalationStep, state: StepState, outcome: str, now: datetime, paged: int = 0
) -> StepResult:
    step.state, step.outcome, step.done_at = state, outcome, now
    return StepResult(step.id, outcome, paged)


def _lock_incidents(session: Session, incident_ids: set[int]) -> dict[int, Incident]:
    """The incidents of a run's steps, row-locked in one statement and read as they are now.

    One another worker holds (busy with a sibling step, or a batch merging a report into it) is skipped, not
    waited for: its steps go back to the queue for the next run (PostgreSQL; SQLite has one writer at a time).
    """
    statement = (
        select(Incident)
        .where(Incident.id.in_(incident_ids))
        .order_by(Incident.id)
        .with_for_update(skip_locked=True, **incidents.INCIDENT_LOCK)
        .execution_options(populate_existing=True)
    )
    return {incident.id: incident for incident in session.scalars(statement)}


def run_due_steps(session: Session, now: datetime, worker: str, limit: int = 50) -> list[StepResult]:
    """Claim up to `limit` due steps, run them and commit in one transaction."""
    due = session.scalars(
        select(EscalationStep)
        .where(EscalationStep.state == StepState.PENDING, EscalationStep.due_at <= now)
        .order_by(EscalationStep.due_at, EscalationStep.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not due:
        session.commit()
        return []
    # The conditional update is the claim on SQLite (no row locks); PostgreSQL locked the rows already.
    claimed = set(
        session.scalars(
            update(EscalationStep)
            .where(
                EscalationStep.id.in_([step.id for step in due]), EscalationStep.state == StepState.PENDING
            )
            .values(state=StepState.CLAIMED, claimed_by=worker, claimed_at=now)
            .returning(EscalationStep.id)
            .execution_options(synchronize_session=False)
        )
    )
    steps = [step for step in due if step.id in claimed]
    for step in steps:  # what the update wrote, without reading it back
        set_committed_value(step, "state", StepState.CLAIMED)
        set_committed_value(step, "claimed_by", worker)
        set_committed_value(step, "claimed_at", now)
    run = _Run.load(session, now, (step.incident_id for step in steps))
    run.incidents = _lock_incidents(session, {step.incident_id for step in steps})
    run.acks = incidents.acknowledgers(session, list(run.incidents))
    run.pages = ReplyBook.load_for_steps(session, [step.id for step in steps], now)
    results = []
    # The steps' pages and timeline lines are written together at the commit, as plain rows beside the unit of
    # work (alerts/deferred.py): nothing a step reads (its incident, acknowledgements, who is on duty) is
    # among them.
    with session.no_autoflush, deferred_inserts(session):
        for step in steps:
            result = _run_step(run, step)
            if result is not None:
                results.append(result)
    session.commit()
    return results


def send_updates(session: Session, now: datetime, throttle: timedelta) -> int:
    """One short update SMS per incident with news (new corroborations), at most once per throttle period."""
    sent = 0
    due = incidents.updates_due(session, now, throttle)
    if not due:
        session.commit()
        return 0
    run = _Run.load(session, now, (incident.id for incident in due))
    keys = {incident.id: f"update:{incident.id}:{now.isoformat()}:" for incident in due}
    book = ReplyBook.load_with_prefixes(session, keys.values(), now)
    # Read for all before any is queued: a read between two incidents would flush the pages queued so far.
    paged = incidents.paged_responders_of(session, list(keys))
    with deferred_inserts(session):  # the updates and their timeline lines (alerts/deferred.py)
        for incident in due:
            told = []
            for responder in paged[incident.id]:
                queued = enqueue(
                    session,
                    recipient=responder.phone,
                    body=page_text(session, incident, responder.language, "page_update", run=run),
                    purpose="update",
                    idempotency_key=f"{keys[incident.id]}{responder.id}",
                    now=now,
                    incident_id=incident.id,
                    responder_id=responder.id,
                    book=book,
                )
                if queued.message is not None:
                    told.append(responder)
            incident.update_pending = False
            if told:
                incident.last_update_at = now
                names = ", ".join(r.name for r in told)
                incidents.record(session, incident, "update_sent", f"update to {names}", now)
                sent += 1
    session.commit()
    return sent


def sweep(
    session_factory: Callable[[], Session],
    now: datetime,
    worker: str,
    batch: int = 50,
    update_throttle: timedelta = DEFAULT_UPDATE_THROTTLE,
) -> int:
    """Plan new escalations, run due steps batch after batch, then send updates; returns steps run."""
    with session_factory() as session:
        plan_escalations(session, now)
    total = 0
    while True:
        with session_factory() as session:
            results = run_due_steps(session, now, worker, batch)
        total += len(results)
        if len(results) < batch:
            break
    with session_factory() as session:
        total += send_updates(session, now, update_throttle)
    return total
