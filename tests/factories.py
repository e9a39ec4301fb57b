"""Small builders of realistic rows for tests (warehouse style): each returns a flushed object."""

from __future__ import annotations

from datetime import datetime
from itertools import count
from typing import Any

from sqlalchemy.orm import Session

from alerts import incidents
from alerts.demo import seed_default_policies
from alerts.models import FocalPoint, Incident, Responder, Zone
from tests.conftest import T0

_serial = count(1)


def zone(
    session: Session,
    name: str = "Masisi",
    lat: float = -1.40,
    lon: float = 28.8167,
    radius_km: float = 35,
    **fields: Any,
) -> Zone:
    row = Zone(name=name, lat=lat, lon=lon, radius_km=radius_km, **fields)
    session.add(row)
    session.flush()
    return row


def focal_point(
    session: Session,
    zone_row: Zone | None = None,
    lat: float = -1.18,
    lon: float = 28.92,
    language: str = "fr",
    **fields: Any,
) -> FocalPoint:
    n = next(_serial)
    row = FocalPoint(
        name=fields.pop("name", f"Focal {n}"),
        phone=fields.pop("phone", f"+24381{n:07d}"),
        home_lat=lat,
        home_lon=lon,
        zone_id=zone_row.id if zone_row else None,
        language=language,
        **fields,
    )
    session.add(row)
    session.flush()
    return row


def responder(
    session: Session, tier: int, zones: list[Zone], language: str = "fr", **fields: Any
) -> Responder:
    n = next(_serial)
    row = Responder(
        name=fields.pop("name", f"Responder {n}"),
        phone=fields.pop("phone", f"+24382{n:07d}"),
        tier=tier,
        language=language,
        zones=list(zones),
        **fields,
    )
    session.add(row)
    session.flush()
    return row


def network(session: Session) -> dict[str, Any]:
    """A zone with two tier-1, one tier-2 and one tier-3 responder, a focal point, and default policies."""
    masisi = zone(session)
    built = {
        "zone": masisi,
        "tier1": [responder(session, 1, [masisi]), responder(session, 1, [masisi])],
        "tier2": [responder(session, 2, [masisi])],
        "tier3": [responder(session, 3, [])],
        "focal_point": focal_point(session, masisi),
    }
    seed_default_policies(session)
    session.commit()
    return built


def incident(
    session: Session,
    zone_row: Zone | None,
    severity: str = "critical",
    category: str = "attack",
    at: datetime = T0,
    **fields: Any,
) -> Incident:
    row = Incident(
        number=incidents.next_number(session),
        category=category,
        severity=severity,
        lat=fields.pop("lat", -1.18),
        lon=fields.pop("lon", 28.92),
        place_name=fields.pop("place_name", "Kitchanga"),
        zone_id=zone_row.id if zone_row else None,
        first_report_at=at,
        last_report_at=at,
        created_at=at,
        **fields,
    )
    session.add(row)
    session.flush()
    return row
