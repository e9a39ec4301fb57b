"""Soak test of the production shape: load, crashes, a database outage, and a RapidSMS peer side by side.

    .venv/bin/python bench/soak.py load --requests 2000
    .venv/bin/python bench/soak.py crash --requests 1500 --kills 8
    .venv/bin/python bench/soak.py outage --requests 900        # stops the whole PostgreSQL server for 30 s
    .venv/bin/python bench/soak.py peer --requests 2000 --rounds 3  # ours and RapidSMS 2.2 in turn
    .venv/bin/python bench/soak.py all --bounded                # the CI-sized set, a few minutes

Every experiment runs on a throwaway PostgreSQL database: gunicorn web workers without the scheduler (2 x 4
threads, gunicorn.conf.py), two `flask --app wsgi worker` processes, SMS_GATEWAYS=twilio pointed at the local
fake of the Twilio API (tests/fakes/providers.py) in this process. The client posts genuinely signed Twilio
webhooks from the demo focal points (alerts naming demo places, one in four with GPS on an 11 km grid: many
distinct incidents), loopback only, a fixed number; like Twilio, it posts a refused webhook (connection error,
timeout, 5xx) again with backoff and the same MessageSid, so "accepted" means "eventually answered 2xx".
After the load, it waits until the workers owe nothing, then checks: every accepted MessageSid is stored
exactly once and processed; every report has an incident, every incident escalation steps and a page that
reached the fake gateway; no (step, responder) has two pages; every SMS the fake received more often than the
outbox holds rows for it is a duplicate, explained only when its row has attempts > 1 (the send was cut off
and re-queued after its lease). `crash` kill -9's gunicorn workers (gunicorn respawns them) and scheduler
workers (restarted here, as systemd would) during the load; `outage` stops PostgreSQL under paced load and
starts it again; `peer` drives the same requests at RapidSMS 2.2 (generic HTTP backend, message log, default
reply) under the same gunicorn settings on PostgreSQL. The exit status is 1 when an invariant broke.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_webhooks import machine, versions  # noqa: E402
from bench.soak_rig import (  # noqa: E402
    Chaos,
    Findings,
    LoadResult,
    Service,
    alert_webhooks,
    check,
    deliver,
    drain,
    wait_for,
)

WARM_UP = 20
BUSY_PATTERNS = ("pytest", "bench_")  # other engineers' suites and benchmarks on the shared server


@dataclass
class Config:
    requests: int = 2000
    concurrency: int = 8
    web_workers: int = 2
    threads: int = 4
    scheduler_workers: int = 2
    kills: int = 8
    outage_seconds: float = 30.0
    outage_lead: float = 10.0  # seconds of load before PostgreSQL stops
    outage_rate: float = 0.0  # 0: requests / (lead + outage + 20 s)
    crash_provider_ms: float = 50.0  # a provider's answer takes a while: a kill often lands mid-send
    crash_rate: float = 0.0  # 0: paced so that the load lasts as long as the kills (about 2 s apart)
    drain_timeout: float = 300.0
    seed: int = 1
    database_prefix: str = "soak"
    peer_venv: Path = ROOT / "bench" / "peer_rapidsms" / ".venv"
    workdir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))

    @classmethod
    def bounded(cls, **changes: object) -> Config:
        """Small enough for CI: load, crash and peer in a few minutes (outage adds about a minute)."""
        values: dict[str, object] = {"requests": 300, "kills": 4, "drain_timeout": 240.0, "outage_lead": 5.0}
        values.update(changes)
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class Experiment:
    name: str
    load: LoadResult
    findings: Findings
    drain_seconds: float
    backlog_left: dict[str, int]
    pipeline_seconds: float  # first request sent -> last message processed and its pages in the outbox
    sms_seconds: float  # first request sent -> last SMS handed to the fake gateway
    notes: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def pipeline_rate(self) -> float:
        return self.load.accepted / self.pipeline_seconds if self.pipeline_seconds > 0 else math.nan


def _finish(
    name: str,
    service: Service,
    loads: list[LoadResult],
    drain_timeout: float,
    notes: dict[str, object] | None = None,
) -> Experiment:
    load = loads[-1]
    drain_seconds, left = drain(service.url, drain_timeout)
    findings = check(service.url, service.fake, loads, service.log_text())
    epoch_offset = time.time() - time.perf_counter()  # the database's times are epoch, the client's perf
    done = max(filter(None, (findings.last_processed, findings.last_step_done)), default=0.0) - epoch_offset
    last_sms = max((arrived for arrived, _request in service.fake.arrivals), default=load.ended)
    experiment = Experiment(
        name,
        load,
        findings,
        drain_seconds,
        left,
        pipeline_seconds=max(done, load.ended) - load.started,
        sms_seconds=max(last_sms, load.ended) - load.started,
        notes=notes or {},
    )
    experiment.problems = findings.problems()
    if findings.gave_up:
        experiment.problems.append(f"{findings.gave_up} webhook(s) never accepted by the service")
    if any(v for k, v in left.items() if k != "outbox later"):
        experiment.problems.append(f"the workers did not drain within {drain_timeout:g} s: {left}")
    if load.client_errors():
        experiment.problems.append(f"{load.client_errors()} 4xx answer(s) to genuinely signed webhooks")
    return experiment


def _service(config: Config, name: str, provider_ms: float = 0.0) -> Service:
    workdir = config.workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    return Service(
        workdir,
        f"{config.database_prefix}_{name}",
        web_workers=config.web_workers,
        threads=config.threads,
        scheduler_workers=config.scheduler_workers,
        provider_ms=provider_ms,
    )


def _warm_up(service: Service, config: Config) -> LoadResult:
    warm = deliver(service.base, alert_webhooks(WARM_UP, config.seed + 1000, "SMW"), concurrency=4)
    drain(service.url, 60)
    service.fake.arrivals.clear()  # the pipeline's time counts from the measured load only
    return warm


def run_load(config: Config) -> Experiment:
    """Full speed, closed loop; nothing may fail."""
    with _service(config, "load") as service:
        warm = _warm_up(service, config)
        load = deliver(
            service.base, alert_webhooks(config.requests, config.seed), concurrency=config.concurrency
        )
        experiment = _finish("load", service, [warm, load], config.drain_timeout)
    for what, count in (("5xx", load.server_errors()), ("connection error", load.connection_errors())):
        if count:
            experiment.problems.append(f"{count} {what}(s) under load")
    return experiment


def run_paced(config: Config, rate: float) -> Experiment:
    """The same requests paced at `rate` (the peer's full speed): does the whole pipeline keep up with it?

    The closed-loop run above measures something stricter: the webhooks answer faster than the peer's, so
    a backlog builds during the load and its drain counts against the pipeline. Here every message's lag
    (stored -> processed, its pages in the outbox) shows whether it keeps pace or falls behind.
    """
    with _service(config, "paced") as service:
        warm = _warm_up(service, config)
        load = deliver(
            service.base,
            alert_webhooks(config.requests, config.seed),
            concurrency=config.concurrency,
            rate=rate,
        )
        experiment = _finish("paced at the peer's rate", service, [warm, load], config.drain_timeout)
        experiment.notes.update(processing_lag(service.url, since=load.started))
        experiment.notes["offered /s"] = round(rate, 1)
    for what, count in (("5xx", load.server_errors()), ("connection error", load.connection_errors())):
        if count:
            experiment.problems.append(f"{count} {what}(s) under load")
    return experiment


def processing_lag(url: str, since: float) -> dict[str, float]:
    """Seconds from a message's arrival to its processing: median, 95th percentile, worst (measured load)."""
    import psycopg

    epoch_offset = time.time() - time.perf_counter()
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.95, 1.0]) WITHIN GROUP "
            "(ORDER BY extract(epoch FROM processed_at - received_at)) FROM inbound_messages "
            "WHERE received_at >= to_timestamp(%s)",
            (since + epoch_offset,),
        ).fetchone()
    p50, p95, worst = row[0] if row and row[0] else (math.nan, math.nan, math.nan)
    return {"lag p50 s": round(p50, 3), "lag p95 s": round(p95, 3), "lag max s": round(worst, 3)}


