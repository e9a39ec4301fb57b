"""The SQLite spool: webhooks store into it without the database's write lock, the engine moves every
message into the database once (a retry, a crash between the move and the spool's delete, a row that
cannot be moved), and nothing is lost on the way."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from alerts.db import make_engine
from alerts.models import Incident
from alerts.spool import Spool, spooled_messages, wanted
from alerts.states import InboundState
from tests.conftest import ON_POSTGRESQL, make_test_app
from tests.webhooks.conftest import (
    AT_KEY,
    FOCAL_POINT_PHONE,
    TWILIO_TOKEN,
    at_sms_form,
    count_processing,
    post_at,
    post_twilio,
    process_stored,
    twilio_sms_form,
)
from tests.webhooks.test_twilio import ALERT_TEXT, EMPTY_TWIML, SMS, inbound_messages, register_focal_point

pytestmark = pytest.mark.skipif(ON_POSTGRESQL, reason="the spool is for SQLite databases")


@pytest.fixture
def app_config() -> dict[str, object]:
    return {"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "AT_WEBHOOK_KEY": AT_KEY, "INBOUND_SPOOL": "auto"}


@pytest.fixture
def spool(app) -> Iterator[Spool]:
    spool = app.extensions["alerts_spool"]
    yield spool
    with spool.engine.begin() as connection:
        connection.execute(spooled_messages.delete())
    spool.dispose()


def spooled_rows(spool: Spool) -> list:
    with spool.engine.execution_options(sqlite_begin="DEFERRED").connect() as connection:
        return list(connection.execute(select(spooled_messages)))


def test_the_spool_is_used_for_a_sqlite_file_only_unless_told():
    assert wanted("auto", "sqlite:////srv/alerts/alerts.db")
    assert wanted("", "sqlite:////srv/alerts/alerts.db")
    assert not wanted("auto", "postgresql://postgres@127.0.0.1/alerts")
    assert not wanted("auto", "sqlite://")
    assert not wanted("0", "sqlite:////srv/alerts/alerts.db")
    with pytest.raises(ValueError, match="not a SQLite file"):
        wanted("1", "postgresql://postgres@127.0.0.1/alerts")
    with pytest.raises(ValueError, match="auto, 1 or 0"):
        wanted("sometimes", "sqlite:////srv/alerts/alerts.db")


def test_a_webhook_spools_the_message_and_the_engine_moves_and_processes_it(app, client, session, spool):
    register_focal_point(session)
    form = twilio_sms_form(body=ALERT_TEXT)

    response = post_twilio(client, SMS, form)

    assert response.status_code == 200
    assert response.text == EMPTY_TWIML
    assert inbound_messages(session) == []
    assert spool.waiting() == 1
    [spooled_at] = [row.received_at for row in spooled_rows(spool)]

    assert process_stored(app) == 1

    assert spool.waiting() == 0
    [message] = inbound_messages(session)
    assert (message.provider, message.provider_message_id) == ("twilio", form["MessageSid"])
    assert (message.sender, message.text, message.raw) == (FOCAL_POINT_PHONE, ALERT_TEXT, form)
    assert message.received_at.isoformat() == spooled_at  # when the webhook received it, not when moved
    assert message.state == InboundState.PROCESSED
    assert session.scalar(select(func.count()).select_from(Incident)) == 1
    session.commit()


def test_africastalking_messages_are_spooled_too(app, client, session, spool):
    response = post_at(
        client, "/webhooks/africastalking/sms", at_sms_form(message_id="ATXid_9", text="bonjour")
    )

    assert response.status_code == 200
    assert spool.waiting() == 1
    process_stored(app)
    [message] = inbound_messages(session)
    assert (message.provider, message.provider_message_id, message.text) == (
        "africastalking",
        "ATXid_9",
        "bonjour",
    )


def test_a_retry_is_stored_once_whether_it_comes_before_or_after_the_move(
    app, client, session, spool, monkeypatch
):
    calls = count_processing(monkeypatch)
    form = twilio_sms_form(sender="+243815550099")

    first = post_twilio(client, SMS, form)
    retry = post_twilio(client, SMS, form)
    assert spool.waiting() == 1
    process_stored(app)
    late_retry = post_twilio(client, SMS, form)  # the provider did not hear the first answer
    process_stored(app)

    assert [r.status_code for r in (first, retry, late_retry)] == [200, 200, 200]
    assert len(inbound_messages(session)) == 1
    assert len(calls) == 1
    assert spool.waiting() == 0


def test_a_crash_between_the_move_and_the_spools_delete_stores_nothing_twice(
    app, client, session, spool, monkeypatch
):
    for n in range(3):
        post_twilio(client, SMS, twilio_sms_form(sid=f"SM{n:032d}", sender="+243815550099"))

    def crash(_ids):
        raise OSError("the process was killed here")

    monkeypatch.setattr(spool, "forget", crash)
    with pytest.raises(OSError, match="killed"):
        process_stored(app)
    assert len(inbound_messages(session)) == 3  # committed in the database, still in the spool
    assert spool.waiting() == 3

    monkeypatch.undo()
    process_stored(app)

    messages = inbound_messages(session)
    assert sorted(m.provider_message_id for m in messages) == [f"SM{n:032d}" for n in range(3)]
    assert {m.state for m in messages} == {InboundState.UNVERIFIED}
    assert spool.waiting() == 0


def test_a_message_that_cannot_be_moved_stays_spooled_and_is_logged_without_its_content(
    app, client, session, spool, caplog
):
    post_twilio(client, SMS, twilio_sms_form(sid="SM" + "1" * 32, sender="+243815550099"))
    with spool.engine.begin() as connection:
        broken = connection.execute(
            insert(spooled_messages).returning(spooled_messages.c.id),
            {
                "provider": "twilio",
                "provider_message_id": "SM" + "2" * 32,
                "channel": "sms",
                "sender": "+243815550098",
                "recipient": "+243990000001",
                "text": "Secret texte",
                "received_at": "yesterday",  # no time at all: cannot be stored
                "raw": "{}",
            },
        ).scalar_one()
    post_twilio(client, SMS, twilio_sms_form(sid="SM" + "3" * 32, sender="+243815550099"))

    with caplog.at_level(logging.INFO):
        process_stored(app)
        process_stored(app)  # tried again, still kept

    assert [m.provider_message_id for m in inbound_messages(session)] == ["SM" + "1" * 32, "SM" + "3" * 32]
    assert spool.waiting() == 1
    assert f"spooled message {broken} could not be moved into the database (ValueError)" in caplog.text
    assert "Secret texte" not in caplog.text
    assert "+243815550098" not in caplog.text


def test_the_webhook_does_not_wait_for_the_databases_write_lock(app, client, session, spool):
    answered: list[int] = []
    with app.extensions["alerts_db"].engine.connect() as writer:
        writer.begin()  # BEGIN IMMEDIATE: the database's write lock (a batch being processed, say)
        webhook = threading.Thread(
            target=lambda: answered.append(post_twilio(client, SMS, twilio_sms_form()).status_code)
        )
        webhook.start()
        webhook.join(timeout=10)
        done_while_locked = not webhook.is_alive()
        writer.rollback()
    webhook.join()

    assert done_while_locked
    assert answered == [200]
    assert spool.waiting() == 1


def test_a_receipt_answered_in_twiml_is_processed_in_the_database_directly(
    app, database_url, tmp_path, session, spool
):
    register_focal_point(session)
    inline = make_test_app(
        database_url,
        tmp_path / "inline",
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        INBOUND_SPOOL="auto",
        TWILIO_REPLY_WITH_RECEIPT=True,
    )

    response = post_twilio(inline.test_client(), SMS, twilio_sms_form(body=ALERT_TEXT))

    assert "<Message>" in response.text
    assert spool.waiting() == 0
    [message] = inbound_messages(session)
    assert message.state == InboundState.PROCESSED
    inline.extensions["alerts_spool"].dispose()
    inline.extensions["alerts_db"].dispose()


def test_without_the_spool_messages_go_straight_into_the_database(app, database_url, tmp_path, session):
    direct = make_test_app(
        database_url, tmp_path / "direct", TWILIO_AUTH_TOKEN=TWILIO_TOKEN, INBOUND_SPOOL="0"
    )

    post_twilio(direct.test_client(), SMS, twilio_sms_form())

    assert direct.extensions["alerts_spool"] is None
    assert len(inbound_messages(session)) == 1
    direct.extensions["alerts_db"].dispose()


def test_a_database_that_fails_stops_the_move_once_and_keeps_every_message(
    app, client, session, spool, caplog
):
    for n in range(3):
        post_twilio(client, SMS, twilio_sms_form(sid=f"SM{n:032d}", sender="+243815550099"))
    url = app.extensions["alerts_db"].engine.url
    impatient = make_engine(url.render_as_string())  # gives up at once when the database is locked
    event.listen(
        impatient, "connect", lambda connection, _record: connection.execute("PRAGMA busy_timeout=0")
    )
    holder = sqlite3.connect(url.database, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another program holds the database (SQLite's lock, no turnstile)
        with caplog.at_level(logging.INFO), pytest.raises(OperationalError, match="locked"):
            spool.move(sessionmaker(impatient))
    finally:
        holder.rollback()
        holder.close()
        impatient.dispose()

    assert spool.waiting() == 3
    assert "could not be moved" not in caplog.text  # one error for the job, not one per message
    assert inbound_messages(session) == []
    process_stored(app)
    assert len(inbound_messages(session)) == 3
    assert spool.waiting() == 0


def test_healthz_reports_the_spools_backlog(client, spool):
    post_twilio(client, SMS, twilio_sms_form())

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "spooled": 1}
