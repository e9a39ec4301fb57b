"""The pages: the alert log, an incident and its actions, the map, response times, network health."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select

from alerts import incidents, metrics, queries
from alerts.auth import Viewer, check_csrf, current_viewer, login_required
from alerts.imports import spreadsheet_safe
from alerts.models import Report, Responder, User, Zone
from alerts.phones import mask_phone
from alerts.pipeline import PipelineSettings, callback_category
from alerts.states import IncidentStatus, UserRole
from alerts.web import request_session, wake_engine

bp = Blueprint("log", __name__)
bp.before_request(check_csrf)
STAFF = (UserRole.ADMIN, UserRole.COORDINATOR)
CSV_COLUMNS = (
    "number",
    "time",
    "category",
    "severity",
    "place",
    "zone",
    "reports",
    "status",
    "acknowledged_by",
    "minutes_to_acknowledge",
    "lat",
    "lon",
)


def _viewer() -> Viewer:
    viewer = current_viewer()
    assert viewer is not None  # login_required ran first
    return viewer


def _zones() -> list[Zone]:
    viewer = _viewer()
    return [
        z for z in request_session().scalars(select(Zone).order_by(Zone.name)) if viewer.may_see_zone(z.id)
    ]


@bp.get("/")
@login_required()
def index() -> str:
    filters = queries.LogFilters.from_args(request.args)
    page = queries.alert_log(request_session(), _viewer(), filters, request.args.get("page", 1, type=int))
    return render_template("log.html", log=page, zones=_zones(), statuses=[s for s in IncidentStatus])


@bp.get("/log/updates")
@login_required()
def updates() -> Response:
    """What changed since the page's cursor: a few hundred bytes when nothing did."""
    filters = queries.LogFilters.from_args(request.args)
    cursor, rows = queries.changes_since(
        request_session(), _viewer(), filters, request.args.get("cursor", 0, type=int)
    )
    response = jsonify(cursor=cursor, rows=[row.as_dict() for row in rows])
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/log.csv")
@login_required()
def export_csv() -> Response:
    filters = queries.LogFilters.from_args(request.args)
    page = queries.alert_log(request_session(), _viewer(), filters, 1, per_page=100_000)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in page.rows:
        writer.writerow({column: spreadsheet_safe(value) for column, value in row.as_dict().items()})
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=alert-log.csv"},
    )


def _incident_or_404(number: int) -> Any:
    incident = queries.visible_incident(request_session(), _viewer(), number)
    if incident is None:
        abort(404)
    return incident


@bp.get("/incidents/<int:number>")
@login_required()
def incident(number: int) -> str:
    db = request_session()
    found = _incident_or_404(number)
    viewer = _viewer()
    reports = [
        {
            "report": report,
            "text": message.text,
            "sender": focal_point.name if focal_point else "?",
            "phone": message.sender if viewer.is_admin else mask_phone(message.sender),
        }
        for report, message, focal_point in queries.incident_reports(db, found)
    ]
    messages = [
        {"message": m, "to": m.recipient if viewer.is_admin else mask_phone(m.recipient)}
        for m in queries.incident_messages(db, found)
    ]
    return render_template(
        "incident.html",
        incident=found,
        reports=reports,
        events=queries.incident_events(db, found),
        messages=messages,
    )


def _actor(viewer: Viewer) -> str:
    return f"{viewer.role} {viewer.username} (web)"


@bp.post("/incidents/<int:number>/<action>")
@login_required()
def act(number: int, action: str) -> Any:
    db = request_session()
    viewer = _viewer()
    found = queries.visible_incident(db, viewer, number)
    if found is None:
        abort(404)
    db.refresh(found, with_for_update=incidents.INCIDENT_LOCK)
    now = datetime.now(UTC)
    actor = _actor(viewer)
    user = db.get(User, viewer.id)
    responder = db.get(Responder, user.responder_id) if user and user.responder_id else None
    try:
        if action == "acknowledge":
            incidents.acknowledge(db, found, now, actor, responder)
        elif action in ("resolve", "false_alarm"):
            status = IncidentStatus.RESOLVED if action == "resolve" else IncidentStatus.FALSE_ALARM
            incidents.close(db, found, status, now, actor)
        elif action == "callback":
            learned = request.form.get("learned", "").strip()[:500]
            category, severity = callback_category(learned, PipelineSettings.from_config(current_app.config))
            incidents.record_callback(db, found, learned, category, severity, now, actor)
        elif action == "note":
            text = request.form.get("note", "").strip()[:2000]
            if not text:
                abort(400, description="an empty note")
            incidents.record(db, found, "note", text, now, actor)
        elif action == "merge" and viewer.role in STAFF:
            target = queries.visible_incident(db, viewer, request.form.get("into", 0, type=int))
            if target is None:
                abort(400, description="no such incident to merge into")
            incidents.merge(db, target, found, now, actor)
            db.commit()
            return redirect(url_for("log.incident", number=target.number))
        elif action == "split" and viewer.role in STAFF:
            report = db.get(Report, request.form.get("report", 0, type=int))
            if report is None or report.incident_id != found.id:
                abort(400, description="no such report in this incident")
            new = incidents.split(db, report, now, actor)
            db.commit()
            return redirect(url_for("log.incident", number=new.number))
        else:
            abort(403 if action in ("merge", "split") else 404)
    except incidents.CannotMerge as exc:
        db.rollback()
        abort(400, description=str(exc))
    db.commit()
    wake_engine()  # messages the action owes (confirmations, word to the reporters) go out now
    return redirect(url_for("log.incident", number=number))


@bp.get("/map")
@login_required()
def map_page() -> str:
    return render_template("map.html", tiles=current_app.config.get("MAP_TILES_URL", ""))


@bp.get("/map/data.json")
@login_required()
def map_data() -> Response:
    viewer = _viewer()
    filters = queries.LogFilters(status="")
    rows = [
        r
        for r in queries.alert_log(request_session(), viewer, filters, 1, per_page=500).rows
        if r.status in (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED) and r.lat is not None
    ]
    zones = [
        {"name": z.name, "lat": z.lat, "lon": z.lon, "radius_km": z.radius_km, "polygon": z.polygon}
        for z in _zones()
    ]
    return jsonify(incidents=[r.as_dict() for r in rows], zones=zones)


@bp.get("/response-times")
@login_required(*STAFF)
def response_times() -> str:
    return render_template(
        "response_times.html", weeks=metrics.week_against_week(request_session(), datetime.now(UTC))
    )


@bp.get("/network")
@login_required(*STAFF)
def network() -> str:
    days = request.args.get("days", current_app.config["SILENT_DAYS"], type=int)
    health = queries.network_health(request_session(), datetime.now(UTC), days)
    return render_template(
        "network.html",
        health=health,
        days=days,
        mask=mask_phone,
        since=datetime.now(UTC) - timedelta(days=days),
    )
