"""The escalation engine on a real database: pages on time, by policy, and stops on acknowledgement."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from alerts import incidents
from alerts.models import (
    DutyPeriod,
    EscalationPolicy,
    EscalationStep,
    Incident,
    IncidentEvent,
    OutboundMessage,
)
from alerts.states import IncidentStatus, StepState
from escalation.dispatcher import DispatchStats
from escalation.engine import _Run, plan_escalations, responders_on_duty, run_due_steps, sweep
from escalation.gateways import ConsoleGateway
from tests import factories
from tests.conftest import T0, postgresql_only


def _pages(session):
    return session.scalars(
        select(OutboundMessage).where(OutboundMessage.purpose == "page").order_by(OutboundMessage.id)
    ).all()


def _paged_ids(session):
    return sorted(m.responder_id for m in _pages(session))


def test_a_new_critical_incident_pages_tiers_1_and_2_at_once(session, database):
    net = factories.network(session)
    incident = factories.incident(session, net["zone"])
    session.commit()
    sweep(database.sessionmaker, T0, "w1")
    session.commit()  # end the read snapshot: see what the workers committed
    session.expire_all()
    expected = sorted(r.id for r in net["tier1"] + net["tier2"])
    assert _paged_ids(session) == expected
    page = _pages(session)[0]
    assert f"OK {incident.number}" in page.body
    assert "Kitchanga" in page.body
    assert page.segments == 1
    assert incident.policy_snapshot[0]["tier"] == 1


def test_tier_3_is_paged_after_10_minutes_without_acknowledgement(session, database):
    net = factories.network(session)
    factories.incident(session, net["zone"])
    session.commit()
    sweep(database.sessionmaker, T0, "w1")
    session.commit()  # end the read snapshot: see what the workers committed
    session.expire_all()
    sweep(database.sessionmaker, T0 + timedelta(minutes=9), "w1")
    session.commit()  # end the read snapshot: see what the workers committed
    session.expire_all()
    assert net["tier3"][0].id not in _paged_ids(session)
    sweep(database.sessionmaker, T0 + timedelta(minutes=10), "w1")
    session.commit()  # end the read snapshot: see what the workers committed
    session.expire_all()
    assert net["tier3"][0].id in _paged_ids(session)


def test_an_acknowledgement_stops_the_escalation(session, database):
    net = factories.network(session)
    incident = factories.incident(session, net["zone"])
    session.commit()
    sweep(database.sessionmaker, T0, "w1")
    session.commit()  # end the read snapshot: see what the workers committed
    session.expire_all()
    first_round = len(_pages(session))
    incidents.acknowledge(session, incident, T0 + timedelta(minutes=2), "test", net["tier1"][0])
    session.commit()
    sweep(database.sessionmaker, T0 + timedelta(hours=2), "w1")
    session.commit()  # end the read snapshot: see what the workers committed
    session.expire_all()
    assert len(_pages(session)) == first_round
    pending = session.scalars(select(EscalationStep).where(EscalationStep.state == StepState.PENDING)).all()
    assert pending == []


def test_the_others_who_were_paged_are_told_who_has_it(session, database):
    net = factories.network(session)
    incident = factories.incident(session, net["zone"])
    session.commit()
    sweep(database.sessionmaker, T0, "w1")
    session.commit()  # end the read snapshot: see what the workers committed
    session.expire_all()
    taker = net["tier1"][0]
    incidents.acknowledge(session, incident, T0 + timedelta(minutes=1), "test", taker)
    session.commit()
    told = session.scalars(
        select(OutboundMessage).where(OutboundMessage.idempotency_key.like("acked:%"))
    ).all()
    assert sorted(m.responder_id for m in told) == sorted(r.id for r in net["tier1"][1:] + net["tier2"])
    assert all(taker.name in m.body for m in told)


def test_nobody_on_duty_in_a_tier_falls_through_to_the_next(session, database):
    net = factories.network(session)
    for responder in net["tier1"]:
        responder.duty_periods.append(
            DutyPeriod(starts_at=T0 + timedelta(hours=8), ends_at=T0 + timedelta(hours=16))
        )
    session.add(EscalationPolicy(zone_id=net["zone"].id, severity="high", steps=[{"tier": 1}]))
    factories.incident(session, net["zone"], severity="high", category="looting")
    session.commit()
    sweep(database.sessionmaker, T0, "w1")
    session.commit()  # end the read snapshot: see what the workers committed
    session.expire_all()
    assert _paged_ids(session) == [net["tier2"][0].id]
    kinds = session.scalars(select(IncidentEvent.kind)).all()
    assert "nobody_on_duty" in kinds


def test_a_zone_policy_wins_over_the_default_and_is_snapshotted(session, database):
    net = factories.network(session)
    policy = EscalationPolicy(
        zone_id=net["zone"].id, severity="critical", steps=[{"tier": 2, "after_minutes": 5}]
    )
    session.add(policy)
    incident = factories.incident(session, net["zone"])
    session.commit()
    plan_escalations(session, T0)
    policy.steps = [{"tier": 1}]
    session.commit()
    steps = session.scalars(select(EscalationStep)).all()
    assert [(s.tier, s.due_at) for s in steps] == [(2, T0 + timedelta(minutes=5))]
    assert incident.policy_snapshot == [
        {"after_minutes": 5, "tier": 2, "repeat_every_minutes": 0, "repeat_times": 0, "quorum": 1}
    ]


def test_an_upgrade_restarts_escalation_under_the_stricter_policy(session, database):
    net = factories.network(session)
    incident = factories.incident(session, net["zone"], severity="medium", category="threat")
    session.commit()
    sweep(database.sessionmaker, T0, "w1")
    session.commit()  # end the read snapshot: see what the workers committed
    session.expire_all()
    incident.severity, incident.category = "critical", "killing"
    incident.escalation_generation += 1
    incident.policy_snapshot = None
    session.commit()
    sweep(database.sessionmaker, T0 + timedelta(minutes=3), "w1")
    session.commit()  # end the read snapshot: see what the workers committed
    session.expire_all()
    old = session.scalars(select(EscalationStep).where(EscalationStep.generation == 0)).all()
    assert all(s.state in (StepState.DONE, StepState.CANCELLED) for s in old)
    new_pages = [m for m in _pages(session) if m.created_at == T0 + timedelta(minutes=3)]
    assert {m.responder_id for m in new_pages} >= {r.id for r in net["tier2"]}


def test_a_step_runs_once_even_when_two_workers_sweep(session, database):
    net = factories.network(session)
    factories.incident(session, net["zone"])
    session.commit()
    plan_escalations(session, T0)
    with database.session() as other:
        first = run_due_steps(session, T0, "w1")
        second = run_due_steps(other, T0, "w2")
    assert len(first) == 2
    assert second == []
    assert len(_pages(session)) == 3


def test_a_quorum_step_keeps_paging_until_enough_responders_answer(session, database):
    net = factories.network(session)
    session.add(
        EscalationPolicy(
            zone_id=net["zone"].id,
            severity="critical",
            steps=[{"tier": 1, "quorum": 2, "repeat_every_minutes": 5, "repeat_times": 2}],
        )
    )
    incident = factories.incident(session, net["zone"])
    session.commit()
    sweep(database.sessionmaker, T0, "w1")
    session.commit()  # end the read snapshot: see what the workers committed
    session.expire_all()
    incidents.acknowledge(session, incident, T0 + timedelta(minutes=1), "a", net["tier1"][0])
    session.commit()
    sweep(database.sessionmaker, T0 + timedelta(minutes=5), "w1")
    session.commit()  # end the read snapshot: see what the workers committed
    session.expire_all()
    repeat_pages = [m for m in _pages(session) if m.created_at == T0 + timedelta(minutes=5)]
    assert [m.responder_id for m in repeat_pages] == [net["tier1"][1].id]
    incidents.acknowledge(session, incident, T0 + timedelta(minutes=6), "b", net["tier1"][1])
    session.commit()
    sweep(database.sessionmaker, T0 + timedelta(minutes=10), "w1")
    session.commit()  # end the read snapshot: see what the workers committed
    session.expire_all()
    assert not [m for m in _pages(session) if m.created_at == T0 + timedelta(minutes=10)]
    assert incident.status == IncidentStatus.ACKNOWLEDGED


@postgresql_only
def test_two_workers_on_one_postgresql_never_send_a_step_twice(session, database_url):
    import threading

    from alerts.db import Database

    net = factories.network(session)
    for n in range(40):
        factories.incident(session, net["zone"], lat=-1.0 - n / 10, place_name=f"Village {n}")
    session.commit()
    workers = [Database(database_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    ran: dict[int, int] = {}
    errors: list[BaseException] = []

    def work(index):
        try:
            for minute in (0, 10, 15, 25, 30, 40, 45, 55):
                barrier.wait()  # both workers start each round together
                ran[index] = ran.get(index, 0) + sweep(
                    workers[index].sessionmaker, T0 + timedelta(minutes=minute), f"w{index}", batch=7
                )
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # A step whose incident the other worker held was left for the next tick: this is that tick.
    ran[0] += sweep(workers[0].sessionmaker, T0 + timedelta(minutes=55), "w0")
    for worker in workers:
        worker.dispose()
    assert errors == []
    session.commit()
    steps = session.scalars(select(EscalationStep)).all()
    assert all(s.state == StepState.DONE for s in steps)
    assert ran[0] + ran[1] == len(steps)
    assert ran[0] > 0
    assert ran[1] > 0
    pages = _pages(session)
    keys = [(m.escalation_step_id, m.responder_id) for m in pages]
    assert len(keys) == len(set(keys))
    per_step = {"1": 2, "2": 1, "3": 1}
    assert len(pages) == sum(per_step[str(s.tier)] for s in steps)


def test_a_run_locks_its_incidents_and_reads_their_acknowledgements_once(session, database):
    net = factories.network(session)
    for n in range(6):
        factories.incident(session, net["zone"], lat=-1.0 - n / 10, place_name=f"Village {n}")
    session.commit()
    with database.session() as planner:
        plan_escalations(planner, T0)
    acker = net["tier1"][0]
    with database.session() as other:  # one incident acknowledged by a tier-1 responder before the run
        first = other.scalars(select(Incident).order_by(Incident.id)).first()
        incidents.record(other, first, "acknowledged", "by a colleague", T0, responder=acker.id)
        other.commit()
    statements: list[str] = []

    def remember(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", remember)
    try:
        with database.session() as worker:
            results = run_due_steps(worker, T0, "w1")
    finally:
        event.remove(database.engine, "before_cursor_execute", remember)

    assert len(results) == 12  # tiers 1 and 2 of six incidents
    assert sum("FROM incidents" in s and "incident_events" not in s for s in statements) == 1
    assert sum("FROM incident_events" in s for s in statements) == 1
    session.commit()
    session.expire_all()
    pages = _pages(session)
    paged = {(m.incident_id, m.responder_id) for m in pages}
    assert (first.id, acker.id) not in paged  # who acknowledged is not paged for that incident...
    assert sum(1 for i, r in paged if r == acker.id) == 5  # ...but for each of the five others


@postgresql_only
def test_a_step_whose_incident_another_worker_holds_goes_back_to_the_queue(session, database):
    net = factories.network(session)
    busy = factories.incident(session, net["zone"])
    free = factories.incident(session, net["zone"], lat=-1.6, place_name="Elsewhere")
    session.commit()
    with database.session() as planner:
        plan_escalations(planner, T0)
    with database.session() as holder:
        holder.execute(select(Incident).where(Incident.id == busy.id).with_for_update(key_share=True))
        with database.session() as worker:
            results = run_due_steps(worker, T0, "w1")
        holder.rollback()

    assert len(results) == 2  # tiers 1 and 2 of the free incident only
    session.commit()
    steps = session.scalars(select(EscalationStep).where(EscalationStep.incident_id == busy.id)).all()
    assert {(s.state, s.claimed_by) for s in steps if s.due_at <= T0} == {(StepState.PENDING, None)}
    with database.session() as worker:
        assert len(run_due_steps(worker, T0, "w1")) == 2  # the next run has it
    session.commit()
    assert {m.incident_id for m in _pages(session)} == {busy.id, free.id}


def test_a_wake_up_during_a_pump_asks_it_for_another_pass_and_an_idle_one_runs_it_now(app, monkeypatch):
    """A burst of webhooks notifies once per message: while the pump runs, each only asks it for one more
    pass (asking the scheduler would have it skip the run and log a warning each time)."""
    engine = app.extensions["alerts_engine"]
    scheduler = engine.build_scheduler(tick_seconds=3600)
    scheduler.start(paused=True)
    try:
        planned = scheduler.get_job("pump").next_run_time
        passes: list[int] = []

        def process_inbound() -> int:
            passes.append(len(passes))
            if len(passes) == 1:
                engine.wake()  # a NOTIFY arriving mid-pass
            return 0

        monkeypatch.setattr(engine, "process_inbound", process_inbound)
        engine.pump()
        assert passes == [0, 1]
        assert scheduler.get_job("pump").next_run_time == planned

        engine.wake()  # nothing running: the next run is now, not at the next tick
        assert scheduler.get_job("pump").next_run_time < planned
    finally:
        scheduler.shutdown(wait=False)


class HeldGateway(ConsoleGateway):
    """A provider that answers only when the test lets it."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.all_sent = threading.Event()
        self.expected = expected

    def send(self, to, body, *, reference):
        self.entered.set()
        assert self.release.wait(timeout=30)
        result = super().send(to, body, reference=reference)
        if len(self.sent) >= self.expected:
            self.all_sent.set()
        return result


