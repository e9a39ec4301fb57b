"""The alert relay: the application factory is the composition root (see DESIGN.md)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask application; nothing is created before this is called."""
    from alerts import admin, api, auth, cli, health, pages, web
    from alerts.config import load_config
    from alerts.db import Database
    from alerts.logs import configure_logging
    from alerts.spool import open_spool
    from escalation import cli as escalation_cli
    from escalation import scheduler
    from webhooks import register as register_webhooks

    app = Flask(__name__, instance_relative_config=True)
    app.config.update(load_config(Path(app.instance_path), overrides=config))
    configure_logging(app.config["LOG_LEVEL"])
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_WEBHOOK_BYTES"] * 4

    if app.config["TRUST_PROXY"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]

    app.extensions["alerts_db"] = Database(app.config["DATABASE_URL"])
    app.extensions["alerts_spool"] = open_spool(app.config["DATABASE_URL"], app.config["INBOUND_SPOOL"])
    web.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(api.bp)
    cli.init_app(app)
    register_webhooks(app)
    scheduler.register(app)
    escalation_cli.init_app(app)
    return app
