"""The systemd units in docs/deploy: what an operator copies must start the two processes the README
describes, and keep the workers below the web workers for the CPU across units (where nice does not reach)."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "docs" / "deploy"
WEB = DEPLOY / "alert-relay-web.service"
WORKER = DEPLOY / "alert-relay-worker@.service"
DEFAULT_CPU_WEIGHT = 100  # systemd's, for a unit that sets none


def _service(path: Path) -> configparser.SectionProxy:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read_string(path.read_text())
    return unit["Service"]


def _command(service: configparser.SectionProxy, key: str = "ExecStart") -> list[str]:
    argv = shlex.split(service[key])
    return [Path(argv[0]).name, *argv[1:]]


def test_the_web_unit_runs_gunicorn_with_the_projects_config_and_migrates_first():
    web = _service(WEB)
    assert _command(web)[:3] == ["gunicorn", "--config", "gunicorn.conf.py"]
    assert _command(web)[-1] == "wsgi:app"
    assert _command(web, "ExecStartPre") == ["flask", "--app", "wsgi", "db", "upgrade"]
    assert "SCHEDULER_ENABLED" not in WEB.read_text().replace("(SCHEDULER_ENABLED unset)", "")


def test_the_worker_unit_runs_the_scheduler_at_a_lower_cpu_weight_than_the_web_unit():
    worker, web = _service(WORKER), _service(WEB)
    assert _command(worker) == ["flask", "--app", "wsgi", "worker"]
    assert int(worker["CPUWeight"]) < int(web.get("CPUWeight", str(DEFAULT_CPU_WEIGHT)))


@pytest.mark.parametrize("path", [WEB, WORKER], ids=lambda p: p.name)
def test_units_take_secrets_from_an_environment_file_and_restart(path):
    service = _service(path)
    assert service["EnvironmentFile"] == "/etc/alert-relay/env"
    assert service["Restart"] == "always"
    assert "Environment" not in service  # no secret written into the unit itself
