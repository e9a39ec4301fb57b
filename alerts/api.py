"""The JSON API and the CAP feed for integrations: bearer tokens, the same roles and zones as the pages."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from flask.blueprints import BlueprintSetupState
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException, NotFound, Unauthorized

from alerts import cap, metrics, queries
from alerts.auth import Viewer, viewer_for
from alerts.models import CATEGORIES, SEVERITIES, Incident, Report, User, Zone
from alerts.phones import mask_phone
from alerts.states import IncidentStatus, UserRole
from alerts.web import request_session

bp = Blueprint("api", __name__, url_prefix="/api")
STAFF = (UserRole.ADMIN, UserRole.COORDINATOR)
# A public prefix (not a secret) that lets secret scanners and people recognise a leaked token.
TOKEN_PREFIX = "arl_"  # noqa: S105
MAX_TOKEN_LENGTH = 200
MAX_PER_PAGE = 500
MAX_PAGE = 1_000_000
MAX_NUMBER = 2**31 - 1  # the largest incident number the integer column holds
MAX_RESPONSE_DAYS = 366
MAX_QUERY_LENGTH = 80
STATUSES = tuple(s.value for s in IncidentStatus)


@bp.record_once
def _check_cap_settings(state: BlueprintSetupState) -> None:
    """Refuse a CAP scope or sender the feed cannot honour, at start-up rather than at the first request."""
    config = state.app.config
    config["CAP_SCOPE"] = config["CAP_SCOPE"].strip().capitalize()
    cap.CapSettings(sender=config["CAP_SENDER"] or "check", scope=config["CAP_SCOPE"])


# --- tokens -------------------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(db: Session, user: User) -> str:
    """A new API token for the user, replacing the old one; only its hash is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    user.api_token_hash = token_hash(token)
    db.commit()
    return token


