"""A row locked for a read-check-write is checked as it is now, not as this session read it earlier.

SQLAlchemy keeps an object's loaded values when a later query (even SELECT ... FOR UPDATE) returns its row
again; the lock is worthless if the check then reads the old values. Found by the soak: a batch read an
incident as a candidate, another worker planned its escalation, the batch upgraded it from the stale copy,
and the upgrade never cleared the plan: the incident was never paged.
"""

from __future__ import annotations

from sqlalchemy import update

from alerts import outbox
from alerts.models import Incident, OutboundMessage
from alerts.pipeline import PipelineSettings, _Batch
from alerts.states import OutboundState
from tests import factories
from tests.conftest import T0, postgresql_only


def test_an_inline_receipt_taken_by_the_dispatcher_meanwhile_is_not_sent_again(database):
    with database.session() as session:
        queued = outbox.enqueue(
            session,
            recipient="+243810000001",
            body="Recu: incident 1",
            purpose="receipt",
            idempotency_key="reply:stale-1",
            now=T0,
        ).message
        session.commit()  # the webhook's session keeps the object (expire_on_commit=False)
        assert queued.state == OutboundState.QUEUED
        with database.session() as dispatcher:  # another worker claims it between the two
            dispatcher.execute(
                update(OutboundMessage)
                .where(OutboundMessage.id == queued.id)
                .values(state=OutboundState.SENDING)
            )
            dispatcher.commit()

        assert outbox.mark_sent_inline(session, queued.id, provider="twilio", now=T0) is False
    with database.read_sessionmaker() as session:
        assert session.get(OutboundMessage, queued.id).state == OutboundState.SENDING


@postgresql_only
def test_a_batch_locks_a_candidate_incident_with_the_values_another_worker_committed_since(database):
    with database.session() as session:
        incident_id = factories.incident(session, None).id
        session.commit()
    with database.session() as session:
        batch = _Batch(session, T0, PipelineSettings(), [], {}, {}, None, {})  # type: ignore[arg-type]
        read_earlier = session.get(Incident, incident_id)  # as matching reads candidates, without a lock
        assert read_earlier.policy_snapshot is None
        with database.session() as planner:  # the engine plans its escalation meanwhile
            planner.execute(
                update(Incident).where(Incident.id == incident_id).values(policy_snapshot=[{"tier": 1}])
            )
            planner.commit()

        locked = batch.lock_incident(incident_id)

        assert locked is read_earlier
        assert locked.policy_snapshot == [{"tier": 1}]
        session.rollback()
