"""The bounded soak (bench/soak.py --bounded): the production shape under load, under kill -9, and (with
SOAK_OUTAGE=1, since it stops the shared PostgreSQL server) through a 30-second database outage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import ON_POSTGRESQL, TEST_DATABASE_URL

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(not ON_POSTGRESQL, reason="the soak needs TEST_DATABASE_URL on PostgreSQL"),
]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """The bounded preset; its throwaway databases live on the test server, never in the test database."""
    from bench import bench_webhooks, soak

    monkeypatch.setattr(bench_webhooks, "PG_ADMIN_URL", TEST_DATABASE_URL.rsplit("/", 1)[0] + "/postgres")
    return soak.Config.bounded(workdir=tmp_path, database_prefix="soak_ci")


def test_every_accepted_alert_is_stored_once_processed_and_paged_under_load(config) -> None:
    from bench.soak import run_load

    experiment = run_load(config)

    assert experiment.load.accepted == config.requests
    assert experiment.load.server_errors() == 0
    assert experiment.findings.lost == []
    assert experiment.findings.incidents > 0
    assert experiment.problems == []


def test_killing_web_and_scheduler_workers_loses_nothing_and_duplicates_only_interrupted_sends(
    config,
) -> None:
    from bench.soak import run_crash

    experiment = run_crash(config)

    assert experiment.notes["kills"] == config.kills
    assert experiment.findings.lost == []
    assert experiment.findings.incidents_without_steps == []
    assert experiment.findings.incidents_without_page_at_gateway == [], experiment.findings.unpaged_details
    assert experiment.findings.step_pages_twice == 0
    assert experiment.findings.duplicates_unexplained == 0
    assert experiment.problems == []


@pytest.mark.skipif(os.environ.get("SOAK_OUTAGE") != "1", reason="stops the shared server: set SOAK_OUTAGE=1")
def test_a_database_outage_is_answered_with_5xx_and_every_message_arrives_afterwards(config) -> None:
    from bench.soak import OutageRefused, pg_ready, run_outage

    try:
        experiment = run_outage(config)
    except OutageRefused as refused:
        pytest.skip(str(refused))
    finally:
        assert pg_ready(), "PostgreSQL must be running again after the outage"

    assert experiment.notes["5xx during the outage"] > 0
    assert experiment.notes["5xx outside the outage"] == 0
    assert experiment.notes["scheduler workers that died"] == 0
    assert experiment.findings.lost == []
    assert experiment.findings.unprocessed == 0
    assert experiment.problems == []
