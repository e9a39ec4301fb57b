"""Inbound messages are stored once, failures are recorded without the SMS, and due messages are retried."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from alerts.inbound import (
    InboundForm,
    backoff,
    describe_error,
    due_for_retry,
    mark_failed,
    retry_unprocessed,
    store_inbound,
)
from alerts.models import FocalPoint, InboundMessage
from alerts.states import InboundState
from tests.conftest import T0

PHONE = "+243815550001"
TEXT = "attaque a Kiwanja ce matin"


def form(provider_message_id: str = "SM1", **overrides) -> InboundForm:
    fields = {
        "provider": "twilio",
        "provider_message_id": provider_message_id,
        "sender": PHONE,
        "recipient": "+243990000001",
        "text": TEXT,
        "received_at": T0,
        "raw": {"MessageSid": provider_message_id, "Body": TEXT},
    }
    return InboundForm(**{**fields, **overrides})


def stored(session, message_id: int) -> InboundMessage:
    """The message as committed; the read transaction is ended (on SQLite it holds the write lock)."""
    session.expire_all()
    message = session.get(InboundMessage, message_id)
    session.commit()
    return message


def count(session) -> int:
    total = session.scalar(select(func.count()).select_from(InboundMessage))
    session.commit()
    return total


def mark_processed(session, message_id, now):
    """A fake pipeline: what the real one does to the message's state, and nothing else."""
    message = session.get(InboundMessage, message_id)
    message.state = InboundState.PROCESSED
    message.processed_at = now
    session.commit()


def test_a_new_message_is_stored_and_committed(session, database):
    message_id, created = store_inbound(session, form())

    assert created is True
    with database.session() as other:
        message = other.get(InboundMessage, message_id)
        assert (message.sender, message.text, message.state) == (PHONE, TEXT, InboundState.RECEIVED)
        assert message.received_at == T0
        assert message.raw["MessageSid"] == "SM1"


def test_the_same_provider_message_twice_is_a_no_op_returning_the_first(session):
    first_id, _ = store_inbound(session, form())
    second_id, created = store_inbound(session, form(text="a retry with another text"))

    assert (second_id, created) == (first_id, False)
    assert count(session) == 1
    assert stored(session, first_id).text == TEXT


def test_the_same_id_from_another_provider_is_another_message(session):
    store_inbound(session, form())
    _, created = store_inbound(session, form(provider="africastalking"))

    assert created is True
    assert count(session) == 2


def test_concurrent_deliveries_of_one_message_store_it_once(database, session):
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def deliver() -> None:
        try:
            with database.session() as own:
                start.wait()
                results.append(store_inbound(own, form("SM-race")))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(created for _, created in results) == [False] * 5 + [True]
    assert len({message_id for message_id, _ in results}) == 1
    assert count(session) == 1


def test_a_naive_received_time_is_refused(session):
    with pytest.raises(ValueError, match="timezone-aware"):
        store_inbound(session, form(received_at=T0.replace(tzinfo=None)))


@pytest.mark.parametrize(
    ("attempts", "minutes"), [(1, 1), (2, 2), (3, 4), (4, 8), (6, 32), (7, 60), (20, 60), (200, 60)]
)
def test_backoff_doubles_from_one_minute_up_to_an_hour(attempts, minutes):
    assert backoff(attempts) == timedelta(minutes=minutes)


def test_a_failure_is_recorded_with_the_next_attempt_and_backs_off(session):
    message_id, _ = store_inbound(session, form())

    mark_failed(session, message_id, "RuntimeError: boom", T0)
    message = stored(session, message_id)
    assert (message.state, message.attempts, message.error) == (InboundState.FAILED, 1, "RuntimeError: boom")
    assert message.next_attempt_at == T0 + timedelta(minutes=1)

    mark_failed(session, message_id, "RuntimeError: boom", T0)
    assert stored(session, message_id).next_attempt_at == T0 + timedelta(minutes=2)


def test_a_failure_never_keeps_the_sms_text_or_a_phone_number(session):
    message_id, _ = store_inbound(session, form())

    mark_failed(session, message_id, f"ValueError: cannot parse '{TEXT}' from {PHONE}", T0)

    error = stored(session, message_id).error
    assert TEXT not in error
    assert PHONE not in error
    assert error.startswith("ValueError: cannot parse")


def test_a_failure_after_processing_completed_keeps_the_outcome(session):
    message_id, _ = store_inbound(session, form())
    mark_processed(session, message_id, T0)

    mark_failed(session, message_id, "RuntimeError: late", T0)

    message = stored(session, message_id)
    assert (message.state, message.attempts, message.error) == (InboundState.PROCESSED, 0, None)


