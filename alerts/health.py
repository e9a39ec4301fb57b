"""GET /healthz: 200 when the database (and on SQLite the inbound spool) answers, 503 otherwise."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from alerts.web import request_session

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    try:
        request_session().execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.error("health check: database unreachable (%s)", type(exc).__name__)
        return jsonify(status="unavailable", database="unreachable"), 503
    spool = current_app.extensions.get("alerts_spool")
    if spool is None:
        return jsonify(status="ok", database="ok"), 200
    # SQLite: messages the webhooks stored that the engine has not moved into the database yet (a number
    # that keeps growing means no engine is running).
    try:
        spooled = spool.waiting()
    except SQLAlchemyError as exc:
        log.error("health check: the inbound spool is unreadable (%s)", type(exc).__name__)
        return jsonify(status="unavailable", database="ok", spool="unreadable"), 503
    return jsonify(status="ok", database="ok", spooled=spooled), 200
