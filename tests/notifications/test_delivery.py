"""What the senders deliver, through real servers: every message of a sample
ESCO (statements with their PDF attached, the operators' offline report),
texts through the Twilio-format gateway (an outage retried, a refusal a dead
letter), SMTP refusals and broken templates as dead letters, quiet hours, a
stopping sender handing back what it has not started, and the metrics."""

import asyncio
import re
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from aiosmtpd.smtp import Envelope, Session
from prometheus_client import REGISTRY

from flows import factories as f
from flows.emulator import MeterConfig
from flows.notifications.catcher import MaildirHandler
from flows.notifications.templates import Templates
from tests.notifications.conftest import FAST, email_job, home_of, rules_job, sms_job
from tests.support.factory import sample_esco
from tests.support.mailserver import SmtpServer
from tests.worker.conftest import new_esco, register, serials, wait_for


def outbox(stack, esco: str) -> list[tuple]:
    with stack.sql() as conn:
        return conn.execute("SELECT rule, channel, recipient, status, attempts, last_error, provider_message_id"
                            " FROM flows.notification_outbox WHERE esco = %s ORDER BY rule, channel, recipient",
                            (esco,)).fetchall()


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_sample_escos_messages_are_delivered_with_their_attachments(stack, running_worker, smtp_server):
    with stack.sql() as conn:
        sample = sample_esco(conn)
    sent_before = metric("flows_notifications_sent_total", channel="email", rule="statement_ready")
    await running_worker(stack.worker_url, jobs=[email_job(stack.worker_url, smtp_server)])
    code = sample.code.lower()
    await wait_for(lambda: all(status in ("sent", "dead") for _, channel, _, status, *_ in outbox(stack, sample.esco)
                               if channel == "email"), timeout=30)
    rows = outbox(stack, sample.esco)
    assert {(rule, channel, recipient, status) for rule, channel, recipient, status, *_ in rows} == {
        ("low_balance", "email", f"olive@{code}.example", "sent"),
        ("payment_due", "email", f"olive@{code}.example", "sent"),
        ("payment_failed", "email", f"olive@{code}.example", "sent"),
        ("topup_applied", "email", f"olive@{code}.example", "sent"),
        ("meter_offline", "email", f"ops@{code}.example", "sent"),
        ("meter_offline", "sms", "+447700900123", "dead"),  # the sample's dead letter
        ("statement_ready", "email", f"larry@{code}.example", "sent"),
        ("statement_ready", "email", f"olive@{code}.example", "sent"),
        ("statement_ready", "email", f"tina@{code}.example", "sent"),
    }
    statement = [m for m in smtp_server.mail(f"olive@{code}.example") if "statement" in m.subject][0]
    attachment = next(statement.message.iter_attachments())
    assert re.fullmatch(rf"statement-{sample.code}-\d{{6}}\.pdf", attachment.get_filename())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content().startswith(b"%PDF-")
    with stack.sql() as conn:
        stored = conn.execute("SELECT content FROM billing.invoice_documents WHERE invoice_id = %s",
                              (sample.billing.invoice,)).fetchone()[0]
    assert attachment.get_content() == bytes(stored), "the statement's own PDF"
    assert statement.detail()["html"].count("Olive Owner") == 1
    offline = smtp_server.mail(f"ops@{code}.example")[0]
    assert offline.subject == "2 meters not reached for over 3 hours"  # the third never answered: since just now
    statements = sum(1 for rule, *_ in rows if rule == "statement_ready")
    await wait_for(lambda: metric("flows_notifications_sent_total", channel="email", rule="statement_ready")
                   == sent_before + statements, timeout=5)  # counted just after the record commits
    assert metric("flows_notifications_record_window_seconds_count", channel="email") >= 5


async def test_texts_through_the_gateway_outage_retried_refusal_dead(stack, fleet_of, running_worker, sms_server):
    esco, code = new_esco(stack)
    fleet = await fleet_of(*(MeterConfig(serial=s, balance=Decimal("30")) for s in serials(2, 311)))
    ids = register(stack, fleet, esco)
    with stack.sql() as conn:
        olive = home_of(conn, esco, ids[fleet.meters[0].serial], f"olive@{code.lower()}.example", "07700 900311")
        f.set_notification_preferences(conn, olive, channels=["sms"], sms_quiet_hours=("00:00", "00:00"))
    sms_server.outage(2, to="+447700900311")  # the next two texts to Olive get 503
    await running_worker(stack.worker_url, jobs=[rules_job(stack.worker_url), sms_job(stack.worker_url, sms_server)])
    with stack.sql() as conn:
        f.record_states(conn, [{"meter_id": ids[fleet.meters[0].serial], "observed_at": _now(conn),
                                "balance": "6.5"}])
    texts = await wait_for(lambda: sms_server.texts("+447700900311"), timeout=20)
    assert texts[0]["body"] == (f"ESCO {code}: your electricity credit is £6.50 (meter {fleet.meters[0].serial}), "
                                "below £15.00. Please top up soon.")
    await asyncio.sleep(1)
    (rule, channel, recipient, status, attempts, error, provider_id), = outbox(stack, esco)
    assert (status, attempts, provider_id) == ("sent", 3, texts[0]["sid"])
    assert len(sms_server.texts("+447700900311")) == 1
    assert "HTTP 503, Twilio error 20500" in error

    sms_server.outage(1, status=400, to="+447700900311")  # the gateway refuses the next one: a dead letter
    with stack.sql() as conn:
        f.record_states(conn, [{"meter_id": ids[fleet.meters[0].serial], "observed_at": _now(conn), "balance": "40"}])
        f.record_states(conn, [{"meter_id": ids[fleet.meters[0].serial], "observed_at": _now(conn), "balance": "2"}])

    def dead():
        return [row for row in outbox(stack, esco) if row[3] == "dead"]

    (*_, attempts, error, _), = await wait_for(dead, timeout=20)
    assert attempts == 1 and error.startswith("HTTP 400, Twilio error 20429"), error


