"""Settings of a long-running process as a whole (a web or scheduler worker), applied where it starts."""

from __future__ import annotations

import gc


def tune_gc(gen0_threshold: int) -> None:
    """Run Python's cycle collector after `gen0_threshold` new container objects instead of 700.

    A batch of the pipeline creates tens of thousands of short-lived objects (ORM rows, statements, results),
    almost all freed by reference counting; at the default threshold the collector ran every few
    milliseconds and walked the older generations often enough to take 6% of a worker's CPU (0.3 s of 4.3 s
    for 2,000 alerts, bench/RESULTS-soak.md). At 10,000 it took 0.03 s; what little garbage has cycles is
    still collected, a little later. 0 keeps Python's default.
    """
    if gen0_threshold > 0:
        _gen0, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)
