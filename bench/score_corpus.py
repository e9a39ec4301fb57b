"""Score the parser and geolocator against a labelled JSONL corpus; reports, never gates (always exits 0)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from alerts.geolocation import Gazetteer, PlaceRecord, geodesic_km  # noqa: E402 - needs the repo on sys.path first
from alerts.parsing import load_keywords, parse_message  # noqa: E402 - needs the repo on sys.path first

SHARED_CORPUS_DIR = REPO_ROOT.parent / "shared" / "corpus"
BUNDLED_CORPUS_DIR = REPO_ROOT / "bench" / "corpus"  # a copy, for clones without ../shared
DEFAULT_CORPUS_DIR = SHARED_CORPUS_DIR if (SHARED_CORPUS_DIR / "dev.jsonl").exists() else BUNDLED_CORPUS_DIR
LOCATION_TOLERANCE_KM = 2.0


def read_places(path: Path) -> list[PlaceRecord]:
    """Places from a gazetteer CSV in the import format name,lat,lon,admin1,admin2,alt_names."""
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            PlaceRecord(
                id=number,
                name=row["name"].strip(),
                lat=float(row["lat"]),
                lon=float(row["lon"]),
                admin1=(row.get("admin1") or "").strip(),
                admin2=(row.get("admin2") or "").strip(),
                alt_names=tuple(a.strip() for a in (row.get("alt_names") or "").split("|") if a.strip()),
            )
            for number, row in enumerate(csv.DictReader(handle), start=1)
        ]


@dataclass
class Metric:
    """Right answers out of n, and the misses to show."""

    name: str
    right: int = 0
    total: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, ok: bool, miss: str) -> None:
        self.total += 1
        if ok:
            self.right += 1
        else:
            self.misses.append(miss)

    def line(self) -> str:
        share = 100.0 * self.right / self.total if self.total else 0.0
        return f"{self.name:<28} {share:6.1f}%  ({self.right}/{self.total})"


def _expected_point(expect: dict, near: tuple[float, float], places: Sequence[PlaceRecord]) -> tuple | None:
    """Where the label says the alert is: its coordinates, the named place nearest home, or home."""
    if "lat" in expect and "lon" in expect:
        return (expect["lat"], expect["lon"])
    if expect.get("place"):
        namesakes = [p for p in places if p.name == expect["place"]]
        if not namesakes:
            return None
        best = min(namesakes, key=lambda p: geodesic_km(near, (p.lat, p.lon)))
        return (best.lat, best.lon)
    return near


def score(corpus: Path, gazetteer_csv: Path, keyword_dirs: Sequence[Path] = ()) -> list[Metric]:
    """Run parse_message and Gazetteer.locate over every labelled message and tally each field."""
    places = read_places(gazetteer_csv)
    gazetteer = Gazetteer(places)
    keywords = load_keywords(keyword_dirs)
    kind = Metric("kind right")
    category = Metric("category right")
    location = Metric(f"location within {LOCATION_TOLERANCE_KM:g} km")
    count = Metric("count right")
    command = Metric("command and number right")
    for line in corpus.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        text, expect = item["text"], item["expect"]
        near = tuple(item["near"]) if item.get("near") else None
        parsed = parse_message(text, keywords)
        label = f"{item.get('id', '?')}: {text!r}"
        kind.add(parsed.kind == expect["kind"], f"{label} -> {parsed.kind} (want {expect['kind']})")
        if expect["kind"] == "alert":
            category.add(
                parsed.category == expect.get("category"),
                f"{label} -> {parsed.category} {parsed.secondary_categories} (want {expect.get('category')})",
            )
            found = gazetteer.locate(parsed.place_words, parsed.coordinates, near)
            want = _expected_point(expect, near, places)
            got = (found.lat, found.lon) if found.lat is not None else None
            ok = want is not None and got is not None and geodesic_km(want, got) <= LOCATION_TOLERANCE_KM
            location.add(
                ok,
                f"{label} -> {found.place_name or found.located_by} [{found.note}] "
                f"words={parsed.place_words}",
            )
            if "count" in expect:
                count.add(
                    parsed.count == expect["count"], f"{label} -> {parsed.count} (want {expect['count']})"
                )
        if expect["kind"] == "command":
            ok = parsed.command == expect.get("command") and parsed.ref == expect.get("ref")
            command.add(
                ok,
                f"{label} -> {parsed.command} {parsed.ref} "
                f"(want {expect.get('command')} {expect.get('ref')})",
            )
    return [kind, category, location, count, command]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the scores and every miss; say 'skipped' when the corpus files are missing."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus-dir", type=Path, default=DEFAULT_CORPUS_DIR)
    parser.add_argument(
        "--gazetteer", type=Path, help="gazetteer CSV (default: <corpus-dir>/gazetteer-north-kivu.csv)"
    )
    parser.add_argument("--labelled", type=Path, help="labelled JSONL (default: <corpus-dir>/dev.jsonl)")
    parser.add_argument("--keywords", type=Path, action="append", default=[], help="extra keyword directory")
    args = parser.parse_args(argv)
    gazetteer_csv = args.gazetteer or args.corpus_dir / "gazetteer-north-kivu.csv"
    if not gazetteer_csv.is_file() and args.corpus_dir == BUNDLED_CORPUS_DIR:
        gazetteer_csv = REPO_ROOT / "alerts" / "data" / "demo" / "gazetteer-north-kivu.csv"  # the same file
    labelled = args.labelled or args.corpus_dir / "dev.jsonl"
    missing = [str(p) for p in (gazetteer_csv, labelled) if not p.is_file()]
    if missing:
        print(f"skipped: missing {', '.join(missing)}")
        return 0
    metrics = score(labelled, gazetteer_csv, args.keywords)
    print(f"corpus: {labelled}\ngazetteer: {gazetteer_csv}\n")
    for metric in metrics:
        print(metric.line())
    for metric in metrics:
        if metric.misses:
            print(f"\nmisses, {metric.name}:")
            for miss in metric.misses:
                print(f"  {miss}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
