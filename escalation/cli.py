"""Commands: `worker` (the scheduler), `outbox` (what was sent), `report response-times`."""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime, time, timedelta
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from alerts.metrics import response_times
from alerts.models import OutboundMessage
from alerts.phones import mask_phone
from alerts.runtime import tune_gc
from alerts.web import get_database
from escalation.scheduler import SHUTDOWN_WAIT_SECONDS


@click.command("worker")
@with_appcontext
@click.option("--tick", default=1.0, show_default=True, help="Seconds between two runs of each job.")
@click.option(
    "--nice",
    type=click.IntRange(0, 19),
    default=None,
    help="CPU priority below the web workers' (default: WORKER_NICE, 10; 0 for none).",
)
def worker_command(tick: float, nice: int | None) -> None:
    """Run the escalation scheduler in the foreground (one or many per deployment).

    On a machine it shares with the web workers, the worker runs at a lower CPU priority: in a burst the
    webhooks, which a provider times out, go first, and the stored messages are processed from the
    CPU they leave; when the webhooks are quiet the worker has all of it.
    """
    engine = current_app.extensions["alerts_engine"]
    engine.build_scheduler(blocking=True, tick_seconds=tick)
    signal.signal(signal.SIGTERM, lambda *_: engine.shutdown())
    increment = current_app.config["WORKER_NICE"] if nice is None else nice
    if increment:
        os.nice(increment)
    tune_gc(current_app.config["GC_GEN0_THRESHOLD"])
    engine.start(blocking=True)
    # Stopped (SIGTERM): the jobs running end their pass before the process exits.
    engine.wait_for_jobs(SHUTDOWN_WAIT_SECONDS)


@click.command("outbox")
@with_appcontext
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@click.option("--limit", default=100, show_default=True)
@click.option("--full-numbers", is_flag=True, help="Show recipients' numbers in clear (default: masked).")
def outbox_command(as_json: bool, limit: int, full_numbers: bool) -> None:
    """List outbound messages, newest first."""
    with get_database().session() as session:
        messages = session.scalars(
            select(OutboundMessage)
            .options(selectinload(OutboundMessage.incident))
            .order_by(OutboundMessage.created_at.desc(), OutboundMessage.id.desc())
            .limit(limit)
        ).all()
        for message in messages:
            row: dict[str, Any] = {
                "to": message.recipient if full_numbers else mask_phone(message.recipient),
                "body": message.body,
                "state": message.state,
                "incident": message.incident.number if message.incident else None,
                "created_at": message.created_at.isoformat(),
                "sent_at": message.sent_at.isoformat() if message.sent_at else None,
                "gateway": message.provider,
                "purpose": message.purpose,
                "attempts": message.attempts,
            }
            if as_json:
                click.echo(json.dumps(row, ensure_ascii=False))
            else:
                click.echo(
                    f"{row['created_at'][:19]} {row['state']:<11} {row['to']:<16} #{row['incident'] or '-'} "
                    f"{row['body']}"
                )


report_cli = AppGroup("report", help="Figures protection teams are judged by.")


@report_cli.command("response-times")
@click.option(
    "--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="First day (UTC); default 7 days ago."
)
@click.option(
    "--until", type=click.DateTime(formats=["%Y-%m-%d"]), help="Last day (UTC), included; default today."
)
@click.option("--json", "as_json", is_flag=True)
def response_times_command(since: datetime | None, until: datetime | None, as_json: bool) -> None:
    """Median and p90 per zone: received -> first page -> delivered -> acknowledged -> resolved."""
    today = datetime.now(UTC).date()
    start = datetime.combine(since.date() if since else today - timedelta(days=7), time(), UTC)
    end = datetime.combine((until.date() if until else today) + timedelta(days=1), time(), UTC)
    with get_database().session() as session:
        rows = response_times(session, start, end)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo(f"response times {start.date()} .. {(end - timedelta(days=1)).date()} (minutes: median / p90)")
    for row in rows:
        parts = [
            f"{name} {row[name]['median']}/{row[name]['p90']}"
            for name in ("first_page", "first_delivery", "acknowledged", "resolved")
            if row[name]["n"]
        ]
        click.echo(f"{row['zone']:<14} incidents {row['incidents']:<4} " + "  ".join(parts))


def init_app(app: Flask) -> None:
    for command in (worker_command, outbox_command, report_cli):
        app.cli.add_command(command)