def run_crash(config: Config) -> Experiment:
    """The same load while web and scheduler workers are killed -9 at random moments."""
    with _service(config, "crash", provider_ms=config.crash_provider_ms) as service:
        warm = _warm_up(service, config)
        rate = config.crash_rate or config.requests / (2.0 * config.kills + 2.0)
        with Chaos(service, config.kills, config.seed) as chaos:
            load = deliver(
                service.base,
                alert_webhooks(config.requests, config.seed + 1),
                concurrency=config.concurrency,
                rate=rate,
            )
            # Kills left over land while the workers still process the backlog: random points too.
            wait_for(lambda: len(chaos.kills) >= config.kills, timeout=config.kills * 3.0)
        # An interrupted send is re-queued when its lease (escalation/dispatcher.py SEND_LEASE) runs out.
        notes: dict[str, object] = {
            "paced rate /s": round(rate, 1),
            "kills": len(chaos.kills),
            "web kills": sum(k.target == "web" for k in chaos.kills),
            "scheduler kills": sum(k.target == "scheduler" for k in chaos.kills),
            "scheduler restarts": chaos.restarts,
            "kills during the load": sum(k.at <= load.ended for k in chaos.kills),
        }
        experiment = _finish("crash", service, [warm, load], config.drain_timeout, notes)
        experiment.notes["sends cut off before their body arrived"] = experiment.findings.cut_off_at_gateway
    if load.server_errors():
        experiment.problems.append(f"{load.server_errors()} 5xx answer(s) while workers were killed")
    return experiment


