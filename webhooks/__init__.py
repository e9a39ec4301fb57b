"""The provider edge: inbound SMS and delivery reports from Twilio and Africa's Talking, verified, stored."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Register the providers' webhook blueprints and the `sms` commands on the application."""
    from webhooks import africastalking, cli, twilio

    app.register_blueprint(twilio.bp)
    app.register_blueprint(africastalking.bp)
    app.cli.add_command(cli.sms_cli)
