"""Pure offline geolocation: place words → a gazetteer place, explicit coordinates, or the sender's home."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from geographiclib.geodesic import Geodesic
from geopy.distance import ELLIPSOIDS
from rapidfuzz import fuzz, process

from alerts.textnorm import phrase_key, skeleton

_EARTH_KM_PER_DEGREE = 111.195
_MIN_FUZZY_LEN = 4
_FUZZY_BASE_CUTOFF = 75.0
_FUZZY_LIMIT = 8
_FUZZY_ORDER_PENALTY = 1.5  # points of fuzzy score a candidate loses per place word ranked before it
_FUZZY_NEAR_MARGIN = 10.0  # a near match this close in score to a far one is preferred

CONFIDENCE_COORDINATES = 0.95
CONFIDENCE_EXACT_NAME = 0.9
CONFIDENCE_EXACT_ALT = 0.85
CONFIDENCE_SKELETON = 0.75
CONFIDENCE_FUZZY_MAX = 0.8
CONFIDENCE_FUZZY_MIN = 0.45
CONFIDENCE_HOME = 0.3
AMBIGUOUS_WITH_HOME_FACTOR = 0.95
AMBIGUOUS_WITHOUT_HOME_FACTOR = 0.6
FAR_EXACT_FACTOR = 0.7
FAR_FUZZY_NO_HOME_FACTOR = 0.5


@dataclass(frozen=True)
class PlaceRecord:
    """One gazetteer place: a village, town or settlement with its alternate spellings."""

    id: int | None
    name: str
    lat: float
    lon: float
    admin1: str = ""
    admin2: str = ""
    alt_names: tuple[str, ...] = ()


class LocatedBy(StrEnum):
    """Which evidence placed an alert."""

    COORDINATES = "coordinates"
    GAZETTEER = "gazetteer"
    GEOCODER = "geocoder"  # the optional online fallback (Nominatim)
    HOME = "home"
    NONE = "none"


@dataclass(frozen=True)
class Location:
    """Where an alert happened, how that was decided, how sure we are and why."""

    lat: float | None
    lon: float | None
    located_by: LocatedBy
    place_id: int | None
    place_name: str | None
    confidence: float
    distance_from_home_km: float | None
    note: str


@dataclass(frozen=True)
class ZoneArea:
    """A base's area of responsibility: a circle, or a polygon of (lat, lon) vertices when given."""

    id: int
    name: str
    lat: float
    lon: float
    radius_km: float
    polygon: tuple[tuple[float, float], ...] | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    """One indexed spelling of a place."""

    index: int
    is_alt: bool


@dataclass(frozen=True, slots=True)
class _Match:
    """A place found for a place word, and how it was found."""

    place: PlaceRecord
    entry: _Entry
    word: str
    how: str
    score: float
    candidates: int


def approx_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Equirectangular distance in km: within 1% of geodesic at district scale, and far cheaper."""
    mean_lat = math.radians((a[0] + b[0]) / 2)
    dx = (b[1] - a[1]) * math.cos(mean_lat)
    dy = b[0] - a[0]
    return math.hypot(dx, dy) * _EARTH_KM_PER_DEGREE


# geopy's `geodesic(a, b)` builds this (its series coefficients) anew for every distance, most of the call's
# cost; the same ellipsoid and the same computation, built once (Geodesic is immutable: safe across threads).
# Its axis in km, as geopy gives it: distances come out in km.
_WGS84_AXIS_KM, _, _WGS84_FLATTENING = ELLIPSOIDS["WGS-84"]
_WGS84 = Geodesic(_WGS84_AXIS_KM, _WGS84_FLATTENING)


@lru_cache(maxsize=16384)
def geodesic_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Geodesic distance in km (WGS84), what `geopy.distance.geodesic(a, b).km` gives, remembered: reports,
    incidents and zones mostly sit on the gazetteer's few points."""
    return float(_WGS84.Inverse(a[0], a[1], b[0], b[1], Geodesic.DISTANCE)["s12"])


def _fuzzy_cutoff(length: int) -> float:
    """The fuzzy score a name of this length needs: short names tolerate less."""
    if length <= 4:
        return 88.0
    if length == 5:
        return 85.0
    if length <= 7:
        return 80.0
    return _FUZZY_BASE_CUTOFF