def _ancestors() -> set[int]:
    """This process and its parents (a pytest running this soak is not another suite)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def others_busy() -> list[str]:
    """Commands of other suites or benchmarks that use the shared PostgreSQL server right now."""
    mine = _ancestors()
    busy = []
    for pattern in BUSY_PATTERNS:
        found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout
        for line in found.splitlines():
            pid, _, command = line.partition(" ")
            if int(pid) not in mine and not command.startswith("pgrep"):
                busy.append(line)
    return busy


def cluster_version() -> str:
    return sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]


def pg_ctl(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster_version(), "main", action],
        check=True,
        capture_output=True,
    )


def pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0


def ensure_postgresql_running() -> None:
    """Start the server unless it answers; wait until it accepts connections."""
    if not pg_ready():
        pg_ctl("start")
    if not wait_for(pg_ready, timeout=60):
        raise RuntimeError("PostgreSQL did not come back within 60 s after the outage")


class OutageRefused(RuntimeError):
    """Another suite or benchmark uses the shared server: stopping it would break their run."""


def run_outage(config: Config, force: bool = False) -> Experiment:
    """Paced load; PostgreSQL stops for `outage_seconds` and starts again; the client retries like Twilio."""
    busy = others_busy()
    if busy and not force:
        raise OutageRefused("PostgreSQL is in use by: " + "; ".join(busy[:5]))
    rate = config.outage_rate or config.requests / (config.outage_lead + config.outage_seconds + 20.0)
    with _service(config, "outage") as service:
        warm = _warm_up(service, config)
        assert service.scheduler is not None
        worker_pids = service.scheduler.pids()
        result: list[LoadResult] = []
        client = threading.Thread(
            target=lambda: result.append(
                deliver(
                    service.base,
                    alert_webhooks(config.requests, config.seed + 2),
                    concurrency=config.concurrency,
                    rate=rate,
                    give_up_after=config.outage_seconds + 300.0,
                )
            ),
            name="outage-client",
        )
        client.start()
        time.sleep(config.outage_lead)
        stopped = started = ready = math.nan
        try:
            stopped = time.perf_counter()
            pg_ctl("stop")
            time.sleep(max(0.0, config.outage_seconds - (time.perf_counter() - stopped)))
        finally:
            started = time.perf_counter()
            ensure_postgresql_running()
            ready = time.perf_counter()
        client.join()
        load = result[0]
        accepted_after = [
            a.ended
            for d in load.deliveries
            for a in d.attempts
            if a.started >= started and 200 <= a.status < 300
        ]
        recovered = min(accepted_after, default=math.nan)
        window = (stopped - 0.5, (recovered if not math.isnan(recovered) else ready) + 0.5)
        died = [pid for pid in worker_pids if pid not in service.scheduler.pids()]
        for slot in service.scheduler.dead():  # a worker that died is a finding; bring it back to drain
            service.scheduler.restart(slot)
        notes: dict[str, object] = {
            "paced rate /s": round(rate, 1),
            "outage s": round(started - stopped, 1),
            "5xx during the outage": load.server_errors(window),
            "5xx outside the outage": load.server_errors() - load.server_errors(window),
            "connection errors": load.connection_errors(),
            "webhooks retried": load.retried(),
            "server ready after start s": round(ready - started, 1),
            "first 2xx after start s": round(recovered - started, 1),
            "scheduler workers that died": len(died),
        }
        experiment = _finish("outage", service, [warm, load], config.drain_timeout, notes)
        # The outage's backlog was cleared (its last SMS handed to the gateway) this long after the start.
        last_sms = max((arrived for arrived, _request in service.fake.arrivals), default=math.nan)
        experiment.notes["last SMS after start s"] = round(last_sms - started, 1)
    if notes["5xx outside the outage"]:
        experiment.problems.append(f"{notes['5xx outside the outage']} 5xx answer(s) outside the outage")
    if load.connection_errors():
        experiment.problems.append(f"{load.connection_errors()} connection error(s): gunicorn went away")
    if died:
        experiment.problems.append(f"{len(died)} scheduler worker(s) died during the outage")
    if not notes["5xx during the outage"]:
        experiment.problems.append("no 5xx during the outage: the webhook cannot have stored those messages")
    return experiment


# --- the peer -----------------------------------------------------------------------------------------------


PEER_REQUIREMENTS = ("rapidsms==2.2.0", "django>=5.1,<5.2", "psycopg2-binary", "gunicorn")


def ensure_peer_venv(venv: Path) -> Path:
    """The peer's own virtual environment (RapidSMS 2.2 supports Django 4.2 to 5.1), created once."""
    python = venv / "bin" / "python"
    if not (venv / "bin" / "gunicorn").exists():
        interpreter = shutil.which("python3.11") or sys.executable
        subprocess.run([interpreter, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS], check=True)
    return venv


