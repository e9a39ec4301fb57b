"""The `flask --app wsgi ...` commands: migrations, the demo network and CSV imports."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from alerts import imports, migrate
from alerts.db import get_locked
from alerts.parsing import parse_message
from alerts.web import get_database

db_cli = AppGroup("db", help="Database migrations (Alembic).")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    migrate.upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")


@db_cli.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION."""
    migrate.downgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")


@click.command("demo")
@with_appcontext
def demo_command() -> None:
    """Seed the demo network of North Kivu (idempotent); prints the coordinator's password once."""
    from alerts.demo import seed_demo

    with get_database().session() as session:
        result = seed_demo(session)
    click.echo(f"places: {result.places}")
    click.echo(f"zones: {result.zones}")
    click.echo(f"focal points: {result.focal_points}")
    click.echo(f"responders: {result.responders}")
    if result.coordinator_password:
        click.echo(f"coordinator login: coordinator / {result.coordinator_password}  (shown only this once)")
    else:
        click.echo("coordinator login: exists already (password not shown again)")


@click.command("parse")
@with_appcontext
def parse_command() -> None:
    """Read JSON lines {"text", "near"} on stdin; write one parsed and located JSON line for each."""
    from alerts.parsing import Kind
    from alerts.pipeline import PipelineSettings, gazetteer, keywords

    settings = PipelineSettings.from_config(current_app.config)
    words = keywords(settings.keywords_dirs)
    errors = 0
    with get_database().read_sessionmaker() as session:
        places = gazetteer(session)
    stdin = sys.stdin
    for number, line in enumerate(stdin, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text, near = item["text"], item.get("near")
            if not isinstance(text, str):
                raise ValueError("text must be a string")
            home = (float(near[0]), float(near[1])) if near else None
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            errors += 1
            click.echo(json.dumps({"error": f"line {number}: {exc.__class__.__name__}: {exc}"}))
            continue
        parsed = parse_message(text, words)
        row: dict[str, Any] = dict.fromkeys(
            ("kind", "category", "severity", "count", "place", "lat", "lon", "located_by", "command", "ref")
        )
        row.update(kind=parsed.kind.value, language=parsed.language)
        if parsed.kind == Kind.COMMAND:
            row.update(command=parsed.command.value if parsed.command else None, ref=parsed.ref)
        elif parsed.kind == Kind.ALERT:
            location = places.locate(parsed.place_words, parsed.coordinates, home)
            row.update(
                category=parsed.category.value if parsed.category else None,
                severity=parsed.severity.value if parsed.severity else None,
                count=parsed.count,
                place=location.place_name,
                lat=location.lat,
                lon=location.lon,
                located_by=location.located_by.value,
            )
        click.echo(json.dumps(row, ensure_ascii=False))
    if errors:
        raise click.ClickException(f"{errors} line(s) could not be read")


incidents_cli = AppGroup("incidents", help="Coordinators' corrections to deduplication.")


@incidents_cli.command("merge")
@click.argument("keep", type=int)
@click.argument("absorb", type=int)
@click.option("--by", "actor", required=True, help="Who decides (recorded on both timelines).")
def incidents_merge(keep: int, absorb: int, actor: str) -> None:
    """Merge incident ABSORB into incident KEEP (numbers as responders see them)."""
    from alerts import incidents

    with get_database().session() as session:
        try:
            target = incidents.find_by_number(session, keep, for_update=True)
            source = incidents.find_by_number(session, absorb, for_update=True)
            incidents.merge(session, target, source, datetime.now(UTC), f"coordinator {actor}")
        except incidents.IncidentNotFound as exc:
            raise click.ClickException(f"incident {exc.args[0]} not found") from None
        except incidents.CannotMerge as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
    click.echo(f"incident {absorb} merged into {keep}")


@incidents_cli.command("split")
@click.argument("report_id", type=int)
@click.option("--by", "actor", required=True, help="Who decides (recorded on both timelines).")
def incidents_split(report_id: int, actor: str) -> None:
    """Split report REPORT_ID off into an incident of its own."""
    from alerts import incidents
    from alerts.models import Report

    with get_database().session() as session:
        report = get_locked(session, Report, report_id)
        if report is None:
            raise click.ClickException(f"report {report_id} not found")
        try:
            incident = incidents.split(session, report, datetime.now(UTC), f"coordinator {actor}")
        except incidents.CannotMerge as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
        click.echo(f"report {report_id} is now incident {incident.number}")


users_cli = AppGroup("users", help="Logins for the pages.")


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "coordinator", "responder"]), required=True)
@click.option("--responder-phone", help="For a responder login: the phone of the responder it belongs to.")
@click.option("--language", type=click.Choice(["fr", "en"]), default="fr", show_default=True)
def users_create(username: str, role: str, responder_phone: str | None, language: str) -> None:
    """Create a login; its password is printed once."""
    from alerts.auth import create_user
    from alerts.models import Responder, User
    from alerts.phones import InvalidPhone, to_e164

    with get_database().session() as session:
        if session.scalar(select(User).where(User.username == username)) is not None:
            raise click.ClickException(f"user {username!r} exists already")
        responder_id = None
        if responder_phone:
            try:
                phone = to_e164(responder_phone, current_app.config["DEFAULT_REGION"])
            except InvalidPhone as exc:
                raise click.ClickException(f"--responder-phone: {exc}") from None
            responder = session.scalar(select(Responder).where(Responder.phone == phone))
            if responder is None:
                raise click.ClickException("no responder has that phone number")
            responder_id = responder.id
        try:
            _, password = create_user(session, username, role, responder_id=responder_id, language=language)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{role} login: {username} / {password}  (shown only this once)")


