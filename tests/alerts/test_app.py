"""The application factory and the health endpoint."""

import subprocess
import sys

from tests.conftest import make_test_app


def test_healthz_answers_200_when_the_database_is_reachable(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok"}


def test_healthz_answers_503_when_the_database_is_unreachable(tmp_path):
    app = make_test_app(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}", tmp_path)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["database"] == "unreachable"


def test_importing_the_package_creates_no_app_engine_or_files(tmp_path):
    code = (
        "import alerts, alerts.models, alerts.pipeline, alerts.cli, webhooks, escalation, sys, gc;"
        "import flask, sqlalchemy;"
        "apps=[o for o in gc.get_objects() if isinstance(o, flask.Flask)];"
        "engines=[o for o in gc.get_objects() if isinstance(o, sqlalchemy.engine.Engine)];"
        "print(len(apps), len(engines))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[2])},
    )
    assert result.stdout.split() == ["0", "0"]
    assert list(tmp_path.iterdir()) == []
