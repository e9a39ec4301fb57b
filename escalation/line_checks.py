"""Line checks: focal points silent too long get a short TEST request; who answers is alive.

Costs are bounded: one request per focal point per period (the zone's LINE_CHECK_DAYS), and a daily cap for
the whole network. Those who do not answer show on the network-health page for a coordinator to follow up.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, joinedload

from alerts.models import FocalPoint, OutboundMessage, Zone
from alerts.outbox import enqueue
from alerts.states import FocalPointStatus
from alerts.texts import render

PURPOSE = "line_check"


def due(focal_point: FocalPoint, now: datetime, default_days: int) -> bool:
    """Silent for the period, and not asked within it."""
    days = (
        focal_point.zone.line_check_days
        if focal_point.zone and focal_point.zone.line_check_days
        else default_days
    )
    cutoff = now - timedelta(days=days)
    silent = focal_point.last_seen_at is None or focal_point.last_seen_at < cutoff
    asked = focal_point.line_check_sent_at is not None and focal_point.line_check_sent_at >= cutoff
    return silent and not asked


def send_line_checks(session: Session, now: datetime, default_days: int, daily_cap: int) -> int:
    """Queue TEST requests to the longest-silent focal points, within today's budget; commits."""
    sent_today = session.scalar(
        select(func.count())
        .select_from(OutboundMessage)
        .where(OutboundMessage.purpose == PURPOSE, OutboundMessage.created_at > now - timedelta(days=1))
    )
    budget = daily_cap - (sent_today or 0)
    if budget <= 0:
        return 0
    shortest = min([default_days, *_zone_periods(session)])
    candidates = session.scalars(
        select(FocalPoint)
        .options(joinedload(FocalPoint.zone))
        .where(
            FocalPoint.status == FocalPointStatus.ACTIVE,
            or_(FocalPoint.last_seen_at.is_(None), FocalPoint.last_seen_at < now - timedelta(days=shortest)),
        )
        .order_by(FocalPoint.last_seen_at.is_not(None), FocalPoint.last_seen_at, FocalPoint.id)
        .with_for_update(skip_locked=True, of=FocalPoint)
    )
    sent = 0
    for focal_point in candidates:
        if sent >= budget:
            break
        if not due(focal_point, now, default_days):
            continue
        queued = enqueue(
            session,
            recipient=focal_point.phone,
            body=render("line_check", focal_point.language),
            purpose=PURPOSE,
            idempotency_key=f"{PURPOSE}:{focal_point.id}:{now.date().isoformat()}",
            now=now,
            focal_point_id=focal_point.id,
        )
        if queued.message is not None:
            focal_point.line_check_sent_at = now
            sent += 1
    session.commit()
    return sent


def _zone_periods(session: Session) -> list[int]:
    return [d for d in session.scalars(select(Zone.line_check_days)) if d]