def _engine_with_held_provider(app, session):
    """A new critical incident, and the app's engine at T0 sending through a provider the test holds."""
    net = factories.network(session)
    factories.incident(session, net["zone"])
    session.commit()
    engine = app.extensions["alerts_engine"]
    gateway = HeldGateway(expected=len(net["tier1"] + net["tier2"]))
    engine.gateways = [gateway]
    engine.clock = lambda: T0
    return engine, gateway


def test_with_the_scheduler_running_pages_are_sent_beside_the_pump_not_inside_it(app, session):
    engine, gateway = _engine_with_held_provider(app, session)
    scheduler = engine.build_scheduler(tick_seconds=3600)
    scheduler.start()
    try:
        engine.pump()  # writes the pages, wakes the dispatch job, does not wait for the provider
        assert gateway.entered.wait(timeout=30)  # the dispatch job is sending, held by the provider
        assert gateway.sent == []
        gateway.release.set()
        assert gateway.all_sent.wait(timeout=30)
    finally:
        scheduler.shutdown(wait=True)
    session.commit()
    session.expire_all()
    assert sorted(m.state for m in _pages(session)) == ["sent"] * gateway.expected
    assert len({m.to for m in gateway.sent}) == gateway.expected  # each responder once


@pytest.mark.parametrize("embedded", [False, True])
def test_the_default_batch_fits_the_database_and_where_the_scheduler_runs(app, embedded):
    from escalation.scheduler import default_batch_size

    app.config["SCHEDULER_ENABLED"] = embedded
    size = default_batch_size(app)
    if not app.extensions["alerts_db"].is_postgresql:
        assert size == 1  # SQLite's single writer: a webhook never queues behind a batch
    else:
        assert size == (10 if embedded else 200)