@dataclass
class PeerRun:
    load: LoadResult
    incoming: int
    outgoing: int
    problems: list[str]


def run_peer(config: Config) -> PeerRun:
    """RapidSMS 2.2 under the same gunicorn settings, on PostgreSQL, with the same requests."""
    import psycopg

    from bench.bench_webhooks import drop_postgresql_database, postgresql_database
    from bench.soak_rig import GunicornServer

    venv = ensure_peer_venv(config.peer_venv)
    name = f"{config.database_prefix}_peer"
    url = postgresql_database(name)
    workdir = config.workdir / "peer"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "PEER_DATABASE_URL": url,
        "PYTHONPATH": str(ROOT / "bench"),
        "DJANGO_SETTINGS_MODULE": "peer_rapidsms.settings",
        "LOG_LEVEL": "WARNING",
    }
    try:
        subprocess.run(
            [str(venv / "bin" / "django-admin"), "migrate", "--verbosity", "0"],
            cwd=ROOT / "bench",
            env=env,
            check=True,
        )
        server = GunicornServer(
            "peer_rapidsms.wsgi:application",
            env,
            workdir / "gunicorn.log",
            workers=config.web_workers,
            threads=config.threads,
            gunicorn=venv / "bin" / "gunicorn",
            cwd=ROOT / "bench",
            health_path="/backend/http/",  # 400 without a message: up
        )
        try:
            server.wait_ready()
            path = "/backend/http/"
            warm = alert_webhooks(WARM_UP, config.seed + 1000, "SMW")
            deliver(server.base, warm, concurrency=4, sign=False, url_path=path)
            load = deliver(
                server.base,
                alert_webhooks(config.requests, config.seed),
                concurrency=config.concurrency,
                sign=False,
                url_path=path,
            )
        finally:
            server.stop()
        with psycopg.connect(url, autocommit=True) as connection:
            counts = dict(
                connection.execute("SELECT direction, count(*) FROM messagelog_message GROUP BY 1").fetchall()
            )
    finally:
        drop_postgresql_database(name)
    incoming, outgoing = counts.get("I", 0) - WARM_UP, counts.get("O", 0) - WARM_UP
    problems = []
    if load.accepted != config.requests or incoming != config.requests or outgoing != config.requests:
        problems.append(
            f"peer: {load.accepted} accepted, {incoming} logged in, {outgoing} replies of {config.requests}"
        )
    return PeerRun(load, incoming, outgoing, problems)


