"""The notification parts one by one: every rule has its templates and they
render what the rules really queue; amounts in pounds; SMTP URLs; what a
worker without a mail server does; the jobs' calls are versioned and granted."""

import inspect
import re
from datetime import timedelta
from email.parser import BytesParser
from email.policy import default

import pytest

from flows import factories as f
from flows.errors import ConfigError
from flows.notifications import queries
from flows.notifications.config import SenderConfig, SmtpTarget
from flows.notifications.jobs import SenderJob, Unconfigured, email_job, sms_job
from flows.notifications.mail import build_email
from flows.notifications.queries import Claimed
from flows.notifications.templates import SMS_MAX, TemplateFailed, Templates, gbp
from flows.settings import Settings
from flows.worker.jobs import JobContext
from tests.support.factory import sample_esco


def test_amounts_in_pounds():
    assert gbp("12.3") == "£12.30" and gbp("-3.2") == "-£3.20" and gbp("1234.5") == "£1,234.50"
    with pytest.raises(TemplateFailed, match="not an amount"):
        gbp("twelve")


def test_smtp_urls():
    assert SmtpTarget.parse("smtp://127.0.0.1:1025") == SmtpTarget("127.0.0.1", 1025)
    relay = SmtpTarget.parse("smtp://user%40x:p%2Fw@relay.example:587?starttls=true")
    assert (relay.username, relay.password, relay.start_tls, relay.use_tls) == ("user@x", "p/w", True, False)
    assert SmtpTarget.parse("smtps://relay.example") == SmtpTarget("relay.example", 465, use_tls=True)
    assert str(relay) == "smtp://relay.example:587", "never the password"
    with pytest.raises(ConfigError, match="not an SMTP URL"):
        SmtpTarget.parse("http://relay.example")
    with pytest.raises(ConfigError, match="at least twice its send timeout"):
        SenderConfig(lease=timedelta(seconds=30), send_timeout=30)


def test_a_worker_without_a_mail_server_keeps_its_messages_waiting(tmp_path, monkeypatch):
    monkeypatch.delenv("FLOWS_SMTP_URL", raising=False)
    monkeypatch.delenv("FLOWS_SMS_URL", raising=False)
    context = JobContext("postgresql://nowhere/flows", "w", Settings(home=tmp_path))
    assert isinstance(email_job(context), Unconfigured) and isinstance(sms_job(context), Unconfigured)
    monkeypatch.setenv("FLOWS_SMTP_URL", "smtp://relay.example:25")
    monkeypatch.setenv("FLOWS_SMS_URL", "https://AC123:secret@api.twilio.com")
    assert isinstance(email_job(context), SenderJob) and isinstance(sms_job(context), SenderJob)
    monkeypatch.setenv("FLOWS_SMS_URL", "https://api.twilio.com")
    with pytest.raises(ConfigError, match="account SID and auth token"):
        sms_job(context)


def test_every_rule_has_its_templates_and_they_render_what_the_rules_queue(db):
    sample = sample_esco(db)
    # a rollout that ended with a failure, for the operators' message about it
    db.execute("UPDATE flows.meter_commands SET status = 'failed', finished_at = now(), last_error = 'NAK 5'"
               " WHERE id = %s", (sample.commands["tariff.0"],))
    db.execute("UPDATE flows.meter_commands SET status = 'done', finished_at = now() WHERE id = %s",
               (sample.commands["tariff.1"],))
    f.queue_notifications(db)
    rules = {rule for (rule,) in db.execute("SELECT rule FROM flows.notification_rules")}
    rows = db.execute("SELECT id, rule, channel, recipient, template, parameters FROM flows.notification_outbox"
                      " WHERE esco = %s", (sample.esco,)).fetchall()
    assert {r[1] for r in rows} == rules, "the sample exercises every rule"
    templates = Templates()
    for id, rule, channel, recipient, template, parameters in rows:
        assert template == rule
        message = Claimed(id, sample.code, rule, channel, recipient, template, parameters, None, 1, 8, None, None,
                          None)
        email = BytesParser(policy=default).parsebytes(
            build_email(message, templates, "Flows <notifications@flows.test>", None).as_bytes())
        assert email["Subject"] and email.get_body(("plain",)).get_content().strip()
        assert email.get_body(("html",)).get_content().startswith("<!DOCTYPE html>")
        assert f"<{id}@flows.test>" == email["Message-ID"]
        text = templates.sms(template, parameters)
        assert 20 < len(text) <= SMS_MAX and "None" not in text
    files = {p.name for p in Templates().directory.iterdir() if not p.name.startswith("_")}
    assert files == {f"{rule}{suffix}" for rule in rules for suffix in (".txt", ".html", ".sms.txt")}


def test_a_template_without_a_subject_line_is_refused(tmp_path):
    (tmp_path / "x.txt").write_text("Hello\n")
    (tmp_path / "x.html").write_text("<p>Hello</p>")
    with pytest.raises(TemplateFailed, match=r"x.txt must start with a 'Subject: \.\.\.' line"):
        Templates(tmp_path).email("x", {})
    (tmp_path / "y.txt").write_text("Subject: {{ missing }}\n")
    with pytest.raises(TemplateFailed, match="'missing' is undefined"):
        Templates(tmp_path).email("y", {})


def test_what_the_jobs_call_is_versioned_and_granted(db):
    called = set(re.findall(r"flows\.(\w+)\(", inspect.getsource(queries)))
    assert called == {"run_notification_rules_v1", "claim_notifications_v1", "record_notification_sent_v1",
                      "record_notification_failed_v1", "release_notifications_v1", "notification_attachment_v1"}
    for name in called:
        granted = db.execute("SELECT bool_and(has_function_privilege('flows_worker', p.oid, 'EXECUTE'))"
                             " FROM pg_proc p WHERE p.pronamespace = 'flows'::regnamespace AND p.proname = %s",
                             (name,)).fetchone()[0]
        assert granted, f"flows.{name} is missing, or flows_worker may not call it"