def test_a_worker_told_to_stop_before_it_started_does_not_start(app):
    """SIGTERM can arrive between the handler's installation and the start: a blocking start must not hang."""
    engine = app.extensions["alerts_engine"]
    engine.shutdown()
    engine.start(blocking=True)  # returns at once instead of running forever
    assert engine.scheduler is None or not engine.scheduler.running


def test_a_worker_told_to_stop_while_its_scheduler_starts_does_not_hang(app):
    """SIGTERM after start() checked for it but before the scheduler counts as running (CI saw a worker
    ignore its SIGTERM this way): the blocking start returns."""
    from apscheduler.executors.pool import ThreadPoolExecutor

    engine = app.extensions["alerts_engine"]
    scheduler = engine.build_scheduler(blocking=True, tick_seconds=3600)

    class StoppedWhileStarting(ThreadPoolExecutor):
        def start(self, scheduler, alias):  # executors start inside scheduler.start(), before "running"
            engine.shutdown()
            super().start(scheduler, alias)

    scheduler.add_executor(StoppedWhileStarting(), "stopped-while-starting")
    runner = threading.Thread(target=engine.start, kwargs={"blocking": True}, daemon=True)
    runner.start()
    runner.join(timeout=30)
    assert not runner.is_alive(), "the blocking start never returned"
    assert not scheduler.running