# --- reporting ----------------------------------------------------------------------------------------------


def header() -> str:
    return f"{machine()}; {versions()}"


@dataclass
class PeerRound:
    """One round of the side-by-side comparison: ours at full speed, the peer, ours paced at the peer's rate.
    The three run back to back, so that the machine's speed, which drifts from minute to minute on a shared
    VM, is about the same for the three; several rounds show how much the ratio itself moves."""

    ours: Experiment
    peer: PeerRun
    paced: Experiment

    @property
    def pipeline_ratio(self) -> float:
        return self.ours.pipeline_rate / self.peer.load.rate

    @property
    def paced_ratio(self) -> float:
        return self.paced.pipeline_rate / self.peer.load.rate

    def summary(self) -> str:
        paced, peer = self.paced, self.peer
        return (
            f"ours / peer: accepted {self.ours.load.rate / peer.load.rate:.0%}, "
            f"full pipeline {self.pipeline_ratio:.0%} (target >= 100%); "
            f"paced at the peer's {peer.load.rate:.0f}/s: full pipeline {paced.pipeline_rate:.0f} msg/s "
            f"({self.paced_ratio:.0%}), lag p50 {paced.notes['lag p50 s']} s, "
            f"p95 {paced.notes['lag p95 s']} s, max {paced.notes['lag max s']} s"
        )


def run_rounds(config: Config, rounds: int) -> tuple[list[Experiment], list[PeerRound]]:
    """`rounds` of (ours, the peer, ours paced at the peer's rate), each round's three back to back."""
    experiments: list[Experiment] = []
    results: list[PeerRound] = []
    for number in range(1, rounds + 1):
        suffix = f" #{number}" if rounds > 1 else ""
        ours = run_load(config)
        ours.name += suffix
        print(f"  load{suffix}: {ours.load.rate:.0f} req/s", flush=True)
        peer = run_peer(config)
        print(f"  peer{suffix}: {peer.load.rate:.0f} req/s", flush=True)
        paced = run_paced(config, peer.load.rate)
        paced.name += suffix
        print(f"  paced at the peer's rate{suffix}: {paced.notes}", flush=True)
        experiments += [ours, paced]
        results.append(PeerRound(ours, peer, paced))
    return experiments, results


