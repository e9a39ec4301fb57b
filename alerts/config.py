"""Configuration from environment variables, with safe defaults; secrets never live in code."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alerts.cap import DEFAULT_RESTRICTION, DEFAULT_SENDER_NAME

# name -> (default, parser). Every setting can be overridden by the environment variable of the same name.
_BOOL_TRUE = {"1", "true", "yes", "on"}


def _bool(value: str) -> bool:
    return value.strip().lower() in _BOOL_TRUE


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


SETTINGS: dict[str, tuple[Any, Any]] = {
    "DATABASE_URL": (None, str),  # default: SQLite file under instance/
    "DEFAULT_REGION": ("CD", str),  # phonenumbers region for numbers written without +country code
    "SCHEDULER_ENABLED": (False, _bool),  # the embedded scheduler; `make run` turns it on
    "SMS_GATEWAYS": (["console"], _list),  # order of gateways: twilio, africastalking, console
    "PUBLIC_URL": ("", str),  # https://alerts.example.org, for signature checks behind a proxy
    "TRUST_PROXY": (False, _bool),  # apply ProxyFix (one proxy) instead of PUBLIC_URL
    "TWILIO_ACCOUNT_SID": ("", str),
    "TWILIO_AUTH_TOKEN": ("", str),
    "TWILIO_FROM": ("", str),
    "TWILIO_API_BASE": ("", str),  # a local fake of the Twilio API, in tests and benchmarks
    # Process Twilio messages inside the webhook to answer with the receipt in TwiML (slower answers);
    # off, the webhook answers at once and the receipt goes through the outbox.
    "TWILIO_REPLY_WITH_RECEIPT": (False, _bool),
    "AT_USERNAME": ("", str),
    "AT_API_KEY": ("", str),
    "AT_SENDER_ID": ("", str),
    "AT_WEBHOOK_KEY": ("", str),
    "AT_ALLOWED_IPS": ([], _list),
    "AT_API_BASE": ("", str),
    "MAX_WEBHOOK_BYTES": (16 * 1024, int),
    "SENDER_RATE_LIMIT": (10, int),  # inbound messages per sender per window before they stop escalating
    "SENDER_RATE_WINDOW_MINUTES": (10, int),
    "AUTO_REPLY_CAP_PER_HOUR": (6, int),
    "UPDATE_THROTTLE_MINUTES": (5, int),  # at most one update SMS per incident in this period
    # Stored messages the engine processes in one transaction; 0: escalation.scheduler.default_batch_size
    # (200 in `flask worker`, 10 with the scheduler inside a web process; SQLite without the spool: 1).
    "INBOUND_BATCH_SIZE": (0, int),
    # In a burst (a pass found more than one message waiting), the engine's passes over the stored messages
    # start at least this far apart (0: back to back), so that they are fewer and fuller; alerts arriving one
    # at a time go at once.
    "INBOUND_GATHER_MS": (500, int),
    # SQLite: webhooks store into a spool file beside the database, which the engine empties
    # (alerts/spool.py); "auto" (the default) for a SQLite file database, "0": straight into the database.
    "INBOUND_SPOOL": ("auto", str),
    "WORKER_NICE": (10, int),  # `flask worker` runs this much below the web workers' CPU priority
    # Web and scheduler workers run the cycle collector after this many new objects (Python: 700; 0 keeps it)
    "GC_GEN0_THRESHOLD": (10_000, int),
    "KEYWORDS_DIR": ("", str),  # extra keyword files a coordinator can add
    # Optional online fallback for places the gazetteer lacks: "nominatim", or empty (off, the default).
    "GEOCODER": ("", str),
    "GEOCODER_DOMAIN": ("nominatim.openstreetmap.org", str),
    "GEOCODER_SCHEME": ("https", str),
    "GEOCODER_USER_AGENT": ("alert-relay", str),
    "GEOCODER_COUNTRIES": (["cd", "ug", "rw", "bi"], _list),
    "GEOCODER_MAX_KM": (80.0, float),  # farther than this from the sender's home, a result is refused
    "GEOCODER_MIN_DELAY_SECONDS": (1.0, float),  # Nominatim's usage policy: at most one request a second
    "LOG_LEVEL": ("INFO", str),
    "SILENT_DAYS": (7, int),  # network health: focal points silent this long are listed
    "LOG_REFRESH_SECONDS": (10, int),  # how often the alert log page asks what changed
    "BEEP_SEVERITY": ("high", str),  # a missed call ("beep") from a focal point: something is wrong
    # Line checks: focal points silent for LINE_CHECK_DAYS (a zone may set its own) get a TEST request.
    "LINE_CHECKS_ENABLED": (False, _bool),
    "LINE_CHECK_DAYS": (14, int),
    "LINE_CHECK_DAILY_CAP": (50, int),  # at most this many requests a day for the whole network
    # Map tiles are optional: with no URL the map draws zones and incidents on a plain background.
    "MAP_TILES_URL": ("", str),  # e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png or a local tile server
    "MAP_TILES_ATTRIBUTION": ("", str),
    # The CAP 1.2 feed: who sends it (default: PUBLIC_URL's host) and to whom (Restricted unless decided).
    "CAP_SENDER": ("", str),
    "CAP_SCOPE": ("Restricted", str),
    "CAP_RESTRICTION": (DEFAULT_RESTRICTION, str),
    "CAP_SENDER_NAME": (DEFAULT_SENDER_NAME, str),
}


def load_config(
    instance_path: Path, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Read every setting from the environment, falling back to its default; overrides win over both."""
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    config: dict[str, Any] = {}
    for name, (default, parse) in SETTINGS.items():
        raw = environ.get(name)
        config[name] = parse(raw) if raw not in (None, "") else default
    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = f"sqlite:///{instance_path / 'alerts.db'}"
    config.update(overrides)
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = environ.get("SECRET_KEY") or _instance_secret(instance_path)
    return config


def _instance_secret(instance_path: Path) -> str:
    """A secret key generated once and kept in instance/, readable by the owner only."""
    path = instance_path / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
