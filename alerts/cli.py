"""The `flask --app wsgi ...` commands: migrations, the demo network and CSV imports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from alerts import imports, migrate
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


def _import_command(
    group: AppGroup, run: Callable[..., imports.ImportResult], columns: str, regional: bool
) -> None:
    @group.command("import", help=f"Import a CSV file with columns {columns}. Nothing is written if a row is bad.")
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
_import_command(places_cli, imports.import_places, "name,lat,lon,admin1,admin2,alt_names", False)
_import_command(zones_cli, imports.import_zones, "name,lat,lon,radius_km", False)
_import_command(focal_points_cli, imports.import_focal_points, "name,phone,lat,lon,zone,language", True)
_import_command(responders_cli, imports.import_responders, "name,phone,tier,zones,language", True)


def init_app(app: Flask) -> None:
    for command in (db_cli, demo_command, places_cli, zones_cli, focal_points_cli, responders_cli):
        app.cli.add_command(command)
