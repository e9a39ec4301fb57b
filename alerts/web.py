"""Per-request resources: the database session of a request, closed in teardown."""

from __future__ import annotations

from flask import Flask, current_app, g
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


def wake_engine() -> None:
    """Tell the escalation engine there is new work (the factory registers how)."""
    for wake in current_app.extensions.get("alerts_wakeups", ()):
        try:
            wake()
        except Exception:  # the work is in the database; the next tick picks it up anyway
            current_app.logger.exception("engine wake-up failed; work will run at the next tick")
