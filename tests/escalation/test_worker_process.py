"""`flask --app wsgi worker` as operators run it: its own process, below the web workers' CPU priority."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def niceness_of_worker(database_url: str, tmp_path: Path, args: list[str], env: dict[str, str]) -> int:
    """Start a worker, wait until its priority changes from ours (or it dies), and stop it."""
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--tick", "3600", *args],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database_url,
            "SECRET_KEY": "test",
            "SMS_GATEWAYS": "console",
            "LOG_LEVEL": "WARNING",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        niceness = ours
        while time.monotonic() < deadline and process.poll() is None:
            niceness = os.getpriority(os.PRIO_PROCESS, process.pid)
            if niceness != ours:
                break
            time.sleep(0.05)  # polling a process that is starting up, not waiting for time to pass
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        return niceness - ours
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {}, 10),  # the default: below the web workers
        ([], {"WORKER_NICE": "4"}, 4),
        (["--nice", "7"], {"WORKER_NICE": "4"}, 7),  # the option wins over the environment
    ],
)
def test_the_worker_runs_below_the_web_workers_cpu_priority(database_url, tmp_path, args, env, expected):
    if os.getpriority(os.PRIO_PROCESS, 0) + expected > 19:
        pytest.skip("this process already runs at a low priority")
    assert niceness_of_worker(database_url, tmp_path, args, env) == expected
