"""The benchmark's floor: a bare Flask endpoint that parses Twilio's form and inserts one row, nothing else.

Served by the same gunicorn settings and the same engine set-up (alerts.db.make_engine) as the service, so the
difference with the service is the cost of verifying, normalising, storing idempotently and processing.
`gunicorn 'bench.floor_app:create_app()'` with DATABASE_URL set; `create_schema(url)` first.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from flask import Flask, Response, request
from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, Text, insert

from alerts.db import make_engine

metadata = MetaData()
floor_messages = Table(
    "floor_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("provider_message_id", String(80), nullable=False),
    Column("sender", String(20), nullable=False),
    Column("text", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("raw", JSON, nullable=False),
)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


def create_schema(url: str) -> None:
    engine = make_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    engine.dispose()


def create_app() -> Flask:
    app = Flask(__name__)
    engine = make_engine(os.environ["DATABASE_URL"])

    @app.post("/webhooks/twilio/sms")
    def inbound_sms() -> Response:
        form = request.form
        with engine.begin() as connection:
            connection.execute(
                insert(floor_messages).values(
                    provider_message_id=form["MessageSid"],
                    sender=form["From"],
                    text=form.get("Body", ""),
                    received_at=datetime.now(UTC).replace(tzinfo=None),
                    raw=form.to_dict(),
                )
            )
        return Response(EMPTY_TWIML, mimetype="application/xml")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", mimetype="text/plain")

    return app
