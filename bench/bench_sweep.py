"""Sweep throughput: due escalation steps claimed, run and written to the outbox, per second.

    .venv/bin/python bench/bench_sweep.py --db both --steps 100000 --workers 1,2

For each database and each number of workers, on a fresh throwaway database (migrated, demo network seeded):
bulk-insert open incidents (policy already snapshotted, so planning is not measured) spread over the demo
zones and `--steps` pending escalation steps due now (`--steps-per-incident` per incident: tiers 1, 2, 3,
then tier 1 again as a repeat). Then W worker processes start together, each calling
`escalation.engine.run_due_steps` (batches of `--batch`, the engine's own size) until it finds nothing due.
Throughput = steps / wall time from the start signal to the last worker done. Checks afterwards: every step
is done, the steps the workers reported add up to the steps inserted, no step has two "paged" events on its
incident's timeline, the pages in the outbox match the pages the workers reported and each page's
idempotency key is unique.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from bench.bench_webhooks import (  # noqa: E402 - after the path is set, as a script
    drop_postgresql_database,
    machine,
    postgresql_database,
    versions,
)

PG_DATABASE = "bench_sweep"
CATEGORIES = ("attack", "killing", "armed_presence", "abduction", "looting")


@dataclass
class SweepResult:
    db: str
    workers: int
    steps: int
    seconds: float
    per_worker: list[int]
    done: int
    left: int
    pages: int
    pages_reported: int
    duplicate_steps: int
    duplicate_keys: int
    insert_seconds: float
    lock_errors: int = 0

    @property
    def rate(self) -> float:
        return self.steps / self.seconds


def prepare(url: str, steps: int, per_incident: int) -> float:
    """Migrate, seed the demo network, bulk-insert incidents and due steps; returns the insert time."""
    from sqlalchemy import func, insert, select

    from alerts.db import Database
    from alerts.demo import seed_demo
    from alerts.models import EscalationStep, Incident, Zone
    from alerts.states import IncidentStatus, StepState

    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING"}
    subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    database = Database(url)
    try:
        with database.session() as session:
            seed_demo(session)
            zones = session.execute(select(Zone.id, Zone.name, Zone.lat, Zone.lon)).all()
        began = time.perf_counter()
        now = datetime.now(UTC)
        incidents = -(-steps // per_incident)
        snapshot = [
            {"after_minutes": 0, "tier": t, "repeat_every_minutes": 15, "repeat_times": 1} for t in (1, 2, 3)
        ]
        chunk = 5000
        with database.session() as session:
            for start in range(0, incidents, chunk):
                rows = []
                for i in range(start, min(incidents, start + chunk)):
                    zone_id, zone_name, lat, lon = zones[i % len(zones)]
                    rows.append(
                        {
                            "number": i + 1,
                            "category": CATEGORIES[i % len(CATEGORIES)],
                            "secondary_categories": [],
                            "severity": "critical",
                            "status": IncidentStatus.OPEN,
                            "count": 1 + i % 9,
                            "lat": lat,
                            "lon": lon,
                            "place_name": zone_name,
                            "zone_id": zone_id,
                            "confidence": 0.8,
                            "first_report_at": now - timedelta(minutes=1),
                            "last_report_at": now - timedelta(minutes=1),
                            "policy_snapshot": snapshot,
                            "escalation_generation": 0,
                            "update_pending": False,
                            "created_at": now,
                        }
                    )
                session.execute(insert(Incident), rows)
            session.commit()
            first_id = session.scalar(select(func.min(Incident.id)))
            # (position, repeat index, tier) of each step of an incident
            shape = [(0, 0, 1), (1, 0, 2), (2, 0, 3), (0, 1, 1)]
            shape += [(0, r, 1) for r in range(2, per_incident)]
            for start in range(0, steps, chunk):
                rows = []
                for n in range(start, min(steps, start + chunk)):
                    position, repeat, tier = shape[n % per_incident]
                    rows.append(
                        {
                            "incident_id": first_id + n // per_incident,
                            "generation": 0,
                            "position": position,
                            "repeat_index": repeat,
                            "tier": tier,
                            "quorum": 1,
                            "due_at": now - timedelta(seconds=1),
                            "state": StepState.PENDING,
                            "outcome": "",
                        }
                    )
                session.execute(insert(EscalationStep), rows)
            session.commit()
            if database.is_postgresql:
                session.connection().exec_driver_sql("ANALYZE")
                session.commit()
        return time.perf_counter() - began
    finally:
        database.dispose()


def worker(
    url: str, name: str, batch: int, start: multiprocessing.synchronize.Event, out: multiprocessing.Queue
) -> None:
    """One engine worker: claim and run due steps, batch after batch, until nothing is due."""
    import logging

    from sqlalchemy.exc import OperationalError

    from alerts.db import Database
    from escalation.engine import run_due_steps

    logging.disable(logging.WARNING)  # "nobody on duty" and the like are not what is measured
    database = Database(url)
    with database.session() as session:  # connect before the clock starts
        session.connection()
    ran = paged = lock_errors = 0
    start.wait()
    while True:
        try:
            with database.session() as session:
                results = run_due_steps(session, datetime.now(UTC), name, batch)
        except OperationalError:
            # SQLite: "database is locked" after busy_timeout; the scheduler would retry at its next tick.
            lock_errors += 1
            time.sleep(0.1)
            continue
        if not results:
            break
        ran += len(results)
        paged += sum(r.paged for r in results)
    out.put((name, ran, paged, time.perf_counter(), lock_errors))
    database.dispose()


def check(url: str) -> tuple[int, int, int, int, int]:
    """(steps done, steps not done, pages in the outbox, steps paged twice, duplicate idempotency keys)."""
    from sqlalchemy import func, select

    from alerts.db import Database
    from alerts.models import EscalationStep, IncidentEvent, OutboundMessage
    from alerts.states import StepState

    database = Database(url)
    try:
        with database.read_sessionmaker() as session:
            done = session.scalar(
                select(func.count()).select_from(EscalationStep).where(EscalationStep.state == StepState.DONE)
            )
            left = session.scalar(
                select(func.count()).select_from(EscalationStep).where(EscalationStep.state != StepState.DONE)
            )
            pages = session.scalar(
                select(func.count()).select_from(OutboundMessage).where(OutboundMessage.purpose == "page")
            )
            keys = session.scalar(
                select(
                    func.count(OutboundMessage.idempotency_key)
                    - func.count(OutboundMessage.idempotency_key.distinct())
                )
            )
            paged_steps = Counter(
                data.get("step")
                for data in session.scalars(select(IncidentEvent.data).where(IncidentEvent.kind == "paged"))
            )
    finally:
        database.dispose()
    twice = sum(1 for count in paged_steps.values() if count > 1)
    return done, left, pages, twice, keys


def run(db: str, workers: int, args: argparse.Namespace, workdir: Path) -> SweepResult:
    url = (
        postgresql_database(PG_DATABASE)
        if db == "postgresql"
        else f"sqlite:///{workdir / f'sweep-{workers}.db'}"
    )
    try:
        insert_seconds = prepare(url, args.steps, args.steps_per_incident)
        context = multiprocessing.get_context("spawn")
        start = context.Event()
        out = context.Queue()
        processes = [
            context.Process(target=worker, args=(url, f"bench-worker-{i}", args.batch, start, out))
            for i in range(workers)
        ]
        for process in processes:
            process.start()
        time.sleep(3.0)  # every worker imported and connected
        began = time.perf_counter()
        start.set()
        reports = [out.get(timeout=3600) for _ in processes]
        for process in processes:
            process.join()
        seconds = max(r[3] for r in reports) - began
        done, left, pages, twice, keys = check(url)
        return SweepResult(
            db=db,
            workers=workers,
            steps=sum(r[1] for r in reports),
            seconds=seconds,
            per_worker=[r[1] for r in reports],
            done=done,
            left=left,
            pages=pages,
            pages_reported=sum(r[2] for r in reports),
            duplicate_steps=twice,
            duplicate_keys=keys,
            insert_seconds=insert_seconds,
            lock_errors=sum(r[4] for r in reports),
        )
    finally:
        if db == "postgresql":
            drop_postgresql_database(PG_DATABASE)


def table(results: list[SweepResult]) -> str:
    lines = [
        "| database | workers | steps run | steps/s | seconds | per worker | done | not done | pages "
        "| steps paged twice | duplicate keys | lock errors |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.db} | {r.workers} | {r.steps} | {r.rate:.0f} | {r.seconds:.1f} "
            f"| {' + '.join(map(str, r.per_worker))} | {r.done} | {r.left} | {r.pages} "
            f"| {r.duplicate_steps} | {r.duplicate_keys} | {r.lock_errors} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--steps", type=int, default=100_000, help="due steps inserted per run")
    parser.add_argument("--steps-per-incident", type=int, default=4)
    parser.add_argument("--workers", default="1,2", help="numbers of worker processes, comma-separated")
    parser.add_argument("--batch", type=int, default=50, help="steps claimed per transaction")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (SQLite files)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    print(f"# sweep throughput: {machine()}; {versions()}", flush=True)
    print(
        f"{args.steps} steps, {args.steps_per_incident} per incident, batch {args.batch}; work dir {workdir}"
    )
    results = []
    try:
        for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
            for workers in (int(w) for w in args.workers.split(",")):
                result = run(db, workers, args, workdir)
                ok = (
                    result.steps == args.steps
                    and result.done == args.steps
                    and not result.left
                    and not result.duplicate_steps
                    and not result.duplicate_keys
                    and result.pages == result.pages_reported
                )
                print(
                    f"  {db}, {workers} worker(s): {result.rate:.0f} steps/s ({result.seconds:.1f} s, "
                    f"insert {result.insert_seconds:.1f} s), {result.pages} pages; "
                    f"{'checks pass' if ok else 'CHECKS FAIL'}",
                    flush=True,
                )
                results.append(result)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(results))


if __name__ == "__main__":
    main()
