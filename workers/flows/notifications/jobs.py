"""The notification jobs of ``flows worker`` (registered with flows.worker.jobs):

- ``notification_rules``: runs every rule (flows.run_notification_rules_v1)
  every ``RulesConfig.interval`` seconds; any number of workers may run it
  (a rule another pass is running is skipped).
- ``email`` and ``sms``: a sender per channel. Woken by NOTIFY (and polling),
  it claims due messages under a lease, renders and delivers each, and
  records it sent (with the provider's id) or failed (retried after a
  doubling backoff; dead after a refusal or the last attempt).

A message is delivered once, except in the window between the provider's
acceptance and the record's commit: a sender that dies there leaves the
message ``sending``; when its lease runs out another sender sends it again.
The window is measured (flows_notifications_record_window_seconds) and kept
short: the record is the next thing a sender does, retried while the lease
lasts if the database blips, and a stopping worker lets sends in flight finish
and record before it exits (docs/notifications.md).
"""

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flows.log import get_logger
from flows.notifications import metrics
from flows.notifications.config import RulesConfig, SenderConfig, SmtpTarget
from flows.notifications.mail import SmtpTransport
from flows.notifications.queries import CHANNEL, Claimed, Fenced, NotificationQueries, QueryFailed
from flows.notifications.sms import SmsTransport, TwilioGateway, gateway_url
from flows.notifications.templates import Templates
from flows.notifications.transport import DeliveryFailed, Transport
from flows.worker.jobs import JobContext, register_job
from flows.worker.queries import listening

log = get_logger("flows.notifications")

RECORD_MARGIN = timedelta(seconds=5)  # stop retrying a record this long before the lease runs out


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass


async def _first(*events: asyncio.Event, timeout: float | None = None) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class RulesJob:
    name = "notification_rules"

    def __init__(self, database_url: str, worker: str, config: RulesConfig | None = None):
        self.database_url = database_url
        self.worker = worker
        self.config = config or RulesConfig()
        self.passes = 0  # tests wait on it

    async def run(self, stopping: asyncio.Event) -> None:
        queries = await NotificationQueries.connect(self.database_url, self.worker, 1)
        try:
            while not stopping.is_set():
                try:
                    runs = await queries.run_rules()
                except QueryFailed as error:
                    log.warning("notification rules could not run", error=str(error))
                else:
                    for run in runs:
                        if run.error:
                            metrics.RULE_ERRORS.labels(run.rule).inc()
                            log.error("notification rule failed", rule=run.rule, error=run.error)
                        elif run.queued:
                            metrics.QUEUED.labels(run.rule).inc(run.queued)
                            log.info("notifications queued", rule=run.rule, queued=run.queued)
                    self.passes += 1
                await _wait(stopping, self.config.interval)
        finally:
            await queries.close()


