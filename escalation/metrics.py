"""Response times: received -> first page sent -> first delivery -> acknowledged -> resolved."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
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
