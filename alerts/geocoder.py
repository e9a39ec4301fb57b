"""The optional online fallback: geopy's Nominatim, rate-limited and cached, never trusted far from home.

Off by default (the relay must work with no internet). When on, it is asked only about place words the
gazetteer did not know, and a result farther than GEOCODER_MAX_KM from the sender's home is refused, the
report then staying at home with a note that says so.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from geopy.exc import GeopyError
from geopy.extra.rate_limiter import RateLimiter
from geopy.geocoders import Nominatim

from alerts.geolocation import LocatedBy, Location, geodesic_km

log = logging.getLogger(__name__)
MAX_QUERIES_PER_MESSAGE = 2


class OnlineGeocoder:
    """Looks place words up through a geopy `geocode` callable, remembering answers (misses too)."""

    def __init__(self, geocode: Callable[..., Any], *, max_km: float, cache_size: int = 2048) -> None:
        self.geocode = geocode
        self.max_km = max_km
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[float, float, str] | None] = OrderedDict()

    def _lookup(self, query: str) -> tuple[float, float, str] | None:
        if query in self._cache:
            self._cache.move_to_end(query)
            return self._cache[query]
        found = self.geocode(query)
        answer = (
            None if found is None else (float(found.latitude), float(found.longitude), str(found.address))
        )
        self._cache[query] = answer
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return answer

    def locate(self, words: Sequence[str], home: tuple[float, float] | None) -> Location | None:
        """A location for the first place word the geocoder knows near home; None otherwise."""
        refused = []
        for word in list(words)[:MAX_QUERIES_PER_MESSAGE]:
            try:
                answer = self._lookup(word.strip().lower())
            except GeopyError as exc:  # the relay goes on without it: the report stays at home
                log.warning("online geocoder unavailable: %s", type(exc).__name__)
                return None
            if answer is None:
                continue
            lat, lon, address = answer
            distance = geodesic_km(home, (lat, lon)) if home else None
            if distance is not None and distance > self.max_km:
                refused.append(f"'{word}' ~ {address.split(',')[0]} ({distance:.0f} km from home)")
                continue
            where = f", {distance:.1f} km from home" if distance is not None else ""
            return Location(
                lat,
                lon,
                LocatedBy.GEOCODER,
                None,
                address.split(",")[0],
                0.5,
                distance,
                f"online geocoder: '{word}' ~ {address}{where}",
            )
        if refused:
            log.info("online geocoder: refused %d far result(s)", len(refused))
        return None


@cache
def _nominatim(
    domain: str, scheme: str, user_agent: str, countries: tuple[str, ...], min_delay: float, max_km: float
) -> OnlineGeocoder:
    nominatim = Nominatim(user_agent=user_agent, domain=domain, scheme=scheme, timeout=3)

    def geocode(query: str) -> Any:
        return nominatim.geocode(query, exactly_one=True, country_codes=list(countries))

    limited = RateLimiter(geocode, min_delay_seconds=min_delay, max_retries=0, swallow_exceptions=False)
    return OnlineGeocoder(limited, max_km=max_km)


def geocoder_from_config(config: Mapping[str, Any]) -> OnlineGeocoder | None:
    """The configured geocoder (one per process, so its cache lives on), or None when off."""
    if not config.get("GEOCODER"):
        return None
    if config["GEOCODER"] != "nominatim":
        raise ValueError(f"GEOCODER must be 'nominatim' or empty, not {config['GEOCODER']!r}")
    return _nominatim(
        config["GEOCODER_DOMAIN"],
        config["GEOCODER_SCHEME"],
        config["GEOCODER_USER_AGENT"],
        tuple(config["GEOCODER_COUNTRIES"]),
        float(config["GEOCODER_MIN_DELAY_SECONDS"]),
        float(config["GEOCODER_MAX_KM"]),
    )
