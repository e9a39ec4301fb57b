"""Process-wide settings of the web and scheduler workers."""

from __future__ import annotations

import gc
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest

from alerts.runtime import tune_gc

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def restored_gc_threshold():
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_the_collector_runs_after_the_configured_number_of_new_objects(restored_gc_threshold):
    tune_gc(12_345)
    assert gc.get_threshold() == (12_345, *restored_gc_threshold[1:])
    tune_gc(0)  # 0 leaves it as it is
    assert gc.get_threshold()[0] == 12_345


@pytest.mark.parametrize("wsgi", [None, "flask"])
def test_every_gunicorn_worker_applies_the_threshold_whatever_its_app(
    wsgi, app, monkeypatch, restored_gc_threshold
):
    """The benchmarks' floor and RapidSMS peer run under the same gunicorn settings: the same threshold."""
    monkeypatch.setenv("GC_GEN0_THRESHOLD", "23456")
    hooks = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    hooks["post_worker_init"](SimpleNamespace(wsgi=app if wsgi else object()))
    assert gc.get_threshold() == (23_456, *restored_gc_threshold[1:])


def test_the_default_threshold_is_well_above_pythons(app):
    assert app.config["GC_GEN0_THRESHOLD"] >= 10 * 700