class Gazetteer:
    """Places indexed by folded name and alternate names: exact, spelling-skeleton and fuzzy lookups."""

    def __init__(self, places: Iterable[PlaceRecord]) -> None:
        self._places: tuple[PlaceRecord, ...] = tuple(places)
        exact: dict[str, dict[_Entry, None]] = {}
        skeletons: dict[str, dict[_Entry, None]] = {}
        for index, place in enumerate(self._places):
            spellings = [(place.name, False)] + [(alt, True) for alt in place.alt_names]
            for spelling, is_alt in spellings:
                key = phrase_key(spelling)
                if not key:
                    continue
                entry = _Entry(index, is_alt)
                for variant in {key, key.replace(" ", "")}:
                    exact.setdefault(variant, {})[entry] = None
                    if len(variant) >= _MIN_FUZZY_LEN:
                        skeletons.setdefault(skeleton(variant), {})[entry] = None
        self._exact = {k: tuple(v) for k, v in exact.items()}
        self._skeleton = {k: tuple(v) for k, v in skeletons.items()}
        buckets: dict[str, list[str]] = {}
        for key in self._exact:
            if len(key) >= _MIN_FUZZY_LEN:
                buckets.setdefault(key[0], []).append(key)
        self._buckets = {k: tuple(v) for k, v in buckets.items()}

    def __len__(self) -> int:
        return len(self._places)

    def locate(
        self,
        place_words: Sequence[str],
        coordinates: tuple[float, float] | None,
        home: tuple[float, float] | None,
        *,
        max_fuzzy_km: float = 60.0,
    ) -> Location:
        """Place an alert: explicit coordinates, else a named place (namesakes: nearest home), else home."""
        if coordinates is not None:
            distance = geodesic_km(home, coordinates) if home else None
            return Location(
                lat=coordinates[0],
                lon=coordinates[1],
                located_by=LocatedBy.COORDINATES,
                place_id=None,
                place_name=None,
                confidence=CONFIDENCE_COORDINATES,
                distance_from_home_km=distance,
                note=f"explicit coordinates {coordinates[0]:.5f}, {coordinates[1]:.5f}"
                + (f", {distance:.1f} km from home" if distance is not None else ""),
            )
        keys = [k for k in dict.fromkeys(phrase_key(w) for w in place_words) if k]
        match = self._lookup(keys, "exact", home) or self._lookup(
            [k for k in keys if len(k) >= _MIN_FUZZY_LEN], "skeleton", home
        )
        if match is not None:
            return self._located(match, home, max_fuzzy_km)
        return self._fuzzy(keys, home, max_fuzzy_km) or self._fallback(
            home, "no known place named in the text"
        )

    def _lookup(
        self,
        keys: Sequence[str],
        how: str,
        home: tuple[float, float] | None,
    ) -> _Match | None:
        """The first key with an exact (or same-skeleton) hit; namesakes are settled by distance to home."""
        for key in keys:
            entries = self._exact.get(key) if how == "exact" else self._skeleton.get(skeleton(key))
            if entries:
                return self._nearest(entries, key, how, 100.0, home)
        return None

    def _nearest(
        self, entries: Sequence[_Entry], word: str, how: str, score: float, home: tuple[float, float] | None
    ) -> _Match:
        """Among index entries, the place nearest the sender's home (the first one without a home)."""
        unique: dict[int, _Entry] = {}
        for entry in entries:
            if entry.index not in unique or (unique[entry.index].is_alt and not entry.is_alt):
                unique[entry.index] = entry
        chosen = list(unique.values())
        if home is not None and len(chosen) > 1:
            chosen.sort(key=lambda e: approx_km(home, self._coords(e.index)))
        best = chosen[0]
        return _Match(self._places[best.index], best, word, how, score, len(unique))

    def _coords(self, index: int) -> tuple[float, float]:
        place = self._places[index]
        return (place.lat, place.lon)

    def _fuzzy(
        self, keys: Sequence[str], home: tuple[float, float] | None, max_fuzzy_km: float
    ) -> Location | None:
        """Typo-tolerant match; a match far from home is never taken silently."""
        scored: list[tuple[float, float, int, str, str]] = []
        for order, key in enumerate(keys):
            if len(key) < _MIN_FUZZY_LEN or not key.replace(" ", "").isalpha():
                continue
            bucket = self._buckets.get(key[0])
            if not bucket:
                continue
            for name, score, _ in process.extract(
                key, bucket, scorer=fuzz.ratio, score_cutoff=_FUZZY_BASE_CUTOFF, limit=_FUZZY_LIMIT
            ):
                if score < _fuzzy_cutoff(min(len(key), len(name))):
                    continue
                scored.append((score - _FUZZY_ORDER_PENALTY * order, score, order, key, name))
        if not scored:
            return None
        scored.sort(key=lambda item: (-item[0], item[2]))
        matches = [
            self._nearest(self._exact[name], key, "fuzzy", score, home) for _, score, _, key, name in scored
        ]
        best = matches[0]
        if home is not None and approx_km(home, (best.place.lat, best.place.lon)) > max_fuzzy_km:
            near = [
                m
                for m in matches
                if approx_km(home, (m.place.lat, m.place.lon)) <= max_fuzzy_km
                and m.score >= best.score - _FUZZY_NEAR_MARGIN
            ]
            if near:
                best = near[0]
            else:
                distance = geodesic_km(home, (best.place.lat, best.place.lon))
                return self._fallback(
                    home,
                    f"fuzzy '{best.word}' ~ {best.place.name} ({best.score:.0f}%) rejected: "
                    f"{distance:.1f} km from home > {max_fuzzy_km:g} km",
                )
        return self._located(best, home, max_fuzzy_km)

    def _located(self, match: _Match, home: tuple[float, float] | None, max_fuzzy_km: float) -> Location:
        """A gazetteer location with its confidence and a human note."""
        place = match.place
        spelling = "alt name" if match.entry.is_alt else "name"
        if match.how == "exact":
            confidence = CONFIDENCE_EXACT_ALT if match.entry.is_alt else CONFIDENCE_EXACT_NAME
            how = f"'{match.word}' = {place.name} ({spelling})"
        elif match.how == "skeleton":
            confidence = CONFIDENCE_SKELETON
            how = f"'{match.word}' sounds like {place.name} ({spelling})"
        else:
            cutoff = _fuzzy_cutoff(len(match.word))
            share = max(0.0, min(1.0, (match.score - cutoff) / max(1.0, 100.0 - cutoff)))
            confidence = CONFIDENCE_FUZZY_MIN + (CONFIDENCE_FUZZY_MAX - CONFIDENCE_FUZZY_MIN) * share
            how = f"'{match.word}' ~ {place.name} ({spelling}, {match.score:.0f}%)"
        parts = [f"gazetteer: {how}", f"1 of {match.candidates} candidates"]
        distance = geodesic_km(home, (place.lat, place.lon)) if home is not None else None
        if match.candidates > 1:
            if home is not None:
                confidence *= AMBIGUOUS_WITH_HOME_FACTOR
                parts[-1] += " (nearest to home)"
            else:
                confidence *= AMBIGUOUS_WITHOUT_HOME_FACTOR
                parts[-1] += " (no home to choose by)"
        if distance is not None:
            parts.append(f"{distance:.1f} km from home")
            if distance > max_fuzzy_km:
                factor = FAR_EXACT_FACTOR
                parts.append(f"far from home (> {max_fuzzy_km:g} km)")
                confidence *= factor
        elif match.how == "fuzzy":
            confidence *= FAR_FUZZY_NO_HOME_FACTOR
            parts.append("no home to check a fuzzy match against")
        return Location(
            lat=place.lat,
            lon=place.lon,
            located_by=LocatedBy.GAZETTEER,
            place_id=place.id,
            place_name=place.name,
            confidence=round(confidence, 3),
            distance_from_home_km=distance,
            note=", ".join(parts),
        )

    @staticmethod
    def _fallback(home: tuple[float, float] | None, reason: str) -> Location:
        """The sender's home when the text gives nothing better, or no location at all."""
        if home is None:
            return Location(None, None, LocatedBy.NONE, None, None, 0.0, None, f"{reason}; no home known")
        return Location(
            lat=home[0],
            lon=home[1],
            located_by=LocatedBy.HOME,
            place_id=None,
            place_name=None,
            confidence=CONFIDENCE_HOME,
            distance_from_home_km=0.0,
            note=f"{reason}; using the sender's home",
        )


