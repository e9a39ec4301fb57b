"""Per-request resources: the database session of a request, closed in teardown."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, Response, current_app, g, session
from sqlalchemy.orm import Session

from alerts.db import Database


def get_database(app: Flask | None = None) -> Database:
    """The application's Database (engine and session factory)."""
    return (app or current_app).extensions["alerts_db"]


def request_session() -> Session:
    """The session of the current request, opened on first use."""
    if "db_session" not in g:
        g.db_session = get_database().sessionmaker()
    return g.db_session


def _close_request_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_close_request_session)
    app.after_request(_security_headers)
    app.context_processor(_template_helpers)
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config.get("PUBLIC_URL", "").startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
    )


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if response.mimetype == "text/html":
        tiles = current_app.config.get("MAP_TILES_URL", "")
        img = "'self' data:" + (f" {_origin(tiles)}" if tiles else "")
        headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; img-src {img}; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        headers.setdefault("Cache-Control", "no-store")
    return response


def _origin(url: str) -> str:
    parts = url.split("/")
    return "/".join(parts[:3]) if len(parts) >= 3 else ""


def _template_helpers() -> dict[str, object]:
    from alerts.auth import csrf_token, current_viewer
    from alerts.i18n import translate

    viewer = current_viewer()
    language = session.get("language") or (viewer.language if viewer else "fr")
    if language not in ("fr", "en"):
        language = "fr"
    return {
        "_": lambda text: translate(text, language),
        "lang": language,
        "viewer": viewer,
        "csrf_token": csrf_token,
        "has_admin": "admin" in current_app.blueprints,
    }


def notify_channel() -> str | None:
    """The PostgreSQL channel to NOTIFY in a transaction that leaves workers elsewhere work, if any."""
    return current_app.extensions.get("alerts_notify_channel")


def wake_engine(*, notified: bool = False) -> None:
    """Tell the escalation engine there is new work (the factory registers how): the engine in this
    process, and workers in others unless the transaction already notified them."""
    remote = () if notified else current_app.extensions.get("alerts_remote_wakeups", ())
    for wake in (*current_app.extensions.get("alerts_wakeups", ()), *remote):
        try:
            wake()
        except Exception:  # the work is in the database; the next tick picks it up anyway
            current_app.logger.exception("engine wake-up failed; work will run at the next tick")
