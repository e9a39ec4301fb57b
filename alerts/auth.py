"""Logins for the pages: hashed passwords, sessions, CSRF on every form, lockout, roles and zone scoping."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, session, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from alerts.models import Responder, User
from alerts.states import UserRole
from alerts.web import request_session

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
# A hash to compare against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-password")

bp = Blueprint("auth", __name__)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Viewer:
    """Who is looking: their role and, for a responder, the zones they may see (None = every zone)."""

    id: int
    username: str
    role: str
    language: str
    zone_ids: frozenset[int] | None

    @property
    def is_admin(self) -> bool:
        return self.role == UserRole.ADMIN

    def may_see_zone(self, zone_id: int | None) -> bool:
        return self.zone_ids is None or zone_id in self.zone_ids


class LoginFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def authenticate(db: Session, username: str, password: str, now: datetime) -> User:
    """Check a login; counts failures and locks the account for a while after too many."""
    user = db.scalar(select(User).where(User.username == username))
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        raise LoginFailed("wrong username or password")
    if user.locked_until is not None and user.locked_until > now:
        raise LoginFailed("account locked after repeated failures; try again later")
    if not check_password_hash(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
        db.commit()
        raise LoginFailed("wrong username or password")
    user.failed_logins = 0
    user.locked_until = None
    db.commit()
    return user


def viewer_for(db: Session, user: User) -> Viewer:
    zone_ids = None
    if user.role == UserRole.RESPONDER:
        responder = db.get(Responder, user.responder_id) if user.responder_id else None
        zone_ids = frozenset(z.id for z in responder.zones) if responder else frozenset()
    return Viewer(user.id, user.username, user.role, user.language, zone_ids)


def current_viewer() -> Viewer | None:
    if "viewer" not in g:
        user_id = session.get("user_id")
        user = request_session().get(User, user_id) if user_id else None
        g.viewer = viewer_for(request_session(), user) if user else None
    return g.viewer


def login_required(*roles: str) -> Callable[[F], F]:
    """Only logged-in users of these roles (all roles when none given)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            viewer = current_viewer()
            if viewer is None:
                return redirect(url_for("auth.login", next=request.full_path))
            if roles and viewer.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    """Every form post carries the session's token (pages only: webhooks and the API do not use sessions)."""
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
        if not hmac.compare_digest(sent, session.get("csrf", "") or "\0"):
            abort(400, description="missing or stale form token; reload the page and try again")


bp.before_request(check_csrf)


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("log.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        try:
            user = authenticate(
                request_session(),
                request.form.get("username", ""),
                request.form.get("password", ""),
                datetime.now(UTC),
            )
        except LoginFailed as exc:
            error = exc.reason
            current_app.logger.info("failed login")
        else:
            session.clear()
            session["user_id"] = user.id
            session["language"] = user.language
            session.permanent = True
            return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error), 401 if error else 200


@bp.post("/logout")
def logout() -> Any:
    session.clear()
    return redirect(url_for("auth.login"))


@bp.post("/language")
def set_language() -> Any:
    language = request.form.get("language", "fr")
    if language in ("fr", "en"):
        session["language"] = language
        viewer = current_viewer()
        if viewer is not None:
            user = request_session().get(User, viewer.id)
            if user is not None:
                user.language = language
                request_session().commit()
    return redirect(_safe_next(request.form.get("next")))


def create_user(
    db: Session,
    username: str,
    role: str,
    password: str | None = None,
    responder_id: int | None = None,
    language: str = "fr",
) -> tuple[User, str]:
    """A new login; returns it with its password (generated when not given, shown once)."""
    if role not in tuple(UserRole):
        raise ValueError(f"role must be one of {', '.join(UserRole)}")
    if role == UserRole.RESPONDER and responder_id is None:
        raise ValueError("a responder login needs the responder it belongs to")
    password = password or secrets.token_urlsafe(12)
    user = User(
        username=username,
        password_hash=generate_password_hash(password),
        role=role,
        responder_id=responder_id,
        language=language,
    )
    db.add(user)
    db.commit()
    return user, password