def viewer_for_token(db: Session, authorization: str) -> Viewer | None:
    """The viewer whose token the Authorization header carries, or None."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = token_hash(token)
    user = db.scalar(select(User).where(User.api_token_hash == digest))
    if user is None or not hmac.compare_digest(user.api_token_hash or "", digest):
        return None
    return viewer_for(db, user)


class TokenRequired(Unauthorized):
    def __init__(self, description: str, invalid: bool) -> None:
        super().__init__(description)
        self.invalid = invalid


@bp.before_request
def _authenticate() -> None:
    if request.endpoint == "api.openapi":
        return
    header = request.headers.get("Authorization", "")
    if not header:
        raise TokenRequired("an API token is required: Authorization: Bearer <token>", invalid=False)
    viewer = viewer_for_token(request_session(), header)
    if viewer is None:
        raise TokenRequired("invalid API token", invalid=True)
    g.api_viewer = viewer


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(HTTPException)
def _json_error(error: HTTPException) -> Response:
    response = jsonify(error=error.description or error.name)
    response.status_code = error.code or 500
    if isinstance(error, Unauthorized):
        challenge = 'Bearer realm="api"'
        if getattr(error, "invalid", False):
            challenge += ', error="invalid_token"'
        response.headers["WWW-Authenticate"] = challenge
    return response


def _viewer() -> Viewer:
    viewer: Viewer = g.api_viewer
    return viewer


def _require_staff() -> Viewer:
    viewer = _viewer()
    if viewer.role not in STAFF:
        raise Forbidden("this needs a coordinator's or an admin's token")
    return viewer


# --- arguments ----------------------------------------------------------------------------------------


def _int(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name, "")
    if raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(high))) or not low <= int(raw) <= high:
        raise BadRequest(f"{name}: a whole number from {low} to {high}")
    return int(raw)


def _text(args: Mapping[str, str], name: str, choices: Sequence[str] = (), max_length: int = 40) -> str:
    value = args.get(name, "")
    if len(value) > max_length or any(ord(c) < 32 for c in value):
        raise BadRequest(f"{name}: at most {max_length} printable characters")
    if value and choices and value not in choices:
        raise BadRequest(f"{name}: one of {', '.join(choices)}")
    return value


def _day(args: Mapping[str, str], name: str) -> date | None:
    raw = args.get(name, "")
    if raw == "":
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name}: a date, YYYY-MM-DD") from None
    return None if day == date.max and name == "until" else day  # the end of time bounds nothing


def _log_filters(args: Mapping[str, str]) -> queries.LogFilters:
    zone = _int(args, "zone", 0, 1, MAX_NUMBER)
    q = _text(args, "q", max_length=MAX_QUERY_LENGTH).strip()
    term = q.lstrip("#")
    if term.isdigit() and not (term.isascii() and int(term) <= MAX_NUMBER):
        raise BadRequest(f"q: an incident number is at most {MAX_NUMBER}")
    filters = queries.LogFilters(
        status=_text(args, "status", STATUSES),
        zone_id=zone or None,
        category=_text(args, "category", CATEGORIES),
        severity=_text(args, "severity", SEVERITIES),
        since=_day(args, "since"),
        until=_day(args, "until"),
        q=q,
    )
    if filters.since and filters.until and filters.since > filters.until:
        raise BadRequest("since: not after until")
    return filters


def _start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _phone(viewer: Viewer, phone: str) -> str:
    return phone if viewer.is_admin else mask_phone(phone)


# --- routes -------------------------------------------------------------------------------------------


@bp.get("/incidents")
def incidents() -> Response:
    filters = _log_filters(request.args)
    page = _int(request.args, "page", 1, 1, MAX_PAGE)
    per_page = _int(request.args, "per_page", queries.PAGE_SIZE, 1, MAX_PER_PAGE)
    log = queries.alert_log(request_session(), _viewer(), filters, page, per_page=per_page)
    return jsonify(
        incidents=[row.as_dict() for row in log.rows],
        page=log.page,
        pages=log.pages,
        total=log.total,
        per_page=per_page,
    )


def _visible(number: int) -> Incident:
    found = None
    if number <= MAX_NUMBER:
        found = queries.visible_incident(request_session(), _viewer(), number)
    if found is None:
        raise NotFound(f"no incident {number}")
    return found


@bp.get("/incidents/<int:number>")
def incident(number: int) -> Response:
    db, viewer = request_session(), _viewer()
    found = _visible(number)
    reports = queries.incident_reports(db, found)
    merged_into = db.get(Incident, found.merged_into_id) if found.merged_into_id else None
    minutes = None
    if found.acknowledged_at is not None:
        minutes = round((found.acknowledged_at - found.first_report_at).total_seconds() / 60, 1)
    row = queries.LogRow(
        found.number,
        found.first_report_at,
        found.category,
        found.severity,
        found.place_name,
        found.zone.name if found.zone else "",
        sum(1 for report, _, _ in reports if not report.is_repeat),
        found.status,
        found.acknowledged_by.name if found.acknowledged_by else "",
        minutes,
        found.lat,
        found.lon,
    )
    return jsonify(
        incident={
            **row.as_dict(),
            "count": found.count,
            "confidence": found.confidence,
            "last_report_at": _iso(found.last_report_at),
            "acknowledged_at": _iso(found.acknowledged_at),
            "resolved_at": _iso(found.resolved_at),
            "merged_into": merged_into.number if merged_into else None,
        },
        reports=[
            {
                "id": report.id,
                "received_at": _iso(report.received_at),
                "category": report.category,
                "severity": report.severity,
                "count": report.count,
                "place": report.place_text,
                "located_by": report.located_by,
                "location_note": report.location_note,
                "lat": report.lat,
                "lon": report.lon,
                "confidence": report.confidence,
                "is_repeat": report.is_repeat,
                "text": message.text,
                "sender": {
                    "name": focal_point.name if focal_point else None,
                    "phone": _phone(viewer, message.sender),
                },
            }
            for report, message, focal_point in reports
        ],
        events=[
            {"at": _iso(e.at), "kind": e.kind, "actor": e.actor, "detail": e.detail}
            for e in queries.incident_events(db, found)
        ],
        messages=[
            {
                "created_at": _iso(m.created_at),
                "to": _phone(viewer, m.recipient),
                "purpose": m.purpose,
                "body": m.body,
                "state": m.state,
                "provider_status": m.provider_status,
                "last_error": m.last_error,
                "sent_at": _iso(m.sent_at),
                "delivered_at": _iso(m.delivered_at),
            }
            for m in queries.incident_messages(db, found)
        ],
    )


@bp.get("/zones")
def zones() -> Response:
    viewer = _viewer()
    found = request_session().scalars(select(Zone).order_by(Zone.name))
    return jsonify(
        zones=[
            {
                "id": z.id,
                "name": z.name,
                "base_name": z.base_name,
                "lat": z.lat,
                "lon": z.lon,
                "radius_km": z.radius_km,
                "polygon": z.polygon,
            }
            for z in found
            if viewer.may_see_zone(z.id)
        ]
    )


@bp.get("/response-times")
def response_times() -> Response:
    _require_staff()
    now = datetime.now(UTC)
    until = _day(request.args, "until") or now.date()
    since = _day(request.args, "since") or max(until, date.min + timedelta(days=6)) - timedelta(days=6)
    if since > until:
        raise BadRequest("since: not after until")
    if (until - since).days >= MAX_RESPONSE_DAYS:
        raise BadRequest(f"since..until: at most {MAX_RESPONSE_DAYS} days")
    start, end = _start(since), _start(until) + timedelta(days=1)
    db = request_session()
    return jsonify(
        since=since.isoformat(),
        until=until.isoformat(),
        zones=metrics.response_times(db, start, end),
        breaches=metrics.breaches(db, start, end, now),
    )


@bp.get("/network-health")
def network_health() -> Response:
    viewer = _require_staff()
    days = _int(request.args, "days", current_app.config["SILENT_DAYS"], 1, 365)
    health = queries.network_health(request_session(), datetime.now(UTC), days)
    return jsonify(
        days=days,
        silent_focal_points=[
            {
                "id": f.id,
                "name": f.name,
                "phone": _phone(viewer, f.phone),
                "zone": f.zone.name if f.zone else None,
                "last_seen_at": _iso(f.last_seen_at),
            }
            for f in health.silent
        ],
        failed_messages=[
            {
                "id": m.id,
                "created_at": _iso(m.created_at),
                "to": _phone(viewer, m.recipient),
                "purpose": m.purpose,
                "state": m.state,
                "last_error": m.last_error,
            }
            for m in health.failed
        ],
        unverified_messages=[
            {
                "id": m.id,
                "received_at": _iso(m.received_at),
                "sender": _phone(viewer, m.sender),
                "text": m.text,
            }
            for m in health.unverified
        ],
        unprocessed_messages=[
            {
                "id": m.id,
                "received_at": _iso(m.received_at),
                "provider": m.provider,
                "state": m.state,
                "attempts": m.attempts,
                "error": m.error,
            }
            for m in health.unprocessed
        ],
    )


# --- CAP ----------------------------------------------------------------------------------------------


def _cap_settings() -> cap.CapSettings:
    config = current_app.config
    return cap.CapSettings(
        sender=cap.sender_from(config["CAP_SENDER"], config.get("PUBLIC_URL", ""), request.host),
        scope=config["CAP_SCOPE"],
        restriction=config["CAP_RESTRICTION"],
        sender_name=config["CAP_SENDER_NAME"],
    )


def cap_incidents(db: Session, found: Sequence[Incident], public_url: str) -> list[cap.CapIncident]:
    """What CAP may say about these incidents (report counts in one query, no reporter's data at all)."""
    ids = [i.id for i in found]
    counts: dict[int, int] = {
        incident_id: n
        for incident_id, n in db.execute(
            select(Report.incident_id, func.count())
            .where(Report.incident_id.in_(ids), Report.is_repeat.is_(False))
            .group_by(Report.incident_id)
        )
    }
    out = []
    for i in found:
        merged_into = db.get(Incident, i.merged_into_id) if i.merged_into_id else None
        # A point gets the zone's deduplication distance as its radius: reports that far apart are one event.
        if i.lat is not None and i.lon is not None:
            lat, lon = i.lat, i.lon
            radius = i.zone.dedup_distance_km if i.zone else cap.DEFAULT_RADIUS_KM
        elif i.zone is not None:
            lat, lon, radius = i.zone.lat, i.zone.lon, i.zone.radius_km
        else:
            lat = lon = None
            radius = cap.DEFAULT_RADIUS_KM
        out.append(
            cap.CapIncident(
                number=i.number,
                category=i.category,
                severity=i.severity,
                status=i.status,
                place=i.place_name,
                zone=i.zone.name if i.zone else "",
                reports=counts.get(i.id, 0),
                count=i.count,
                confidence=i.confidence,
                lat=lat,
                lon=lon,
                radius_km=radius,
                polygon=i.zone.polygon if i.zone and i.lat is None else None,
                first_report_at=i.first_report_at,
                last_report_at=i.last_report_at,
                acknowledged_at=i.acknowledged_at,
                resolved_at=i.resolved_at,
                merged_into=merged_into.number if merged_into else None,
                web=f"{public_url.rstrip('/')}/incidents/{i.number}" if public_url else "",
            )
        )
    return out


@bp.get("/incidents/<int:number>/cap.xml")
def incident_cap(number: int) -> Response:
    found = _visible(number)
    [one] = cap_incidents(request_session(), [found], current_app.config.get("PUBLIC_URL", ""))
    return Response(cap.alert_xml(one, _cap_settings()), mimetype=cap.CAP_MIMETYPE)


@bp.get("/cap.xml")
def cap_feed() -> Response:
    """An Atom feed of the log (same filters and paging as /api/incidents), each entry a full CAP alert."""
    db = request_session()
    filters = _log_filters(request.args)
    page = _int(request.args, "page", 1, 1, MAX_PAGE)
    per_page = _int(request.args, "per_page", queries.PAGE_SIZE, 1, MAX_PER_PAGE)
    numbers = [row.number for row in queries.alert_log(db, _viewer(), filters, page, per_page).rows]
    by_number = {i.number: i for i in db.scalars(select(Incident).where(Incident.number.in_(numbers)))}
    found = [by_number[n] for n in numbers if n in by_number]
    body = cap.feed_xml(
        cap_incidents(db, found, current_app.config.get("PUBLIC_URL", "")),
        _cap_settings(),
        self_url=request.url,
        alert_url=lambda n: url_for("api.incident_cap", number=n, _external=True),
        now=datetime.now(UTC),
    )
    return Response(body, mimetype=cap.ATOM_MIMETYPE)


@bp.get("/<path:unknown>")
def not_found(unknown: str) -> Response:
    raise NotFound("no such API route; see /api/openapi.json")


@bp.record_once
def _json_404_for_any_api_path(state: BlueprintSetupState) -> None:
    """Paths no rule can match (a newline escapes even <path:>) still get the API's JSON answer."""

    def handle(error: NotFound) -> Response | NotFound:
        if not request.path.startswith(bp.url_prefix or "/api"):
            return error
        if request.url_rule is None:
            return _json_error(NotFound("no such API route; see /api/openapi.json"))
        return _json_error(error)

    state.app.register_error_handler(NotFound, handle)


# --- OpenAPI ------------------------------------------------------------------------------------------


@bp.get("/openapi.json")
def openapi() -> Response:
    """The API's description (public: it holds no data), for integrators and for schemathesis."""
    return jsonify(openapi_document())


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _nullable(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": kind, "nullable": True, **more}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties}


_PRINTABLE = "^[^\\x00-\\x1f]*$"
_ERRORS = {
    "400": _json(_ref("Error"), "A parameter is invalid."),
    "401": {
        **_json(_ref("Error"), "The token is missing or invalid."),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
}
_LOG_PARAMETERS = [
    _query(
        "status", {"type": "string", "enum": list(STATUSES)}, "Only this status (default: all but merged)."
    ),
    _query("zone", {"type": "integer", "minimum": 1, "maximum": MAX_NUMBER}, "Only this zone id."),
    _query("category", {"type": "string", "enum": list(CATEGORIES)}, "Only this category."),
    _query("severity", {"type": "string", "enum": list(SEVERITIES)}, "Only this severity."),
    _query("since", {"type": "string", "format": "date"}, "First report on or after this day (UTC)."),
    _query("until", {"type": "string", "format": "date"}, "First report on or before this day (UTC)."),
    _query(
        "q",
        {"type": "string", "maxLength": MAX_QUERY_LENGTH, "pattern": _PRINTABLE},
        "A place name, or an incident number.",
    ),
    _query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, "Page number."),
    _query("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE}, "Incidents per page."),
]
_NUMBER = {
    "name": "number",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
    "description": "The incident number (what responders type in OK 123).",
}
_STAGE = _object({"n": {"type": "integer"}, "median": _nullable("number"), "p90": _nullable("number")})
_SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": {"type": "string"}}),
    "LogRow": _object(
        {
            "number": {"type": "integer"},
            "time": {"type": "string", "format": "date-time"},
            "category": {"type": "string"},
            "severity": {"type": "string"},
            "place": {"type": "string"},
            "zone": {"type": "string"},
            "reports": {"type": "integer"},
            "status": {"type": "string"},
            "acknowledged_by": _nullable("string"),
            "minutes_to_acknowledge": _nullable("number"),
            "lat": _nullable("number"),
            "lon": _nullable("number"),
        }
    ),
    "IncidentPage": _object(
        {
            "incidents": {"type": "array", "items": _ref("LogRow")},
            "page": {"type": "integer"},
            "pages": {"type": "integer"},
            "total": {"type": "integer"},
            "per_page": {"type": "integer"},
        }
    ),
    "Incident": {
        "allOf": [
            _ref("LogRow"),
            _object(
                {
                    "count": _nullable("integer"),
                    "confidence": {"type": "number"},
                    "last_report_at": {"type": "string", "format": "date-time"},
                    "acknowledged_at": _nullable("string", format="date-time"),
                    "resolved_at": _nullable("string", format="date-time"),
                    "merged_into": _nullable("integer"),
                }
            ),
        ]
    },
    "Report": _object(
        {
            "id": {"type": "integer"},
            "received_at": {"type": "string", "format": "date-time"},
            "category": {"type": "string"},
            "severity": {"type": "string"},
            "count": _nullable("integer"),
            "place": {"type": "string"},
            "located_by": {"type": "string"},
            "location_note": {"type": "string"},
            "lat": _nullable("number"),
            "lon": _nullable("number"),
            "confidence": {"type": "number"},
            "is_repeat": {"type": "boolean"},
            "text": {"type": "string"},
            "sender": _object(
                {
                    "name": _nullable("string", description="The focal point's name."),
                    "phone": {"type": "string", "description": "Masked, except for admin tokens."},
                }
            ),
        }
    ),
    "Event": _object(
        {
            "at": {"type": "string", "format": "date-time"},
            "kind": {"type": "string"},
            "actor": {"type": "string"},
            "detail": {"type": "string"},
        }
    ),
    "Message": _object(
        {
            "created_at": {"type": "string", "format": "date-time"},
            "to": {"type": "string", "description": "Masked, except for admin tokens."},
            "purpose": {"type": "string"},
            "body": {"type": "string"},
            "state": {"type": "string"},
            "provider_status": _nullable("string"),
            "last_error": _nullable("string"),
            "sent_at": _nullable("string", format="date-time"),
            "delivered_at": _nullable("string", format="date-time"),
        }
    ),
    "IncidentDetail": _object(
        {
            "incident": _ref("Incident"),
            "reports": {"type": "array", "items": _ref("Report")},
            "events": {"type": "array", "items": _ref("Event")},
            "messages": {"type": "array", "items": _ref("Message")},
        }
    ),
    "Zone": _object(
        {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "base_name": {"type": "string"},
            "lat": {"type": "number"},
            "lon": {"type": "number"},
            "radius_km": {"type": "number"},
            "polygon": _nullable("array", items={"type": "array", "items": {"type": "number"}}),
        }
    ),
    "ResponseTimes": _object(
        {
            "since": {"type": "string", "format": "date"},
            "until": {"type": "string", "format": "date"},
            "zones": {
                "type": "array",
                "items": _object(
                    {
                        "zone": {"type": "string"},
                        "incidents": {"type": "integer"},
                        **{stage: _STAGE for stage in metrics.STAGES},
                    }
                ),
            },
            "breaches": {
                "type": "array",
                "items": _object(
                    {
                        "number": {"type": "integer"},
                        "waited": {"type": "number"},
                        "deadline": {"type": "number"},
                        "acknowledged": {"type": "boolean"},
                    }
                ),
            },
        }
    ),
    "NetworkHealth": _object(
        {
            "days": {"type": "integer"},
            "silent_focal_points": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "integer"},
                        "name": {"type": "string"},
                        "phone": {"type": "string"},
                        "zone": _nullable("string"),
                        "last_seen_at": _nullable("string", format="date-time"),
                    }
                ),
            },
            "failed_messages": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "integer"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "to": {"type": "string"},
                        "purpose": {"type": "string"},
                        "state": {"type": "string"},
                        "last_error": _nullable("string"),
                    }
                ),
            },
            "unverified_messages": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "integer"},
                        "received_at": {"type": "string", "format": "date-time"},
                        "sender": {"type": "string"},
                        "text": {"type": "string"},
                    }
                ),
            },
            "unprocessed_messages": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "integer"},
                        "received_at": {"type": "string", "format": "date-time"},
                        "provider": {"type": "string"},
                        "state": {"type": "string"},
                        "attempts": {"type": "integer"},
                        "error": _nullable("string"),
                    }
                ),
            },
        }
    ),
}