@users_cli.command("token")
@click.argument("username")
def users_token(username: str) -> None:
    """Give a login a new API token (replacing any old one); it is printed once, only its hash is kept."""
    from alerts.api import issue_token
    from alerts.models import User

    with get_database().session() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise click.ClickException(f"no user {username!r}")
        token = issue_token(session, user)
    click.echo(f"API token for {username}: {token}  (shown only this once)")


def _import_command(
    group: AppGroup, run: Callable[..., imports.ImportResult], columns: str, regional: bool
) -> None:
    @group.command(
        "import", help=f"Import a CSV file with columns {columns}. Nothing is written if a row is bad."
    )
    @click.argument("file", type=click.File("r", encoding="utf-8-sig"))
    def command(file: TextIO) -> None:
        kwargs: dict[str, Any] = {"default_region": current_app.config["DEFAULT_REGION"]} if regional else {}
        with get_database().session() as session:
            try:
                result = run(session, file, **kwargs)
            except imports.ImportFailed as exc:
                for error in exc.errors:
                    click.echo(f"{file.name}: {error}", err=True)
                raise click.ClickException(f"nothing imported: {len(exc.errors)} error(s)") from None
        click.echo(f"{file.name}: {result}")


places_cli = AppGroup("places", help="The gazetteer.")
zones_cli = AppGroup("zones", help="Zones: each base's area of responsibility.")
focal_points_cli = AppGroup("focal-points", help="Focal points: registered senders.")
responders_cli = AppGroup("responders", help="Responders: registered recipients of escalations.")


def _review_command(verb: str, status: str) -> None:
    @focal_points_cli.command(verb, help=f"{verb.capitalize()} a registration (focal point by phone number).")
    @click.argument("phone")
    def command(phone: str) -> None:
        from alerts.models import FocalPoint
        from alerts.phones import InvalidPhone, to_e164

        try:
            number = to_e164(phone, current_app.config["DEFAULT_REGION"])
        except InvalidPhone as exc:
            raise click.ClickException(str(exc)) from None
        with get_database().session() as session:
            focal_point = session.scalar(select(FocalPoint).where(FocalPoint.phone == number))
            if focal_point is None:
                raise click.ClickException("no focal point has that phone number")
            focal_point.status = status
            session.commit()
            click.echo(f"focal point {focal_point.id} ({focal_point.name}) is now {status}")


_review_command("approve", "active")
_review_command("reject", "rejected")
_import_command(places_cli, imports.import_places, "name,lat,lon,admin1,admin2,alt_names", False)
_import_command(zones_cli, imports.import_zones, "name,lat,lon,radius_km", False)
_import_command(focal_points_cli, imports.import_focal_points, "name,phone,lat,lon,zone,language", True)
_import_command(responders_cli, imports.import_responders, "name,phone,tier,zones,language", True)


def init_app(app: Flask) -> None:
    for command in (
        db_cli,
        demo_command,
        parse_command,
        incidents_cli,
        users_cli,
        places_cli,
        zones_cli,
        focal_points_cli,
        responders_cli,
    ):
        app.cli.add_command(command)
