"""Response times: received -> first page sent -> first delivery -> acknowledged -> resolved."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.models import Incident, OutboundMessage, Zone

STAGES = ("first_page", "first_delivery", "acknowledged", "resolved")


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (no interpolation): a time that really happened."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summarise(values: Sequence[float]) -> dict[str, Any]:
    median, p90 = percentile(values, 0.5), percentile(values, 0.9)
    return {
        "n": len(values),
        "median": None if median is None else round(median, 1),
        "p90": None if p90 is None else round(p90, 1),
    }


def incident_times(session: Session, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """One row per incident received in [start, end): minutes from the first report to each stage."""
    pages = (
        select(
            OutboundMessage.incident_id,
            func.min(OutboundMessage.sent_at).label("first_page"),
            func.min(OutboundMessage.delivered_at).label("first_delivery"),
        )
        .where(OutboundMessage.purpose == "page")
        .group_by(OutboundMessage.incident_id)
        .subquery()
    )
    rows = session.execute(
        select(Incident, Zone.name, pages.c.first_page, pages.c.first_delivery)
        .outerjoin(Zone, Zone.id == Incident.zone_id)
        .outerjoin(pages, pages.c.incident_id == Incident.id)
        .where(
            Incident.first_report_at >= start,
            Incident.first_report_at < end,
            Incident.merged_into_id.is_(None),
        )
    ).all()
    out = []
    for incident, zone_name, first_page, first_delivery in rows:
        moments = {
            "first_page": first_page,
            "first_delivery": first_delivery,
            "acknowledged": incident.acknowledged_at,
            "resolved": incident.resolved_at,
        }
        out.append(
            {
                "number": incident.number,
                "zone": zone_name or "(no zone)",
                **{
                    stage: None if at is None else _minutes(incident.first_report_at, at)
                    for stage, at in moments.items()
                },
            }
        )
    return out


def _minutes(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds() / 60)


def response_times(session: Session, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Median and 90th percentile of each stage, per zone, for incidents received in [start, end)."""
    by_zone: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in incident_times(session, start, end):
        by_zone[row["zone"]].append(row)
    return [
        {
            "zone": zone,
            "incidents": len(rows),
            **{stage: summarise([r[stage] for r in rows if r[stage] is not None]) for stage in STAGES},
        }
        for zone, rows in sorted(by_zone.items())
    ]


def deadline_minutes(policy_snapshot: Sequence[dict[str, Any]] | None) -> float | None:
    """Minutes after the first report by which the policy expected an acknowledgement (its last step)."""
    if not policy_snapshot:
        return None
    return float(max(int(step.get("after_minutes", 0)) for step in policy_snapshot))


def breaches(session: Session, start: datetime, end: datetime, now: datetime) -> list[dict[str, Any]]:
    """Incidents not acknowledged by the time their policy's last step fell due (still open ones too)."""
    out = []
    for incident in session.scalars(
        select(Incident)
        .where(
            Incident.first_report_at >= start,
            Incident.first_report_at < end,
            Incident.merged_into_id.is_(None),
        )
        .order_by(Incident.first_report_at.desc())
    ):
        limit = deadline_minutes(incident.policy_snapshot)
        if limit is None:
            continue
        answered = incident.acknowledged_at or now
        waited = _minutes(incident.first_report_at, answered)
        if waited > limit:
            out.append(
                {
                    "number": incident.number,
                    "waited": round(waited, 1),
                    "deadline": limit,
                    "acknowledged": incident.acknowledged_at is not None,
                }
            )
    return out


def week_against_week(session: Session, now: datetime) -> dict[str, Any]:
    """This week (the last 7 days) against the 7 days before, per zone, with the breaches of each."""
    this_start, last_start = now - timedelta(days=7), now - timedelta(days=14)
    return {
        "this_week": response_times(session, this_start, now),
        "last_week": response_times(session, last_start, this_start),
        "breaches": breaches(session, last_start, now, now),
    }