class SenderJob:
    """Delivers one channel's messages through the transport ``make_transport()`` builds."""

    def __init__(self, channel: str, database_url: str, worker: str, make_transport: Callable[[], Transport],
                 config: SenderConfig | None = None):
        self.name = channel
        self.channel = channel
        self.database_url = database_url
        self.worker = worker
        self.make_transport = make_transport
        self.config = config or SenderConfig()

    async def run(self, stopping: asyncio.Event) -> None:
        transport = self.make_transport()
        queries = await NotificationQueries.connect(self.database_url, self.worker, self.config.concurrency + 2)
        wake = asyncio.Event()
        listener = asyncio.create_task(self._listen(wake, stopping))
        log.info("sender starting", channel=self.channel, worker=self.worker)
        try:
            while not stopping.is_set():
                wake.clear()
                try:
                    claimed = await queries.claim(self.channel, self.config.batch, self.config.lease)
                except QueryFailed as error:
                    log.warning("could not claim notifications", channel=self.channel, error=str(error))
                    claimed = []
                if claimed:
                    await self._send_all(queries, transport, claimed, stopping)
                else:
                    await _first(wake, stopping, timeout=self.config.poll)
        finally:
            listener.cancel()
            await transport.close()
            await queries.close()

    async def _listen(self, wake: asyncio.Event, stopping: asyncio.Event) -> None:
        """Keeps a connection LISTENing for new messages; after a loss, LISTENs again and claims at once."""
        while not stopping.is_set():
            try:
                async with listening(self.database_url, {CHANNEL: lambda _: wake.set()}) as lost:
                    wake.set()
                    await _first(lost, stopping)
            except QueryFailed as error:
                log.warning("notification listener lost", error=str(error))
            await _wait(stopping, self.config.poll)

    async def _send_all(self, queries: NotificationQueries, transport: Transport, claimed: list[Claimed],
                        stopping: asyncio.Event) -> None:
        """Sends the batch, ``concurrency`` at a time. Once stopping, nothing new starts (it is handed
        back); sends already started finish and are recorded, even if this task is cancelled."""
        slots = asyncio.Semaphore(self.config.concurrency)
        unstarted: list[Claimed] = []

        async def one(message: Claimed) -> None:
            async with slots:
                if stopping.is_set():
                    unstarted.append(message)
                    return
                await self._send(queries, transport, message)

        tasks = [asyncio.create_task(one(message)) for message in claimed]
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:
            stopping.set()
            await asyncio.wait(tasks, timeout=self.config.send_timeout + RECORD_MARGIN.total_seconds())
            raise
        finally:
            if unstarted:
                try:
                    await queries.release(unstarted)
                except QueryFailed as error:
                    log.warning("could not hand back notifications; their lease will run out", error=str(error))

    async def _send(self, queries: NotificationQueries, transport: Transport, message: Claimed) -> None:
        channel = self.channel
        context = {"notification": str(message.id), "rule": message.rule, "esco": message.esco_code,
                   "attempt": message.attempt}
        metrics.QUEUE_AGE.labels(channel).observe(max(0.0, (datetime.now(UTC) - message.send_after).total_seconds()))
        metrics.IN_FLIGHT.labels(channel).inc()
        started = time.monotonic()
        try:
            attachment = await queries.attachment(message) if message.invoice_id else None
            provider_id = await asyncio.wait_for(transport.deliver(message, attachment), self.config.send_timeout)
        except (DeliveryFailed, TimeoutError) as failure:
            permanent = getattr(failure, "permanent", False)
            await self._record_failure(queries, message, str(failure) or "timed out", permanent, context)
            return
        except QueryFailed as error:
            log.warning("could not read the attachment; the lease will run out and it is tried again",
                        error=str(error), **context)
            return
        finally:
            metrics.IN_FLIGHT.labels(channel).dec()
        accepted = time.monotonic()
        metrics.SEND_SECONDS.labels(channel).observe(accepted - started)
        if await self._record_sent(queries, message, provider_id, context):
            metrics.RECORD_WINDOW.labels(channel).observe(time.monotonic() - accepted)
            metrics.SENT.labels(channel, message.rule).inc()
            log.info("notification sent", channel=channel, provider_id=provider_id, **context)

    async def _record_sent(self, queries: NotificationQueries, message: Claimed, provider_id: str,
                           context: dict) -> bool:
        """Records the send, retrying while the lease lasts: a database blip here would otherwise send it
        again."""
        deadline = message.lease_expires_at - RECORD_MARGIN
        delay = 0.05
        while True:
            try:
                await queries.record_sent(message, provider_id)
                return True
            except Fenced:
                metrics.FAILED.labels(self.channel, "fenced").inc()
                log.error("sent, but its lease ran out and another sender holds it: it may be delivered twice",
                          provider_id=provider_id, **context)
                return False
            except QueryFailed as error:
                if datetime.now(UTC) + timedelta(seconds=delay) >= deadline:
                    metrics.FAILED.labels(self.channel, "unrecorded").inc()
                    log.error("sent, but could not record it before its lease ran out: it will be sent again",
                              provider_id=provider_id, error=str(error), **context)
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _record_failure(self, queries: NotificationQueries, message: Claimed, error: str, permanent: bool,
                              context: dict) -> None:
        try:
            status = await queries.record_failed(message, error, permanent, self.config.retry_backoff)
        except Fenced:
            return
        except QueryFailed as failure:
            log.warning("could not record a failed send; the lease will run out and it is tried again",
                        error=str(failure), **context)
            return
        outcome = "dead" if status == "dead" else "retry"
        metrics.FAILED.labels(self.channel, outcome).inc()
        (log.error if outcome == "dead" else log.warning)(
            "notification failed" + (" for good: a dead letter" if outcome == "dead" else "; retried later"),
            channel=self.channel, error=error, **context)


class Unconfigured:
    """A sender with nowhere to send: says so once and waits. Its messages stay pending (the
    FlowsNotificationsBacklog alert fires) until the worker runs with the channel configured."""

    def __init__(self, name: str, missing: str):
        self.name = name
        self.missing = missing

    async def run(self, stopping: asyncio.Event) -> None:
        log.warning("sender not configured: its messages wait", channel=self.name, missing=self.missing)
        await stopping.wait()


def email_job(context: JobContext, config: SenderConfig | None = None):
    config = config or SenderConfig()
    settings = context.settings
    if settings.smtp_url is None:
        return Unconfigured("email", "FLOWS_SMTP_URL (smtp://host:port)")
    target = SmtpTarget.parse(settings.smtp_url)
    return SenderJob("email", context.database_url, context.worker_name,
                     lambda: SmtpTransport(target, settings.mail_from, Templates(), connections=config.concurrency,
                                           timeout=config.send_timeout), config)


def sms_job(context: JobContext, config: SenderConfig | None = None):
    config = config or SenderConfig()
    settings = context.settings
    if settings.sms_url is None:
        return Unconfigured("sms", "FLOWS_SMS_URL (https://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com)")
    url = settings.sms_url
    gateway_url(url)  # a bad URL fails at start-up, not at the first text
    return SenderJob("sms", context.database_url, context.worker_name,
                     lambda: SmsTransport(TwilioGateway(url, settings.sms_from, config.send_timeout), Templates()),
                     config)


register_job("notification_rules", lambda context: RulesJob(context.database_url, context.worker_name))
register_job("email", email_job)
register_job("sms", sms_job)