def load_table(experiments: list[Experiment], peers: Sequence[PeerRun] = ()) -> str:
    lines = [
        "| run | requests | accepted | req/s | p50 ms | p95 ms | p99 ms | 5xx | conn. errors "
        "| retried | pipeline msg/s | all SMS out s | incidents | SMS at gateway |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in experiments:
        load, f = e.load, e.findings
        lines.append(
            f"| ours: {e.name} | {len(load.deliveries)} | {load.accepted} | {load.rate:.0f} "
            f"| {load.latency(50):.1f} | {load.latency(95):.1f} | {load.latency(99):.1f} "
            f"| {load.server_errors()} | {load.connection_errors()} | {load.retried()} "
            f"| {e.pipeline_rate:.0f} | {e.sms_seconds:.1f} | {f.incidents} | {f.sms_at_gateway} |"
        )
    for number, peer in enumerate(peers, 1):
        load = peer.load
        name = "RapidSMS 2.2 peer" + (f" #{number}" if len(peers) > 1 else "")
        lines.append(
            f"| {name} | {len(load.deliveries)} | {load.accepted} | {load.rate:.0f} "
            f"| {load.latency(50):.1f} | {load.latency(95):.1f} | {load.latency(99):.1f} "
            f"| {load.server_errors()} | {load.connection_errors()} | {load.retried()} "
            f"| {load.rate:.0f} (inline) | - | - | - ({peer.outgoing} replies stored) |"
        )
    return "\n".join(lines)


def invariants_table(experiments: list[Experiment]) -> str:
    lines = [
        "| run | accepted | stored | lost | stored twice | unprocessed | incidents w/o steps "
        "| incidents w/o page at gateway | pages | page rows twice | duplicate SMS (explained) "
        "| tracebacks |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in experiments:
        f = e.findings
        lines.append(
            f"| {e.name} | {f.accepted} | {f.stored} | {len(f.lost)} | {f.stored_twice} | {f.unprocessed} "
            f"| {len(f.incidents_without_steps)} | {len(f.incidents_without_page_at_gateway)} | {f.pages} "
            f"| {f.step_pages_twice} | {f.duplicates_at_gateway} ({f.duplicates_explained}) "
            f"| {f.log_tracebacks} |"
        )
    return "\n".join(lines)


def report(experiments: list[Experiment], rounds: Sequence[PeerRound] = ()) -> str:
    peers = [r.peer for r in rounds]
    parts = [f"# soak: {header()}", "", load_table(experiments, peers), "", invariants_table(experiments)]
    for e in experiments:
        if e.notes:
            parts += ["", f"{e.name}: " + json.dumps(e.notes)]
        for detail in e.findings.duplicate_details:
            parts.append(f"  {e.name} duplicate: {detail}")
    if rounds:
        parts.append("")
        for number, result in enumerate(rounds, 1):
            parts.append((f"round {number}: " if len(rounds) > 1 else "") + result.summary())
        if len(rounds) > 1:
            parts.append(
                f"median of {len(rounds)} rounds: full pipeline "
                f"{statistics.median(r.pipeline_ratio for r in rounds):.0%} of the peer (target >= 100%), "
                f"paced {statistics.median(r.paced_ratio for r in rounds):.0%} of the peer's rate"
            )
    problems = [f"{e.name}: {p}" for e in experiments for p in e.problems] + [
        p for peer in peers for p in peer.problems
    ]
    parts += ["", "PROBLEMS:" if problems else "all invariants hold", *(f"- {p}" for p in problems)]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["load", "crash", "outage", "peer", "all"])
    parser.add_argument("--requests", type=int, help="webhooks per run (default 2000; 300 with --bounded)")
    parser.add_argument("--bounded", action="store_true", help="the small CI preset")
    parser.add_argument("--concurrency", type=int, help="client threads (default 8)")
    parser.add_argument("--kills", type=int, help="kill -9's in the crash run (default 8; 4 with --bounded)")
    parser.add_argument("--outage-seconds", type=float, help="how long PostgreSQL stays down (default 30)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--force-outage", action="store_true", help="stop PostgreSQL even if other suites are running"
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="peer: rounds of (ours, peer, ours paced), reported with the median",
    )
    args = parser.parse_args()

    changes: dict[str, object] = {"seed": args.seed}
    for option in ("requests", "concurrency", "kills", "outage_seconds"):
        if getattr(args, option) is not None:
            changes[option] = getattr(args, option)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    changes["workdir"] = workdir
    config = Config.bounded(**changes) if args.bounded else Config(**changes)  # type: ignore[arg-type]
    print(f"# soak {args.command}: {header()}; work dir {workdir}", flush=True)

    experiments: list[Experiment] = []
    rounds: list[PeerRound] = []
    skipped: list[str] = []
    try:
        if args.command in ("peer", "all"):
            experiments, rounds = run_rounds(config, args.rounds if args.command == "peer" else 1)
        elif args.command == "load":
            experiments.append(run_load(config))
            print(f"  load: {experiments[-1].load.rate:.0f} req/s", flush=True)
        if args.command in ("crash", "all"):
            experiments.append(run_crash(config))
            print(f"  crash: {experiments[-1].notes}", flush=True)
        if args.command in ("outage", "all"):
            try:
                experiments.append(run_outage(config, force=args.force_outage))
                print(f"  outage: {experiments[-1].notes}", flush=True)
            except OutageRefused as refused:
                skipped.append(f"outage skipped: {refused}")
    finally:
        if args.command in ("outage", "all"):
            ensure_postgresql_running()
    failed = any(e.problems for e in experiments) or any(r.peer.problems for r in rounds)
    tracebacks = sum(e.findings.log_tracebacks for e in experiments if e.name != "outage")
    if args.keep or failed or tracebacks:
        print(f"logs kept in {workdir}", flush=True)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(report(experiments, rounds))
    for line in skipped:
        print(line)
    sys.exit(1 if failed or (skipped and args.command == "outage") else 0)


if __name__ == "__main__":
    main()