def test_a_database_error_is_described_without_its_parameters(session):
    session.add_all([FocalPoint(name="A", phone=PHONE), FocalPoint(name="B", phone=PHONE)])
    with pytest.raises(IntegrityError) as caught:
        session.commit()
    session.rollback()

    description = describe_error(caught.value)
    assert description.startswith("IntegrityError: ")
    assert PHONE not in description
    assert "\n" not in description


def test_due_messages_are_unprocessed_or_failed_and_past_their_next_attempt_oldest_first(session):
    grace = timedelta(minutes=1)
    old, _ = store_inbound(session, form("old", received_at=T0 - timedelta(minutes=10)))
    older, _ = store_inbound(session, form("older", received_at=T0 - timedelta(minutes=20)))
    store_inbound(session, form("fresh", received_at=T0 - timedelta(seconds=30)))
    done, _ = store_inbound(session, form("done", received_at=T0 - timedelta(minutes=30)))
    mark_processed(session, done, T0)
    failed_due, _ = store_inbound(session, form("failed-due", received_at=T0 - timedelta(minutes=5)))
    mark_failed(session, failed_due, "RuntimeError", T0 - timedelta(minutes=2))
    failed_later, _ = store_inbound(session, form("failed-later", received_at=T0 - timedelta(minutes=5)))
    mark_failed(session, failed_later, "RuntimeError", T0)

    assert due_for_retry(session, T0, grace=grace) == [older, old, failed_due]
    assert due_for_retry(session, T0, limit=2, grace=grace) == [older, old]


def test_the_retry_job_processes_due_messages_each_in_its_own_session(database, session):
    first, _ = store_inbound(session, form("first", received_at=T0 - timedelta(minutes=10)))
    second, _ = store_inbound(session, form("second", received_at=T0 - timedelta(minutes=5)))
    seen: list[int] = []

    def process(own_session, message_id, now):
        assert own_session is not session
        seen.append(message_id)
        mark_processed(own_session, message_id, now)

    assert retry_unprocessed(database, T0, process) == 2
    assert seen == [first, second]
    assert stored(session, first).state == InboundState.PROCESSED
    assert retry_unprocessed(database, T0, process) == 0


def test_the_retry_job_records_a_failure_logs_it_and_goes_on(database, session, caplog):
    broken, _ = store_inbound(session, form("broken", received_at=T0 - timedelta(minutes=10)))
    fine, _ = store_inbound(session, form("fine", received_at=T0 - timedelta(minutes=5)))

    def process(own_session, message_id, now):
        if message_id == broken:
            own_session.get(InboundMessage, message_id).text = "half-done work that must be rolled back"
            raise KeyError(f"no keyword for {TEXT!r} from {PHONE}")
        mark_processed(own_session, message_id, now)

    with caplog.at_level(logging.INFO):
        assert retry_unprocessed(database, T0, process) == 1

    message = stored(session, broken)
    assert (message.state, message.attempts, message.text) == (InboundState.FAILED, 1, TEXT)
    assert message.error.startswith("KeyError")
    assert message.next_attempt_at == T0 + timedelta(minutes=1)
    assert stored(session, fine).state == InboundState.PROCESSED
    assert f"inbound message {broken}" in caplog.text
    assert "KeyError" in caplog.text
    assert TEXT not in caplog.text
    assert PHONE not in caplog.text


def test_a_failed_message_is_retried_once_its_backoff_has_passed(database, session):
    message_id, _ = store_inbound(session, form(received_at=T0 - timedelta(minutes=10)))
    mark_failed(session, message_id, "RuntimeError: boom", T0)

    assert retry_unprocessed(database, T0 + timedelta(seconds=59), mark_processed) == 0
    assert retry_unprocessed(database, T0 + timedelta(minutes=1), mark_processed) == 1
    assert stored(session, message_id).state == InboundState.PROCESSED


def test_the_retry_job_tells_the_page_of_messages_it_found_due(database, session):
    """What the engine reads to tell a backlog (a full page) from the end of a burst."""
    ids = [
        store_inbound(session, form(f"SM{i}", received_at=T0 - timedelta(minutes=10 - i)))[0]
        for i in range(3)
    ]
    pages: list[list[int]] = []
    assert retry_unprocessed(database, T0, mark_processed, limit=2, on_due=pages.append) == 2
    assert retry_unprocessed(database, T0, mark_processed, limit=2, on_due=pages.append) == 1
    assert pages == [ids[:2], ids[2:]]
