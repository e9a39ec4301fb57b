"""Admin pages: focal points, responders, zones, places, escalation policies and users; CSV in and out."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from alerts import imports
from alerts.auth import Viewer, check_csrf, create_user, current_viewer, login_required
from alerts.db import get_locked
from alerts.models import SEVERITIES, EscalationPolicy, FocalPoint, Place, Responder, User, Zone
from alerts.policies import PolicyError, parse_policy, steps_as_data
from alerts.states import FocalPointStatus, UserRole
from alerts.web import request_session

bp = Blueprint("admin", __name__, url_prefix="/admin")
ADMIN = UserRole.ADMIN
PER_PAGE = 100
UPLOAD_BYTES = 8 * 1024 * 1024  # a province's village list; the app-wide limit is sized for webhooks
SHOWN_ERRORS = 200
# The status an admin's button sets, by the button's name (SMS self-registration leaves them pending).
STATUS_ACTIONS = {
    "approve": FocalPointStatus.ACTIVE,
    "reject": FocalPointStatus.REJECTED,
    "suspend": FocalPointStatus.SUSPENDED,
}
SEVERITY_ORDER = sorted(SEVERITIES, key=("critical", "high", "medium", "low").index)


def _admins_may_upload_files() -> None:
    """Raise the body limit for admins only, before check_csrf reads the form."""
    viewer = current_viewer()
    if viewer is not None and viewer.is_admin:
        request.max_content_length = UPLOAD_BYTES


bp.before_request(_admins_may_upload_files)
bp.before_request(check_csrf)


class AdminError(ValueError):
    """A change the admin asked for that cannot be made as given; nothing was saved."""


def _viewer() -> Viewer:
    viewer = current_viewer()
    assert viewer is not None  # login_required ran first
    return viewer


def _log(text: str) -> None:
    current_app.logger.info("admin %s %s", _viewer().username, text)


# ---- Escalation policy steps: validated by alerts.policies, the same check the engine runs ----


class InvalidPolicy(AdminError):
    pass


def check_policy_steps(text: str) -> list[dict[str, int]]:
    """Parse steps written as JSON; return them complete, or raise InvalidPolicy naming the bad step."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPolicy(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    try:
        return steps_as_data(parse_policy(data))
    except PolicyError as exc:
        raise InvalidPolicy(str(exc)) from None


# ---- CSV in and out, one entry per kind of reference data ----


@dataclass(frozen=True)
class CsvKind:
    """A kind of reference data: its import format (which the export writes too) and its page."""

    label: str
    columns: tuple[str, ...]
    export: Callable[[Session], Iterable[tuple[Any, ...]]]
    load: Callable[[Session, TextIO, str], imports.ImportResult]
    page: str  # the endpoint of the section's page
    render: Callable[..., str]  # the section's page, given import errors to show


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))  # the shortest text that reads back the same


def _export_focal_points(db: Session) -> Iterable[tuple[Any, ...]]:
    # Without a home or a zone a row could not be imported back: those are left out (the page says so).
    statement = (
        select(FocalPoint, Zone.name)
        .join(Zone, FocalPoint.zone_id == Zone.id)
        .where(FocalPoint.home_lat.is_not(None), FocalPoint.home_lon.is_not(None))
        .order_by(FocalPoint.name, FocalPoint.id)
    )
    for f, zone_name in db.execute(statement):
        yield f.name, f.phone, _number(f.home_lat), _number(f.home_lon), zone_name, f.language


def _export_responders(db: Session) -> Iterable[tuple[Any, ...]]:
    # A responder of tier 1 or 2 without zones could not be imported back: left out (the page counts them).
    statement = (
        select(Responder)
        .where(Responder.zones.any() | (Responder.tier == 3))
        .options(selectinload(Responder.zones))
        .order_by(Responder.name, Responder.id)
    )
    for r in db.scalars(statement):
        yield r.name, r.phone, r.tier, "|".join(sorted(z.name for z in r.zones)), r.language


