"""The service with processing skipped, for the benchmark only: what the provider edge alone costs (signature,
normalisation, idempotent store and commit, TwiML answer), to set beside the full service and the floor.

`gunicorn 'bench.edge_app:create_edge_app()'`; never deployed.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from alerts import create_app, pipeline


def _skip_processing(*_args: Any, **_kwargs: Any) -> pipeline.Outcome:
    return pipeline.Outcome("benchmark: processing skipped")


def create_edge_app() -> Flask:
    app = create_app()
    # The webhook looks process_message up on the module at call time, so this one seam replaces it.
    pipeline.process_message = _skip_processing  # type: ignore[assignment]
    return app