def test_a_job_failing_every_tick_is_logged_once_a_minute_with_a_count_and_its_recovery(caplog):
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent

    from escalation.scheduler import JobFailures

    now = [0.0]
    failures = JobFailures(every=60.0, clock=lambda: now[0])

    def fail(kind: type[Exception] = ConnectionError) -> None:
        failures.failed(JobExecutionEvent(EVENT_JOB_ERROR, "pump", None, T0, exception=kind("server down")))

    with caplog.at_level(logging.WARNING, logger="escalation.scheduler"):
        for second in range(90):  # the database is down for a minute and a half, the job runs every second
            now[0] = float(second)
            fail()
        fail(ValueError)  # another failure is news: logged at once
        now[0] = 91.0
        failures.executed(JobExecutionEvent(EVENT_JOB_EXECUTED, "pump", None, T0))
        failures.executed(JobExecutionEvent(EVENT_JOB_EXECUTED, "pump", None, T0))

    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "job pump failed: ConnectionError('server down')",
        "job pump failed: ConnectionError('server down') (59 more failures since the last report)",
        "job pump failed: ValueError('server down') (29 more failures since the last report)",
        "job pump runs again after failing with ValueError",
    ]
    assert caplog.records[0].exc_info is not None  # the first report carries the traceback


def test_a_run_pages_the_responders_one_query_per_zone_and_tier_would_find(session):
    """A run reads the responders of its zones once (with their zones and rotas) instead of once per zone and
    tier; who is on duty for each incident and tier is what the per-zone query answers."""

    zones = [factories.zone(session, name=name) for name in ("Masisi", "Rutshuru", "Beni")]
    masisi, rutshuru, beni = zones

    def off_now():
        return DutyPeriod(starts_at=T0 + timedelta(hours=8), ends_at=T0 + timedelta(hours=16))

    on_now = DutyPeriod(starts_at=T0 - timedelta(hours=1), ends_at=T0 + timedelta(hours=1))
    factories.responder(session, 1, [masisi])
    factories.responder(session, 1, [masisi, rutshuru])  # two zones
    factories.responder(session, 1, [rutshuru], duty_periods=[off_now()])
    factories.responder(session, 2, [rutshuru], duty_periods=[on_now])
    factories.responder(session, 2, [masisi], active=False)
    factories.responder(session, 2, [beni])  # a zone no incident of the run is in
    factories.responder(session, 3, [])
    factories.responder(session, 3, [beni], duty_periods=[off_now()])
    factories.responder(session, 1, [])  # no zone at all
    incidents_ = [
        factories.incident(session, masisi),
        factories.incident(session, rutshuru),
        factories.incident(session, None),  # pages its tier in every zone
    ]
    session.commit()

    for incident in incidents_:
        run = _Run(session, T0, {}, {}, incidents={i.id: i for i in incidents_[:2]})
        for tier in (1, 2, 3):
            expected = [r.id for r in responders_on_duty(session, incident, tier, T0)]
            assert [r.id for r in run.on_duty(incident, tier)] == expected, (incident.zone_id, tier)
    assert run.on_duty(incidents_[0], 1)  # the comparison is not between empty lists only

    statements: list[str] = []

    def count(_connection, _cursor, statement, *_args):
        statements.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        run = _Run(session, T0, {}, {}, incidents={i.id: i for i in incidents_[:2]})
        for incident in incidents_[:2]:
            for tier in (1, 2, 3):
                run.on_duty(incident, tier)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 3  # the zones' members, the responders, their rotas (12 before)


