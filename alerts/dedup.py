"""Deduplication rules: which open incident, if any, a new report belongs to. Pure: no Flask, no session."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

from rapidfuzz import fuzz

from alerts.geolocation import geodesic_km
from alerts.textnorm import fold

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
REPEAT_WINDOW = timedelta(minutes=30)
REPEAT_SIMILARITY = 85  # rapidfuzz ratio of the folded texts
KM_PER_DEGREE_LAT = 111.32
# How much one report's location method is worth as evidence that the place is right.
LOCATION_CONFIDENCE = {"coordinates": 0.8, "gazetteer": 0.6, "geocoder": 0.5, "home": 0.35, "none": 0.2}


@dataclass(frozen=True)
class CategoryGroups:
    """Compatible categories, defined in data (alerts/data/dedup_groups.json)."""

    groups: Mapping[str, frozenset[str]]
    wildcards: frozenset[str] = frozenset()

    def compatible(self, a: str, b: str) -> str | None:
        """The name of a group both categories belong to (or 'wildcard'), None when incompatible."""
        if a in self.wildcards or b in self.wildcards:
            return "wildcard"
        if a == b:
            return "same category"
        for name, members in self.groups.items():
            if a in members and b in members:
                return name
        return None


@cache
def default_groups() -> CategoryGroups:
    data = json.loads((Path(__file__).parent / "data" / "dedup_groups.json").read_text(encoding="utf-8"))
    return CategoryGroups(
        groups={name: frozenset(members) for name, members in data["groups"].items()},
        wildcards=frozenset(data.get("wildcards", ())),
    )


@dataclass(frozen=True)
class DedupRules:
    distance_km: float = 10.0
    window: timedelta = timedelta(hours=6)
    groups: CategoryGroups = field(default_factory=default_groups)


@dataclass(frozen=True)
class NewReport:
    category: str
    severity: str
    lat: float
    lon: float
    received_at: datetime
    located_by: str
    focal_point_id: int | None
    text: str


@dataclass(frozen=True)
class Candidate:
    """An open incident, as much of it as matching needs."""

    incident_id: int
    category: str
    severity: str
    lat: float
    lon: float
    last_report_at: datetime
    # (focal point id, received at, text) of each report already in the incident
    reports: tuple[tuple[int | None, datetime, str], ...] = ()


@dataclass(frozen=True)
class Match:
    incident_id: int
    distance_km: float
    minutes: float
    group: str
    repeat: bool  # the same sender saying the same thing again: attached, counted once

    @property
    def reason(self) -> str:
        kind = "repeat" if self.repeat else "merged"
        return f"{kind}: {self.group}, {self.distance_km:.1f} km, {self.minutes:.0f} min"


def bounding_box(lat: float, lon: float, km: float) -> tuple[float, float, float, float]:
    """(min_lat, max_lat, min_lon, max_lon) enclosing a circle: a cheap indexed pre-filter."""
    dlat = km / KM_PER_DEGREE_LAT
    dlon = km / (KM_PER_DEGREE_LAT * max(math.cos(math.radians(lat)), 0.01))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


def is_repeat(report: NewReport, earlier: Iterable[tuple[int | None, datetime, str]]) -> bool:
    """The same focal point sending the same or nearly the same text within 30 minutes."""
    if report.focal_point_id is None:
        return False
    text = fold(report.text)
    return any(
        sender == report.focal_point_id
        and abs(report.received_at - at) <= REPEAT_WINDOW
        and fuzz.ratio(text, fold(earlier_text)) >= REPEAT_SIMILARITY
        for sender, at, earlier_text in earlier
    )


def best_match(report: NewReport, candidates: Sequence[Candidate], rules: DedupRules) -> Match | None:
    """The nearest compatible open incident in space and time, or None to open a new one."""
    best: tuple[float, Match] | None = None
    for candidate in candidates:
        group = rules.groups.compatible(report.category, candidate.category)
        if group is None:
            continue
        gap = abs(report.received_at - candidate.last_report_at)
        if gap > rules.window:
            continue
        distance = geodesic_km((report.lat, report.lon), (candidate.lat, candidate.lon))
        if distance > rules.distance_km:
            continue
        # Nearest in space and time: both distances as fractions of their limits.
        score = distance / rules.distance_km + gap / rules.window
        match = Match(
            candidate.incident_id,
            distance,
            gap.total_seconds() / 60,
            group,
            is_repeat(report, candidate.reports),
        )
        if best is None or score < best[0]:
            best = (score, match)
    return best[1] if best else None


def combined_confidence(current: float, report_confidence: float) -> float:
    """A corroboration from another focal point raises confidence, never past 0.99."""
    return round(min(0.99, 1 - (1 - current) * (1 - report_confidence / 2)), 3)


def is_upgrade(current_severity: str, new_severity: str) -> bool:
    return SEVERITY_RANK[new_severity] > SEVERITY_RANK[current_severity]