def _in_polygon(lat: float, lon: float, polygon: Sequence[tuple[float, float]]) -> bool:
    """Ray casting on (lat, lon) vertices: fine for district-sized polygons away from the antimeridian."""
    inside = False
    count = len(polygon)
    for i in range(count):
        lat1, lon1 = polygon[i]
        lat2, lon2 = polygon[(i + 1) % count]
        if (lat1 > lat) != (lat2 > lat):
            crossing = lon1 + (lat - lat1) * (lon2 - lon1) / (lat2 - lat1)
            if lon < crossing:
                inside = not inside
    return inside


def _contains(zone: ZoneArea, lat: float, lon: float, approx: float) -> bool:
    """Whether a zone's polygon (or, without one, its circle) holds the point."""
    if zone.polygon:
        return _in_polygon(lat, lon, zone.polygon)
    # The cheap distance settles all but the points near the edge, where the geodesic decides.
    if approx < zone.radius_km * 0.97:
        return True
    if approx > zone.radius_km * 1.03:
        return False
    return geodesic_km((zone.lat, zone.lon), (lat, lon)) <= zone.radius_km


def zone_for_point(lat: float, lon: float, zones: Sequence[ZoneArea]) -> ZoneArea | None:
    """The zone holding the point; the nearest centre (geodesic) when several or none hold it."""
    if not zones:
        return None
    approx = {z.id: approx_km((z.lat, z.lon), (lat, lon)) for z in zones}
    holding = [z for z in zones if _contains(z, lat, lon, approx[z.id])]
    pool = holding or list(zones)
    if len(pool) == 1:
        return pool[0]
    nearest = sorted(pool, key=lambda z: approx[z.id])[:3]  # the geodesic orders the close calls
    return min(nearest, key=lambda z: geodesic_km((z.lat, z.lon), (lat, lon)))