class FakeTime:
    """The engine's monotonic clock and its pause: a pause moves the clock on, and is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.pauses.append(round(seconds, 6))
        self.now += seconds


def _gathering_engine(app, monkeypatch, batches: list[int], gather: float = 0.5):
    """The app's engine with a fake clock, whose passes over the inbound messages find `batches` in turn
    (a pass that finds some takes 0.1 s; one that finds some while more arrive is woken meanwhile)."""
    engine = app.extensions["alerts_engine"]
    clock = FakeTime()
    engine.gather, engine.monotonic, engine.pause = gather, clock.monotonic, clock.pause
    found = iter(batches)

    def process_inbound() -> int:
        count = next(found, 0)
        engine._saw_due(count)  # what the pass's read of due messages reports
        if count:
            clock.now += 0.1
        if count and count < engine.per_pass:
            engine.wake()  # another webhook's NOTIFY, as in a burst
        return count

    monkeypatch.setattr(engine, "process_inbound", process_inbound)
    monkeypatch.setattr(engine, "escalate", lambda: 0)
    return engine, clock


def test_in_a_burst_passes_start_the_gather_apart_and_the_first_message_goes_at_once(app, monkeypatch):
    engine, clock = _gathering_engine(app, monkeypatch, [2, 30, 40, 0])
    assert engine.pump() == 72
    # The first pass after a quiet spell at once; each next one 0.5 s after the previous one began.
    assert clock.pauses == [0.4, 0.4, 0.4]


def test_alerts_arriving_one_at_a_time_are_never_held(app, monkeypatch):
    """5 alerts a second against passes of tens of milliseconds: each pass finds one, none waits (the
    escalation benchmark's end-to-end latency)."""
    engine, clock = _gathering_engine(app, monkeypatch, [1, 1, 1, 2, 1, 0])
    assert engine.pump() == 6
    assert clock.pauses == [0.4]  # only after the pass that found two


def test_a_pass_that_found_a_full_page_of_due_messages_is_followed_at_once(app, monkeypatch):
    per_pass = app.extensions["alerts_engine"].per_pass
    engine, clock = _gathering_engine(app, monkeypatch, [per_pass, per_pass, 5, 0])
    assert engine.pump() == 2 * per_pass + 5
    assert clock.pauses == [0.4]  # only before the pass after the one that emptied the backlog


def test_a_pass_that_found_nothing_delays_nobody(app, monkeypatch):
    engine, clock = _gathering_engine(app, monkeypatch, [3, 0, 2, 0])
    engine.pump()  # 3 at once, then 0.4 s later a pass that finds nothing (it began at 1000.5)
    assert clock.pauses == [0.4]
    clock.now += 0.1  # the next messages: 0.6 s after the last pass that found messages began
    assert engine.pump() == 2
    assert clock.pauses == [0.4, 0.4]  # at once; only the pass after them gathered


def test_a_full_page_of_due_messages_is_a_backlog_even_where_another_worker_claimed_them(app, monkeypatch):
    """Two workers read the same page of due messages; the one that claims few must not wait as if the burst
    were over."""
    engine, clock = _gathering_engine(app, monkeypatch, [])
    passes = iter([(engine.per_pass, 3), (engine.per_pass, 1), (2, 2), (0, 0)])  # (due, claimed)

    def process_inbound() -> int:
        due, claimed = next(passes)
        engine._saw_due(due)
        return claimed

    monkeypatch.setattr(engine, "process_inbound", process_inbound)
    assert engine.pump() == 6
    assert clock.pauses == []  # no wait after the full pages, and none before the first pass


def test_a_full_page_that_other_workers_hold_entirely_ends_the_pump(app, monkeypatch):
    """A third worker that finds every due row claimed by the other two goes back to waiting for a wake-up
    instead of reading the same page again and again."""
    engine, _clock = _gathering_engine(app, monkeypatch, [])
    reads: list[int] = []

    def process_inbound() -> int:
        reads.append(1)
        engine._saw_due(engine.per_pass)
        return 0

    monkeypatch.setattr(engine, "process_inbound", process_inbound)
    assert engine.pump() == 0
    assert reads == [1]


def test_a_pass_with_no_wake_up_and_no_backlog_is_the_last(app, monkeypatch):
    engine, clock = _gathering_engine(app, monkeypatch, [])
    passes = iter([7, 7])
    monkeypatch.setattr(engine, "process_inbound", lambda: next(passes))
    assert engine.pump() == 7  # nothing woke it: the messages it took were all there were
    assert clock.pauses == []


def test_without_a_gather_passes_follow_each_other_at_once(app, monkeypatch):
    engine, clock = _gathering_engine(app, monkeypatch, [2, 30, 40, 0], gather=0)
    assert engine.pump() == 72
    assert clock.pauses == []


@pytest.mark.parametrize("app_config", [{"INBOUND_GATHER_MS": 250}, {"INBOUND_GATHER_MS": 0}])
def test_the_gather_comes_from_inbound_gather_ms(app, app_config):
    assert app.extensions["alerts_engine"].gather == app_config["INBOUND_GATHER_MS"] / 1000


def test_a_shutdown_ends_a_gather_at_once_and_the_pump_with_it(app, monkeypatch):
    engine = app.extensions["alerts_engine"]
    engine.gather = 3600.0  # a real pause: only the shutdown can end it within the test's patience
    passes: list[int] = []
    first_pass_done = threading.Event()

    def process_inbound() -> int:
        passes.append(1)
        engine.wake()
        first_pass_done.set()
        return 2  # a burst: the next pass gathers

    monkeypatch.setattr(engine, "process_inbound", process_inbound)
    monkeypatch.setattr(engine, "escalate", lambda: 0)
    pump = threading.Thread(target=engine.pump)
    pump.start()
    try:
        assert first_pass_done.wait(timeout=10)
        engine.shutdown()
        pump.join(timeout=10)
        assert not pump.is_alive()
        assert passes == [1]  # it did not take another pass on its way out
    finally:
        engine._stopping.set()
        pump.join(timeout=10)


def test_a_tick_while_a_pump_or_a_dispatch_runs_returns_at_once(app, monkeypatch):
    """A pump gathering a burst runs for seconds; the interval's ticks meanwhile start a second instance (the
    scheduler would otherwise log a skipped run each second), which must not run a pass of its own."""
    engine = app.extensions["alerts_engine"]
    inside, release = threading.Event(), threading.Event()
    passes: list[str] = []

    def process_inbound() -> int:
        passes.append("pass")
        inside.set()
        assert release.wait(timeout=30)
        return 0

    def dispatch():
        passes.append("dispatch")
        return DispatchStats()

    monkeypatch.setattr(engine, "process_inbound", process_inbound)
    monkeypatch.setattr(engine, "escalate", lambda: 0)
    monkeypatch.setattr(engine, "dispatch", dispatch)
    running = threading.Thread(target=engine.pump)
    running.start()
    try:
        assert inside.wait(timeout=30)
        assert engine.pump() == 0  # the tick: no pass of its own
        assert passes == ["pass"]
    finally:
        release.set()
        running.join(timeout=30)
    engine._dispatch_lock.acquire()  # as while a dispatch runs
    try:
        assert engine.dispatch_job().attempted == 0
        assert passes == ["pass"]
    finally:
        engine._dispatch_lock.release()
    engine.dispatch_job()
    assert passes == ["pass", "dispatch"]
    scheduler = engine.build_scheduler(tick_seconds=3600)
    assert {job.id: job.max_instances for job in scheduler.get_jobs()} == {"pump": 2, "dispatch": 2}


def test_on_shutdown_a_worker_waits_for_the_sends_it_claimed_to_be_recorded(app, session):
    """SIGTERM mid-dispatch: what was claimed is sent and recorded before the process exits, not left
    `sending` until its lease runs out (a page two minutes late after a restart)."""
    engine, gateway = _engine_with_held_provider(app, session)
    sweep(engine.database.sessionmaker, T0, "w1")  # the pages are in the outbox
    dispatching = threading.Thread(target=engine.dispatch_job)
    dispatching.start()
    try:
        assert gateway.entered.wait(timeout=30)  # claimed, the provider holding the first send
        engine.shutdown()
        assert engine.wait_for_jobs(timeout=0.05) is False  # still sending
        gateway.release.set()
        assert engine.wait_for_jobs(timeout=30) is True
    finally:
        gateway.release.set()
        dispatching.join(timeout=30)
    session.commit()
    session.expire_all()
    assert sorted(m.state for m in _pages(session)) == ["sent"] * gateway.expected
