"""Notification fixtures: the worker tests' database with its PostgREST, emulated meters and in-process
workers (tests/worker/conftest.py), a real SMTP server and the SMS test gateway, and the notification jobs
set up to react in a fraction of a second."""

import asyncio
from datetime import timedelta

import pytest

from flows import factories as f
from flows.notifications.config import RulesConfig, SenderConfig, SmtpTarget
from flows.notifications.jobs import RulesJob, SenderJob
from flows.notifications.mail import SmtpTransport
from flows.notifications.sms import SmsTransport, TwilioGateway
from flows.notifications.templates import Templates
from tests.support.mailserver import SmsServer, SmtpServer
from tests.worker.conftest import fleet_of, running_worker, stack, wait_for  # noqa: F401 (the worker tests' fixtures)

FAST = SenderConfig(batch=16, concurrency=4, lease=timedelta(seconds=10), poll=0.2,
                    retry_backoff=timedelta(milliseconds=200), send_timeout=2.0)
SENDER = "notifications@flows.test"


@pytest.fixture
def smtp_server(tmp_path):
    server = SmtpServer(tmp_path / "mail")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sms_server():
    server = SmsServer()
    server.start()
    yield server
    server.stop()


def rules_job(database_url: str) -> RulesJob:
    return RulesJob(database_url, "tests", RulesConfig(interval=0.2))


async def settle(rules: RulesJob, passes: int = 3) -> None:
    """Lets the rules run a few more passes (and the sender act on what they queue)."""
    target = rules.passes + passes
    await wait_for(lambda: rules.passes >= target, timeout=10)
    await asyncio.sleep(0.5)


def email_job(database_url: str, smtp: SmtpServer, templates: Templates | None = None,
              config: SenderConfig = FAST) -> SenderJob:
    target = SmtpTarget.parse(smtp.url)
    return SenderJob("email", database_url, "tests", lambda: SmtpTransport(target, SENDER, templates or Templates(),
                                                                           config.concurrency, config.send_timeout),
                     config)


def sms_job(database_url: str, sms: SmsServer, config: SenderConfig = FAST) -> SenderJob:
    return SenderJob("sms", database_url, "tests",
                     lambda: SmsTransport(TwilioGateway(sms.url, "Flows", config.send_timeout), Templates()), config)


def home_of(conn, esco_id: str, meter_id: str, email: str, phone: str | None = None) -> str:
    """A home fed by ``meter_id`` and its owner-occupier (email, phone); the customer's id."""
    site = f.add_site(conn, esco_id, "S1", "Site")
    home = f.add_property(conn, site, "P-01", address="1 Lily Lane")
    head = f.add_service_head(conn, esco_id, "H1", phase=1)
    f.link_property_head(conn, home, head)
    f.link_head_meter(conn, head, meter_id)
    return f.onboard_customer(conn, home, "Olive Owner", email, phone).customer
