"""Benchmark parse_message + Gazetteer.locate per message against a synthetic 10,000-place gazetteer."""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from alerts.geolocation import Gazetteer, PlaceRecord, approx_km  # noqa: E402 - needs the repo on sys.path first
from alerts.parsing import load_keywords, parse_message  # noqa: E402 - needs the repo on sys.path first
from bench.score_corpus import DEFAULT_CORPUS_DIR, read_places  # noqa: E402 - needs the repo on sys.path first

_SYLLABLES = (
    "ka",
    "ki",
    "ku",
    "ma",
    "mu",
    "ba",
    "bu",
    "ru",
    "ri",
    "nya",
    "ny",
    "sha",
    "shi",
    "tshi",
    "cha",
    "nga",
    "ngo",
    "ngu",
    "mbo",
    "mba",
    "lu",
    "le",
    "ga",
    "go",
    "ta",
    "to",
    "we",
    "wa",
    "so",
    "se",
    "ni",
    "nzi",
    "hi",
    "bi",
    "mi",
    "ya",
    "yo",
    "ha",
    "ndu",
    "nde",
    "ndo",
    "ro",
    "si",
    "tu",
    "vu",
    "ve",
    "ke",
    "ko",
)
_REGION = (-3.0, 1.0, 27.8, 30.0)  # lat_min, lat_max, lon_min, lon_max: eastern DR Congo and its borders
_TEMPLATES = (
    "ATTAQUE a {p} ce matin, {n} hommes armes",
    "{n} personnes tuees a {p} par des hommes armes",
    "enlevement de {n} femmes au champ pres de {p}",
    "hommes armes signales a {p}",
    "Watu wenye silaha wameonekana {p} asubuhi hii, karibu {n}",
    "watu {n} wameuawa {p} usiku wa leo",
    "Mapigano makali karibu na {p} tangu jana",
    "babomi bato mibale na {p}",
    "Abantu bitwaje intwaro bageze i {p}",
    "Armed men attacked {p} last night, {n} killed",
    "maisons incendiees a {p}, population en fuite",
    "attaq ds notre village, bcp de coups de feu",
    "pillage des boutiques au marche de {p}",
    "GPS -1.3900 28.8100 incursion miliciens",
    "OK {n}",
    "Bien recu alerte {n}",
    "FIN {n}",
    "Bonjour, merci pour votre travail",
)


def synth_places(real: Sequence[PlaceRecord], total: int, rng: random.Random) -> list[PlaceRecord]:
    """The real places plus generated village names spread over the region, up to total."""
    places = list(real)
    lat_min, lat_max, lon_min, lon_max = _REGION
    while len(places) < total:
        name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()
        alts = (name.replace("sh", "tsh"),) if "sh" in name and rng.random() < 0.5 else ()
        places.append(
            PlaceRecord(
                id=len(places) + 1,
                name=name,
                lat=rng.uniform(lat_min, lat_max),
                lon=rng.uniform(lon_min, lon_max),
                alt_names=alts,
            )
        )
    return places


def typo(word: str, rng: random.Random) -> str:
    """One dropped, doubled or swapped letter, as thumbs on a cheap keypad do."""
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]


def main(argv: Sequence[str] | None = None) -> int:
    """Time parse + locate over generated messages and print median and p95 in microseconds."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus-dir", type=Path, default=DEFAULT_CORPUS_DIR)
    parser.add_argument("--places", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=20240501)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    csv_path = args.corpus_dir / "gazetteer-north-kivu.csv"
    real = read_places(csv_path) if csv_path.is_file() else []
    places = synth_places(real, args.places, rng)
    started = time.perf_counter()
    gazetteer = Gazetteer(places)
    build_ms = (time.perf_counter() - started) * 1000
    keywords = load_keywords()
    messages = []
    for _ in range(args.messages):
        place = rng.choice(places)
        name = typo(place.name, rng) if rng.random() < 0.2 else place.name
        template = rng.choice(_TEMPLATES)
        text = template.format(p=name, n=rng.randint(1, 60))
        home = (place.lat + rng.uniform(-0.2, 0.2), place.lon + rng.uniform(-0.2, 0.2))
        messages.append((text, home, place if "{p}" in template else None))
    for text, home, _ in messages[:200]:  # warm caches before timing
        parsed = parse_message(text, keywords)
        gazetteer.locate(parsed.place_words, parsed.coordinates, home)
    timings = []
    named = found_right = 0
    for text, home, place in messages:
        t0 = time.perf_counter_ns()
        parsed = parse_message(text, keywords)
        location = gazetteer.locate(parsed.place_words, parsed.coordinates, home)
        timings.append((time.perf_counter_ns() - t0) / 1000)
        if place is not None:
            named += 1
            found_right += (
                location.lat is not None
                and approx_km((place.lat, place.lon), (location.lat, location.lon)) <= 2
            )

    timings.sort()
    p95 = timings[int(0.95 * (len(timings) - 1))]
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(f"python: {platform.python_version()}")
    print(f"gazetteer: {len(places)} places ({len(real)} real), built in {build_ms:.0f} ms")
    print(f"messages: {len(messages)} (20% with a typo in the place name)")
    print(
        f"parse + locate per message: median {statistics.median(timings):.0f} us, p95 {p95:.0f} us, "
        f"max {timings[-1]:.0f} us"
    )
    print(f"located within 2 km of the named place: {100 * found_right / max(1, named):.1f}% of {named}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
