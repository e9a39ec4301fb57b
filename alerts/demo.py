"""A realistic demo network for North Kivu, seeded idempotently (`flask --app wsgi demo`)."""

from __future__ import annotations

import csv
import io
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from geopy.distance import geodesic
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from alerts import imports
from alerts.geolocation import ZoneArea, zone_for_point
from alerts.models import EscalationPolicy, User
from alerts.states import UserRole

DATA = Path(__file__).parent / "data"
DEMO_GAZETTEER = DATA / "demo" / "gazetteer-north-kivu.csv"

# Bases of the demo, each covering the villages around it.
ZONES = (
    ("Goma", -1.6792, 29.2228, 30),
    ("Masisi", -1.4000, 28.8167, 35),
    ("Kitchanga", -1.1800, 28.9200, 25),
    ("Rutshuru", -1.1856, 29.4486, 35),
    ("Lubero", -0.4000, 29.2000, 45),
    ("Beni", 0.4911, 29.4731, 40),
    ("Walikale", -1.4200, 28.0500, 60),
)
FIRST_NAMES = (
    "Amani",
    "Furaha",
    "Jean-Baptiste",
    "Neema",
    "Espoir",
    "Baraka",
    "Consolee",
    "Patient",
    "Riziki",
    "Dieudonne",
    "Sifa",
    "Justin",
    "Mapendo",
    "Innocent",
    "Faida",
    "Pascal",
    "Esther",
    "Bahati",
)
LAST_NAMES = (
    "Kambale",
    "Mumbere",
    "Kahindo",
    "Habimana",
    "Bisimwa",
    "Muhindo",
    "Kasereka",
    "Nzabonimpa",
    "Mukeba",
    "Paluku",
    "Masika",
    "Bahati",
    "Ndayambaje",
    "Kavira",
    "Sikuli",
)
LANGUAGE_BY_ZONE = {
    "Goma": "fr",
    "Masisi": "sw",
    "Kitchanga": "rw",
    "Rutshuru": "sw",
    "Lubero": "sw",
    "Beni": "sw",
    "Walikale": "ln",
}


@dataclass
class DemoResult:
    places: imports.ImportResult
    zones: imports.ImportResult
    focal_points: imports.ImportResult
    responders: imports.ImportResult
    coordinator_password: str | None  # only when the login was created by this run


def _name(i: int) -> str:
    return f"{FIRST_NAMES[i % len(FIRST_NAMES)]} {LAST_NAMES[(i * 7) % len(LAST_NAMES)]}"


def _csv(header: list[str], rows: list[list[object]]) -> io.StringIO:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    out.seek(0)
    return out


def seed_demo(session: Session) -> DemoResult:
    """Places, zones, focal points, responders, default policies and a coordinator login."""
    with DEMO_GAZETTEER.open(encoding="utf-8") as stream:
        places = imports.import_places(session, stream)
    zones = imports.import_zones(session, _csv(["name", "lat", "lon", "radius_km"], [list(z) for z in ZONES]))
    areas = [
        ZoneArea(id=i, name=n, lat=lat, lon=lon, radius_km=r) for i, (n, lat, lon, r) in enumerate(ZONES)
    ]

    homes = []  # villages inside a demo zone, with that zone
    with DEMO_GAZETTEER.open(encoding="utf-8") as stream:
        for village in csv.DictReader(stream):
            lat, lon = float(village["lat"]), float(village["lon"])
            zone = zone_for_point(lat, lon, areas)
            if zone is not None and geodesic((lat, lon), (zone.lat, zone.lon)).km <= zone.radius_km:
                homes.append((lat, lon, zone.name))
    focal_rows: list[list[object]] = []
    for i in range(40):  # one or two focal points in each village, each with a home village
        lat, lon, zone_name = homes[i % len(homes)]
        focal_rows.append([_name(i), f"+24381555{i:04d}", lat, lon, zone_name, LANGUAGE_BY_ZONE[zone_name]])
    focal_points = imports.import_focal_points(
        session, _csv(["name", "phone", "lat", "lon", "zone", "language"], focal_rows)
    )

    responder_rows: list[list[object]] = []
    n = 0
    for zone_name, *_ in ZONES:
        for tier in (1, 1, 2):
            responder_rows.append([_name(100 + n), f"+24382555{n:04d}", tier, zone_name, "fr"])
            n += 1
    all_zones = "|".join(z[0] for z in ZONES)
    for _ in range(2):
        responder_rows.append([_name(100 + n), f"+24382555{n:04d}", 3, all_zones, "en"])
        n += 1
    responders = imports.import_responders(
        session, _csv(["name", "phone", "tier", "zones", "language"], responder_rows)
    )

    seed_default_policies(session)
    password = None
    if session.scalar(select(User).where(User.username == "coordinator")) is None:
        password = secrets.token_urlsafe(12)
        session.add(
            User(
                username="coordinator",
                password_hash=generate_password_hash(password),
                role=UserRole.COORDINATOR,
            )
        )
    session.commit()
    return DemoResult(places, zones, focal_points, responders, password)


def seed_default_policies(session: Session) -> int:
    """Add the default (zone-less) policy of each severity that has none yet; returns how many were added."""
    defaults = json.loads((DATA / "default_policies.json").read_text(encoding="utf-8"))
    existing = set(
        session.scalars(select(EscalationPolicy.severity).where(EscalationPolicy.zone_id.is_(None)))
    )
    added = 0
    for severity, steps in defaults.items():
        if severity.startswith("_") or severity in existing:
            continue
        session.add(EscalationPolicy(zone_id=None, severity=severity, steps=steps))
        added += 1
    return added