def _export_zones(db: Session) -> Iterable[tuple[Any, ...]]:
    for z in db.scalars(select(Zone).order_by(Zone.name)):
        yield z.name, _number(z.lat), _number(z.lon), _number(z.radius_km)


def _export_places(db: Session) -> Iterable[tuple[Any, ...]]:
    for p in db.scalars(select(Place).order_by(Place.name, Place.id)):
        yield p.name, _number(p.lat), _number(p.lon), p.admin1, p.admin2, p.alt_names


def import_csv(db: Session, kind: CsvKind, data: bytes, region: str) -> imports.ImportResult:
    """Import an uploaded file whole, or raise ImportFailed with every problem; nothing is half-imported."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise imports.ImportFailed(["the file is not UTF-8 text: save it as \u201cCSV UTF-8\u201d"]) from None
    try:
        return kind.load(db, io.StringIO(text), region)
    except imports.ImportFailed:
        db.rollback()
        raise
    except IntegrityError:
        db.rollback()
        raise imports.ImportFailed(
            ["the database refused the file (a duplicate?); nothing was imported"]
        ) from None


def _kind_or_404(name: str) -> CsvKind:
    kind = CSV_KINDS.get(name)
    if kind is None:
        abort(404)
    return kind


@bp.get("/<kind>.csv")
@login_required(ADMIN)
def export_csv(kind: str) -> Response:
    found = _kind_or_404(kind)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(found.columns)
    rows = 0
    for row in found.export(request_session()):
        writer.writerow([imports.spreadsheet_safe(cell) for cell in row])
        rows += 1
    _log(f"exported {rows} {found.label}")
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={kind}.csv", "Cache-Control": "no-store"},
    )


@bp.post("/<kind>/import")
@login_required(ADMIN)
def import_file(kind: str) -> Any:
    found = _kind_or_404(kind)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash(["Choose a CSV file first.", ""], "error")
        return redirect(url_for(found.page))
    db = request_session()
    try:
        result = import_csv(db, found, upload.read(), current_app.config["DEFAULT_REGION"])
    except imports.ImportFailed as exc:
        _log(f"imported no {found.label}: the file had {len(exc.errors)} problem(s)")
        shown = exc.errors[:SHOWN_ERRORS]
        return found.render(import_errors=shown, more_errors=len(exc.errors) - len(shown)), 400
    _log(f"imported {found.label}: {result}")
    flash(["Imported", str(result)], "ok")
    return redirect(url_for(found.page))


# ---- Pages ----


def _paged(db: Session, statement: Select[Any], page: int) -> tuple[list[Any], int, int]:
    total = db.scalar(select(func.count()).select_from(statement.order_by(None).subquery())) or 0
    pages = max(1, math.ceil(total / PER_PAGE))
    page = min(max(page, 1), pages)
    rows = list(db.scalars(statement.limit(PER_PAGE).offset((page - 1) * PER_PAGE)))
    return rows, page, pages


def _count(db: Session, model: type, *where: Any) -> int:
    return db.scalar(select(func.count()).select_from(model).where(*where)) or 0


@bp.get("/")
@login_required(ADMIN)
def index() -> str:
    db = request_session()
    counts = {
        "focal_points": _count(db, FocalPoint),
        "pending": _count(db, FocalPoint, FocalPoint.status == FocalPointStatus.PENDING),
        "responders": _count(db, Responder),
        "zones": _count(db, Zone),
        "places": _count(db, Place),
        "policies": _count(db, EscalationPolicy),
        "users": _count(db, User),
    }
    return render_template("admin/index.html", counts=counts)


@bp.get("/focal-points")
@login_required(ADMIN)
def focal_points() -> str:
    return _focal_points_page()


def _focal_points_page(**context: Any) -> str:
    db = request_session()
    status = request.args.get("status", "")
    statement = select(FocalPoint).options(selectinload(FocalPoint.zone)).order_by(FocalPoint.name)
    if status in tuple(FocalPointStatus):
        statement = statement.where(FocalPoint.status == status)
    rows, page, pages = _paged(db, statement, request.args.get("page", 1, type=int))
    by_status = dict(db.execute(select(FocalPoint.status, func.count()).group_by(FocalPoint.status)).all())
    return render_template(
        "admin/focal_points.html",
        rows=rows,
        page=page,
        pages=pages,
        status=status,
        by_status=by_status,
        statuses=list(FocalPointStatus),
        actions=STATUS_ACTIONS,
        not_exported=_count(
            db,
            FocalPoint,
            FocalPoint.home_lat.is_(None) | FocalPoint.home_lon.is_(None) | FocalPoint.zone_id.is_(None),
        ),
        **context,
    )


@bp.post("/focal-points/<int:focal_point_id>/status")
@login_required(ADMIN)
def focal_point_status(focal_point_id: int) -> Any:
    status = STATUS_ACTIONS.get(request.form.get("action", ""))
    if status is None:
        abort(400, description="action must be approve, reject or suspend")
    db = request_session()
    focal_point = get_locked(db, FocalPoint, focal_point_id)
    if focal_point is None:
        abort(404)
    if focal_point.status != status:
        focal_point.status = status
        db.commit()
        _log(f"changed focal point {focal_point_id} status to {status}")
    back = {"status": request.form.get("status", ""), "page": request.form.get("page", 1, type=int)}
    return redirect(url_for("admin.focal_points", **back))


@bp.get("/responders")
@login_required(ADMIN)
def responders() -> str:
    return _responders_page()


def _responders_page(**context: Any) -> str:
    db = request_session()
    statement = select(Responder).options(selectinload(Responder.zones)).order_by(Responder.name)
    rows, page, pages = _paged(db, statement, request.args.get("page", 1, type=int))
    return render_template(
        "admin/responders.html",
        rows=rows,
        page=page,
        pages=pages,
        not_exported=_count(db, Responder, ~Responder.zones.any(), Responder.tier < 3),
        **context,
    )


@bp.post("/responders/<int:responder_id>/active")
@login_required(ADMIN)
def responder_active(responder_id: int) -> Any:
    # The form says the state it wants, so a double submit does not flip it back.
    active = request.form.get("active") == "1"
    db = request_session()
    responder = get_locked(db, Responder, responder_id)
    if responder is None:
        abort(404)
    if responder.active != active:
        responder.active = active
        db.commit()
        _log(f"set responder {responder_id} {'active' if active else 'inactive'}")
    return redirect(url_for("admin.responders", page=request.form.get("page", 1, type=int)))


@bp.get("/zones")
@login_required(ADMIN)
def zones() -> str:
    return _zones_page()


def _zones_page(**context: Any) -> str:
    rows = list(request_session().scalars(select(Zone).order_by(Zone.name)))
    return render_template("admin/zones.html", rows=rows, **context)


def _positive(name: str, cast: Callable[[str], float], high: float) -> float:
    try:
        value = cast(request.form.get(name, ""))
    except ValueError:
        raise AdminError(f"{name} must be a number") from None
    if not math.isfinite(value) or not 0 < value <= high:
        raise AdminError(f"{name} must be above 0 and at most {high:g}")
    return value


@bp.post("/zones/<int:zone_id>")
@login_required(ADMIN)
def zone_dedup(zone_id: int) -> Any:
    db = request_session()
    zone = get_locked(db, Zone, zone_id)
    if zone is None:
        abort(404)
    try:
        distance = _positive("dedup_distance_km", float, 500)
        window = int(_positive("dedup_window_minutes", int, 10080))
    except AdminError as exc:
        db.rollback()
        return _zones_page(errors=[str(exc)]), 400
    if (zone.dedup_distance_km, zone.dedup_window_minutes) != (distance, window):
        zone.dedup_distance_km, zone.dedup_window_minutes = distance, window
        db.commit()
        _log(f"changed zone {zone_id} deduplication to {distance:g} km within {window} minutes")
    return redirect(url_for("admin.zones"))


@bp.get("/places")
@login_required(ADMIN)
def places() -> str:
    return _places_page()


def _places_page(**context: Any) -> str:
    return render_template("admin/places.html", count=_count(request_session(), Place), **context)


# ---- Escalation policies ----


@dataclass(frozen=True)
class PolicyRow:
    policy: EscalationPolicy
    zone_name: str | None  # None for a default policy

    @property
    def name(self) -> str:
        return f"{self.zone_name or 'default'}, {self.policy.severity}"


def _policy_rows(db: Session) -> list[PolicyRow]:
    rows = db.execute(
        select(EscalationPolicy, Zone.name).outerjoin(Zone, EscalationPolicy.zone_id == Zone.id)
    )
    return sorted(
        (PolicyRow(policy, zone_name) for policy, zone_name in rows),
        key=lambda r: (r.zone_name is not None, r.zone_name or "", SEVERITY_ORDER.index(r.policy.severity)),
    )


def _policies_page(**context: Any) -> str:
    db = request_session()
    return render_template(
        "admin/policies.html",
        rows=_policy_rows(db),
        zones=list(db.scalars(select(Zone).order_by(Zone.name))),
        severities=SEVERITY_ORDER,
        **context,
    )


@bp.get("/policies")
@login_required(ADMIN)
def policies() -> str:
    return _policies_page()


def _policy_or_404(db: Session, policy_id: int, lock: bool) -> PolicyRow:
    policy = get_locked(db, EscalationPolicy, policy_id, lock)
    if policy is None:
        abort(404)
    zone = db.get(Zone, policy.zone_id) if policy.zone_id is not None else None
    return PolicyRow(policy, zone.name if zone else None)


@bp.route("/policies/<int:policy_id>", methods=["GET", "POST"])
@login_required(ADMIN)
def policy(policy_id: int) -> Any:
    db = request_session()
    row = _policy_or_404(db, policy_id, lock=request.method == "POST")
    if request.method == "GET":
        return render_template("admin/policy.html", row=row, text=_steps_text(row.policy.steps))
    text = request.form.get("steps", "")
    try:
        steps = check_policy_steps(text)
    except InvalidPolicy as exc:
        db.rollback()
        return render_template("admin/policy.html", row=row, text=text, errors=[str(exc)]), 400
    row.policy.steps = steps
    db.commit()
    _log(f"changed escalation policy {policy_id} ({row.name}) to {len(steps)} step(s)")
    flash(["Saved", row.name], "ok")
    return redirect(url_for("admin.policies"))


def _steps_text(steps: list[Any]) -> str:
    """One step a line: short enough to edit on a phone, still plain JSON."""
    return "[\n" + ",\n".join(json.dumps(step) for step in steps) + "\n]"


@bp.post("/policies/new")
@login_required(ADMIN)
def policy_new() -> Any:
    db = request_session()
    zone = db.get(Zone, request.form.get("zone_id", 0, type=int))
    severity = request.form.get("severity", "")
    try:
        if zone is None or severity not in SEVERITIES:
            raise AdminError("choose a zone and a severity")
        taken = db.scalar(
            select(EscalationPolicy.id).where(
                EscalationPolicy.zone_id == zone.id, EscalationPolicy.severity == severity
            )
        )
        if taken is not None:
            raise AdminError(f"zone {zone.name} already has a {severity} policy: edit it instead")
        default = db.scalar(
            select(EscalationPolicy.steps).where(
                EscalationPolicy.zone_id.is_(None), EscalationPolicy.severity == severity
            )
        )
        # A new zone policy starts as a copy of the default one; the admin edits it next.
        steps = check_policy_steps(json.dumps(default or [{"tier": 1}]))
    except AdminError as exc:
        db.rollback()
        return _policies_page(errors=[str(exc)]), 400
    created = EscalationPolicy(zone_id=zone.id, severity=severity, steps=steps)
    db.add(created)
    db.commit()
    _log(f"added escalation policy {created.id} ({zone.name}, {severity})")
    return redirect(url_for("admin.policy", policy_id=created.id))


@bp.post("/policies/<int:policy_id>/delete")
@login_required(ADMIN)
def policy_delete(policy_id: int) -> Any:
    db = request_session()
    row = _policy_or_404(db, policy_id, lock=True)
    if row.zone_name is None:
        db.rollback()
        return _policies_page(errors=["a default policy cannot be deleted, only edited"]), 400
    db.delete(row.policy)
    db.commit()
    _log(f"deleted escalation policy {policy_id} ({row.name}); the zone uses the default again")
    return redirect(url_for("admin.policies"))


# ---- Users ----


def _users_page(**context: Any) -> str:
    db = request_session()
    users = list(db.scalars(select(User).order_by(User.username)))
    responder_ids = {u.responder_id for u in users if u.responder_id}
    linked = {r.id: r for r in db.scalars(select(Responder).where(Responder.id.in_(responder_ids)))}
    return render_template(
        "admin/users.html",
        users=users,
        linked=linked,
        responders=list(db.scalars(select(Responder).order_by(Responder.name))),
        roles=list(UserRole),
        now=datetime.now(UTC),
        **context,
    )


@bp.get("/users")
@login_required(ADMIN)
def users() -> str:
    return _users_page()


@bp.post("/users")
@login_required(ADMIN)
def user_create() -> Any:
    db = request_session()
    username = request.form.get("username", "").strip()
    role = request.form.get("role", "")
    responder_id = request.form.get("responder_id", type=int) or None
    language = request.form.get("language", "fr")
    try:
        if not username or len(username) > 80 or any(c.isspace() for c in username):
            raise AdminError("a username is 1 to 80 characters without spaces")
        if language not in ("fr", "en"):
            raise AdminError("language must be fr or en")
        if responder_id is not None and db.get(Responder, responder_id) is None:
            raise AdminError("no such responder")
        if db.scalar(select(User.id).where(User.username == username)) is not None:
            raise AdminError(f"user {username} exists already")
        user, password = create_user(db, username, role, responder_id=responder_id, language=language)
    except IntegrityError:
        db.rollback()
        return _users_page(errors=[f"user {username} exists already"]), 400
    except ValueError as exc:  # AdminError, and create_user's own checks of the role and responder
        db.rollback()
        return _users_page(errors=[str(exc)]), 400
    _log(f"created user {user.username} ({user.role})")
    # Shown in this response only: the password is stored hashed and never displayed again.
    return _users_page(created=(user.username, password))


def _user_or_404(db: Session, user_id: int) -> User:
    user = get_locked(db, User, user_id)
    if user is None:
        abort(404)
    return user


@bp.post("/users/<int:user_id>/unlock")
@login_required(ADMIN)
def user_unlock(user_id: int) -> Any:
    db = request_session()
    user = _user_or_404(db, user_id)
    user.locked_until = None
    user.failed_logins = 0
    db.commit()
    _log(f"unlocked user {user.username}")
    return redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>/delete")
@login_required(ADMIN)
def user_delete(user_id: int) -> Any:
    db = request_session()
    user = _user_or_404(db, user_id)
    if user.id == _viewer().id:
        db.rollback()
        return _users_page(errors=["you cannot delete yourself; ask another admin"]), 400
    name = user.username
    db.delete(user)
    db.commit()
    _log(f"deleted user {name}")
    return redirect(url_for("admin.users"))


CSV_KINDS = {
    "focal-points": CsvKind(
        "focal points",
        ("name", "phone", "lat", "lon", "zone", "language"),
        _export_focal_points,
        imports.import_focal_points,
        "admin.focal_points",
        _focal_points_page,
    ),
    "responders": CsvKind(
        "responders",
        ("name", "phone", "tier", "zones", "language"),
        _export_responders,
        imports.import_responders,
        "admin.responders",
        _responders_page,
    ),
    "zones": CsvKind(
        "zones",
        ("name", "lat", "lon", "radius_km"),
        _export_zones,
        lambda db, stream, _region: imports.import_zones(db, stream),
        "admin.zones",
        _zones_page,
    ),
    "places": CsvKind(
        "places",
        ("name", "lat", "lon", "admin1", "admin2", "alt_names"),
        _export_places,
        lambda db, stream, _region: imports.import_places(db, stream),
        "admin.places",
        _places_page,
    ),
}
