"""CSV imports of the network's reference data: validated whole, then applied in one transaction.

Every row is checked before anything is written; any bad row aborts the import with errors that name
their line, so nothing is ever half-imported. Importing the same file twice changes nothing.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.incidents import next_number
from alerts.models import FocalPoint, Place, Responder, Zone
from alerts.phones import InvalidPhone, mask_phone, to_e164

LANGUAGES = ("fr", "sw", "ln", "rw", "en")


class ImportFailed(Exception):
    """The file was rejected; `errors` lists every problem as 'line N: ...'."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


@dataclass
class _Row:
    line: int
    values: dict[str, Any] = field(default_factory=dict)


class _RowError(ValueError):
    pass


# A cell a spreadsheet would run as a formula (CSV injection): names and villages can come from SMS
# (a registration), and coordinators open exports in Excel or LibreOffice.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d[\d.]*")  # phone numbers in E.164, coordinates


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: one that would start a formula gets a leading apostrophe
    (numbers, phone numbers included, stay as they are). `_read` takes the apostrophe off on import."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _unquoted(value: str) -> str:
    """An exported cell back as it was stored (see spreadsheet_safe)."""
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_STARTS) else value


def _read(stream: TextIO, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    text = stream.read()
    if text.startswith("\ufeff"):  # a BOM from spreadsheet exports
        text = text[1:]
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in columns if c not in header]
    if missing:
        raise ImportFailed([f"line 1: missing column(s) {', '.join(missing)}; expected {','.join(columns)}"])
    reader.fieldnames = header
    rows = []
    for record in reader:
        if not any((v or "").strip() for k, v in record.items() if k is not None):
            continue  # blank line
        if None in record:
            raise ImportFailed([f"line {reader.line_num}: more fields than the header has"])
        rows.append((reader.line_num, {k: _unquoted((v or "").strip()) for k, v in record.items()}))
    return rows