async def test_texts_wait_for_the_end_of_the_quiet_hours(stack, running_worker):
    esco, code = new_esco(stack)
    with stack.sql() as conn:
        meter = f.add_meter(conn, esco).id
        olive = home_of(conn, esco, meter, f"olive@{code.lower()}.example", "07700 900312")
        # quiet hours from a minute ago to a minute from now: whenever this runs, a text waits
        now = conn.execute("SELECT (now() AT TIME ZONE 'Europe/London')::time").fetchone()[0]
        f.set_notification_preferences(conn, olive, channels=["email", "sms"],
                                       sms_quiet_hours=(_minutes(now, -1), _minutes(now, 1)))
        f.record_states(conn, [{"meter_id": meter, "observed_at": _now(conn), "balance": "1"}])
        f.queue_notifications(conn)
        rows = dict(conn.execute("SELECT channel, send_after - created_at FROM flows.notification_outbox"
                                 " WHERE esco = %s", (esco,)).fetchall())
    assert rows["email"].total_seconds() == 0
    assert 0 < rows["sms"].total_seconds() <= 120, "the text waits for the end of the quiet hours"


async def test_smtp_refusals_and_broken_templates_are_dead_letters(stack, running_worker, tmp_path):
    class Refusing(MaildirHandler):
        async def handle_RCPT(self, server, session: Session, envelope: Envelope, address: str, rcpt_options):
            if address.startswith("gone@"):
                return "550 5.1.1 <gone@...>: mailbox unavailable"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    smtp = SmtpServer(tmp_path / "mail", Refusing(tmp_path / "mail" / "inbox"))
    smtp.start()
    try:
        esco, code = new_esco(stack)
        with stack.sql() as conn:
            meter = f.add_meter(conn, esco).id
            home_of(conn, esco, meter, f"gone@{code.lower()}.example")
            f.record_states(conn, [{"meter_id": meter, "observed_at": _now(conn), "balance": "1"}])
            f.queue_notifications(conn)
        dead_before = metric("flows_notifications_failed_total", channel="email", outcome="dead")
        refused = await running_worker(stack.worker_url, jobs=[email_job(stack.worker_url, smtp)])
        (*_, status, attempts, error, _), = await wait_for(
            lambda: [r for r in outbox(stack, esco) if r[3] == "dead"], timeout=20)
        assert (status, attempts) == ("dead", 1) and "550" in error and "mailbox unavailable" in error
        await wait_for(lambda: metric("flows_notifications_failed_total", channel="email", outcome="dead")
                       == dead_before + 1, timeout=5)  # counted just after the record commits
    finally:
        smtp.stop()
    # (its sender stops with it: else it would claim the next message and retry it against a server now gone)
    refused.stop()
    await asyncio.wait_for(refused.task, 10)

    # A template that is missing: the message is a dead letter naming it, not a blank email.
    esco, code = new_esco(stack)
    with stack.sql() as conn:
        meter = f.add_meter(conn, esco).id
        home_of(conn, esco, meter, f"olive@{code.lower()}.example")
        f.record_states(conn, [{"meter_id": meter, "observed_at": _now(conn), "balance": "1"}])
        f.queue_notifications(conn)
    smtp = SmtpServer(tmp_path / "mail2")
    smtp.start()
    try:
        await running_worker(stack.worker_url, jobs=[email_job(stack.worker_url, smtp, Templates(tmp_path))])
        (*_, status, attempts, error, _), = await wait_for(
            lambda: [r for r in outbox(stack, esco) if r[3] == "dead"], timeout=20)
        assert error == f"no template low_balance.txt in {tmp_path}" and smtp.mail() == []
    finally:
        smtp.stop()


async def test_a_stopping_sender_hands_back_what_it_has_not_started(stack, running_worker, smtp_server):
    esco, code = new_esco(stack)
    with stack.sql() as conn:
        meters = [f.add_meter(conn, esco).id for _ in range(3)]
        f.set_notification_settings(conn, esco, offline_hours=1,
                                    operator_emails=[f"ops{k}@{code.lower()}.example" for k in range(40)])
        f.record_states(conn, [{"meter_id": m, "observed_at": _now(conn) - timedelta(hours=2), "health": "healthy"}
                               for m in meters])
        f.queue_notifications(conn)  # 40 operators told that 3 meters are offline: 40 emails
    one_at_a_time = replace(FAST, concurrency=1)
    worker = await running_worker(stack.worker_url, jobs=[email_job(stack.worker_url, smtp_server,
                                                                    config=one_at_a_time)])
    await wait_for(lambda: len(smtp_server.mail()) >= 1, timeout=20)
    worker.stop()
    await wait_for(lambda: not [r for r in outbox(stack, esco) if r[3] == "sending"], timeout=20)
    rows = outbox(stack, esco)
    sent = [r for r in rows if r[3] == "sent"]
    assert len(sent) == len(smtp_server.mail()), "every email that went out is recorded sent"
    assert all(r[3] in ("sent", "pending") for r in rows) and any(r[3] == "pending" for r in rows)
    assert all(r[4] == 0 for r in rows if r[3] == "pending"), "handed back: the attempt not counted"


def _now(conn):
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def _minutes(at, delta: int) -> str:
    total = (at.hour * 60 + at.minute + delta) % (24 * 60)
    return f"{total // 60:02d}:{total % 60:02d}"