def _get(
    summary: str,
    ok: dict[str, Any],
    parameters: Sequence[dict[str, Any]] = (),
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """One GET operation: its 200, the errors every route has, and the ones it adds (403, 404)."""
    responses = {"200": ok, **_ERRORS}
    if "403" in extra:
        responses["403"] = _json(_ref("Error"), "Coordinators and admins only.")
    if "404" in extra:
        responses["404"] = _json(_ref("Error"), "No such incident, or not in the token's zones.")
    return {"get": {"summary": summary, "parameters": list(parameters), "responses": responses}}


def _xml(description: str, mimetype: str) -> dict[str, Any]:
    return {"description": description, "content": {mimetype: {"schema": {"type": "string"}}}}


def openapi_document() -> dict[str, Any]:
    """A hand-written OpenAPI 3.0 description of every route under /api."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Alert relay API",
            "version": "1",
            "description": (
                "The alert log, incidents, zones, response times and network health as JSON, and incidents "
                "as CAP 1.2. Send a token from `flask users token USERNAME` as `Authorization: Bearer "
                "<token>`; its user's role and zones apply as on the pages."
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/incidents": _get(
                "The alert log, newest first, with the page's filters.",
                _json(_ref("IncidentPage"), "One page of incidents."),
                _LOG_PARAMETERS,
            ),
            "/api/incidents/{number}": _get(
                "One incident with its reports, timeline and messages.",
                _json(_ref("IncidentDetail"), "The incident."),
                [_NUMBER],
                ["404"],
            ),
            "/api/incidents/{number}/cap.xml": _get(
                "One incident as a CAP 1.2 alert.",
                _xml("A CAP 1.2 <alert>.", cap.CAP_MIMETYPE),
                [_NUMBER],
                ["404"],
            ),
            "/api/cap.xml": _get(
                "An Atom feed of the log, each entry holding the incident's CAP 1.2 alert.",
                _xml("An Atom feed.", cap.ATOM_MIMETYPE),
                _LOG_PARAMETERS,
            ),
            "/api/zones": _get(
                "The zones the token may see.",
                _json(_object({"zones": {"type": "array", "items": _ref("Zone")}}), "Zones."),
            ),
            "/api/response-times": _get(
                "Median and 90th percentile response times per zone, and policy breaches.",
                _json(_ref("ResponseTimes"), "Response times."),
                [
                    _query("since", {"type": "string", "format": "date"}, "First day (default: until - 6)."),
                    _query("until", {"type": "string", "format": "date"}, "Last day (default: today, UTC)."),
                ],
                ["403"],
            ),
            "/api/network-health": _get(
                "Silent focal points, failed messages, unverified senders, unprocessed messages.",
                _json(_ref("NetworkHealth"), "Network health."),
                [_query("days", {"type": "integer", "minimum": 1, "maximum": 365}, "Silent for this long.")],
                ["403"],
            ),
            "/api/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
                }
            },
        },
    }