def _float(value: str, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _RowError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise _RowError(f"{name} {value!r} is out of range {low}..{high}")
    return round(number, 6)


def _required(record: dict[str, str], name: str) -> str:
    if not record.get(name):
        raise _RowError(f"{name} is empty")
    return record[name]


def _language(value: str) -> str:
    language = (value or "fr").lower()
    if language not in LANGUAGES:
        raise _RowError(f"language {value!r} is not one of {', '.join(LANGUAGES)}")
    return language


def _phone(value: str, region: str) -> str:
    try:
        return to_e164(value, region)
    except InvalidPhone as exc:
        raise _RowError(f"phone {mask_phone(value)} is {exc}") from None


def _validate(
    rows: Iterable[tuple[int, dict[str, str]]],
    parse: Callable[[dict[str, str]], dict[str, Any]],
    key: Callable[[dict[str, Any]], Any],
    describe: str,
) -> list[_Row]:
    """Parse every row, collecting all errors; a key seen twice in the file is an error too."""
    errors: list[str] = []
    parsed: list[_Row] = []
    seen: dict[Any, int] = {}
    for line, record in rows:
        try:
            values = parse(record)
        except _RowError as exc:
            errors.append(f"line {line}: {exc}")
            continue
        k = key(values)
        if k in seen:
            errors.append(f"line {line}: same {describe} as line {seen[k]}")
            continue
        seen[k] = line
        parsed.append(_Row(line, values))
    if errors:
        raise ImportFailed(errors)
    return parsed


def _apply(obj: Any, values: dict[str, Any]) -> bool:
    """Set changed attributes only; True when something changed."""
    changed = False
    for name, value in values.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed = True
    return changed


def _upsert(
    session: Session, existing: Any, model: type, values: dict[str, Any], result: ImportResult
) -> Any:
    if existing is None:
        obj = model(**values)
        session.add(obj)
        result.created += 1
        return obj
    if _apply(existing, values):
        result.updated += 1
    else:
        result.unchanged += 1
    return existing


def import_places(session: Session, stream: TextIO) -> ImportResult:
    """Gazetteer rows name,lat,lon,admin1,admin2,alt_names; a place is its name at its position."""

    def parse(r: dict[str, str]) -> dict[str, Any]:
        alt = "|".join(a.strip() for a in r.get("alt_names", "").split("|") if a.strip())
        return {
            "name": _required(r, "name"),
            "lat": _float(_required(r, "lat"), "lat", -90, 90),
            "lon": _float(_required(r, "lon"), "lon", -180, 180),
            "admin1": r.get("admin1", ""),
            "admin2": r.get("admin2", ""),
            "alt_names": alt,
        }

    rows = _validate(
        _read(stream, ("name", "lat", "lon", "admin1", "admin2", "alt_names")),
        parse,
        lambda v: (v["name"], v["lat"], v["lon"]),
        "name and position",
    )
    existing = {(p.name, p.lat, p.lon): p for p in session.scalars(select(Place))}
    result = ImportResult()
    for row in rows:
        v = row.values
        _upsert(session, existing.get((v["name"], v["lat"], v["lon"])), Place, v, result)
    if result.created or result.updated:
        next_number(session, "places_version")  # tells every process to rebuild its gazetteer
    session.commit()
    return result


def import_zones(session: Session, stream: TextIO) -> ImportResult:
    """Zone rows name,lat,lon,radius_km: a base's area as a circle."""

    def parse(r: dict[str, str]) -> dict[str, Any]:
        radius = _float(_required(r, "radius_km"), "radius_km", 0, 2000)
        if radius <= 0:
            raise _RowError("radius_km must be above 0")
        return {
            "name": _required(r, "name"),
            "lat": _float(_required(r, "lat"), "lat", -90, 90),
            "lon": _float(_required(r, "lon"), "lon", -180, 180),
            "radius_km": radius,
        }

    rows = _validate(_read(stream, ("name", "lat", "lon", "radius_km")), parse, lambda v: v["name"], "name")
    existing = {z.name: z for z in session.scalars(select(Zone))}
    result = ImportResult()
    for row in rows:
        _upsert(session, existing.get(row.values["name"]), Zone, row.values, result)
    session.commit()
    return result


def import_focal_points(session: Session, stream: TextIO, default_region: str = "CD") -> ImportResult:
    """Focal point rows name,phone,lat,lon,zone,language; the phone number is the identity."""
    zones = {z.name: z for z in session.scalars(select(Zone))}

    def parse(r: dict[str, str]) -> dict[str, Any]:
        zone_name = _required(r, "zone")
        if zone_name not in zones:
            raise _RowError(f"zone {zone_name!r} does not exist (import zones first)")
        return {
            "name": _required(r, "name"),
            "phone": _phone(_required(r, "phone"), default_region),
            "home_lat": _float(_required(r, "lat"), "lat", -90, 90),
            "home_lon": _float(_required(r, "lon"), "lon", -180, 180),
            "zone_id": zones[zone_name].id,
            "language": _language(r.get("language", "")),
        }

    rows = _validate(
        _read(stream, ("name", "phone", "lat", "lon", "zone", "language")),
        parse,
        lambda v: v["phone"],
        "phone",
    )
    _refuse_phones_of(session, Responder, [r.values["phone"] for r in rows], rows, "a responder")
    existing = {f.phone: f for f in session.scalars(select(FocalPoint))}
    result = ImportResult()
    for row in rows:
        _upsert(session, existing.get(row.values["phone"]), FocalPoint, row.values, result)
    session.commit()
    return result


def import_responders(session: Session, stream: TextIO, default_region: str = "CD") -> ImportResult:
    """Responder rows name,phone,tier,zones,language with zones separated by '|'."""
    zones = {z.name: z for z in session.scalars(select(Zone))}

    def parse(r: dict[str, str]) -> dict[str, Any]:
        tier = _required(r, "tier")
        if tier not in ("1", "2", "3"):
            raise _RowError(f"tier {tier!r} must be 1, 2 or 3")
        # Tier 3 coordinators cover every zone; the others need the zones they answer for.
        raw_zones = r.get("zones", "") if tier == "3" else _required(r, "zones")
        names = [n.strip() for n in raw_zones.split("|") if n.strip()]
        unknown = [n for n in names if n not in zones]
        if unknown:
            raise _RowError(f"zone(s) {', '.join(map(repr, unknown))} do not exist (import zones first)")
        return {
            "name": _required(r, "name"),
            "phone": _phone(_required(r, "phone"), default_region),
            "tier": int(tier),
            "language": _language(r.get("language", "")),
            "zones": sorted(names),
        }

    rows = _validate(
        _read(stream, ("name", "phone", "tier", "zones", "language")), parse, lambda v: v["phone"], "phone"
    )
    _refuse_phones_of(session, FocalPoint, [r.values["phone"] for r in rows], rows, "a focal point")
    existing = {r.phone: r for r in session.scalars(select(Responder))}
    result = ImportResult()
    for row in rows:
        values = dict(row.values)
        zone_names = values.pop("zones")
        responder = existing.get(values["phone"])
        zones_changed = responder is not None and sorted(z.name for z in responder.zones) != zone_names
        before = (result.created, result.updated)
        responder = _upsert(session, responder, Responder, values, result)
        if zones_changed and (result.created, result.updated) == before:
            result.unchanged -= 1
            result.updated += 1
        responder.zones = [zones[n] for n in zone_names]
    session.commit()
    return result


def _refuse_phones_of(session: Session, other: type, phones: list[str], rows: list[_Row], what: str) -> None:
    """A number is either a focal point's or a responder's: the roles route messages differently."""
    taken = set(session.scalars(select(other.phone).where(other.phone.in_(phones))))
    errors = [
        f"line {r.line}: phone {mask_phone(r.values['phone'])} is {what}'s"
        for r in rows
        if r.values["phone"] in taken
    ]
    if errors:
        raise ImportFailed(errors)
