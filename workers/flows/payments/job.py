"""The payments job: an outbound job of the worker (``flows worker``; ``--jobs
payments`` alone), beside the meter commands.

Each pass, woken by NOTIFY ``billing_processor_work`` (a payment or refund to
submit) or every ``poll_interval`` seconds:

1. the money pass (``billing.run_money_pass_v1``): due gifts become top-ups,
   waiting top-ups whose meter answered again go on, regular payments are
   created a week ahead, auto top-ups are created;
2. processor work, claimed with a lease (``billing.claim_payment_work_v1``):
   a due payment is created at the processor unconfirmed, with its id as
   idempotency key, and the processor's id is stored before it is confirmed
   (charged); a payment a dead job may have created is looked up by its
   ``payment_id`` metadata first, so it is never created, let alone charged,
   twice, whatever the age of its idempotency key; a payment still processing
   after ``stale`` is looked up, in case its webhook was lost;
3. refunds, the same way (their id as idempotency key, looked up before a
   second attempt creates anything).

Without a processor API key (FLOWS_STRIPE_API_KEY) the job runs the money pass
only, and says so once.
"""

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import Counter, Histogram

from flows.log import get_logger
from flows.payments.processor import Declined, DuePayment, DueRefund, PaymentProcessor, Unavailable
from flows.payments.queries import CHANNEL, PaymentQueries
from flows.worker.jobs import JobContext, register_job
from flows.worker.queries import Fenced, QueryFailed, listening

log = get_logger("flows.payments.job")

SUBMISSIONS = Counter("flows_payments_processor_work_total", "Payments and refunds worked on at the processor, "
                      "by kind and outcome (recorded, declined, retry, fenced, unrecorded).", ["kind", "outcome"])
PASS_SECONDS = Histogram("flows_payments_money_pass_seconds", "Time a money pass took.",
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))


@dataclass(frozen=True)
class PaymentsJobConfig:
    """flows worker's --poll, --lease and --retry-backoff set the first three."""

    poll_interval: float = 2.0  # seconds between passes when nothing wakes the job
    lease: timedelta = timedelta(minutes=2)  # a claimed payment is held this long (longer than any call)
    retry_base: timedelta = timedelta(seconds=10)  # backoff of processor retries and of top-up rounds
    stale: timedelta = timedelta(hours=1)  # a payment processing this long without news is looked up
    horizon: timedelta = timedelta(days=7)  # regular payments are created this far ahead
    batch: int = 50  # payments (and refunds) claimed at once
    concurrency: int = 20  # processor calls in flight


class PaymentsJob:
    name = "payments"

    def __init__(self, database_url: str, worker_name: str, processor: PaymentProcessor | None,
                 config: PaymentsJobConfig = PaymentsJobConfig()):
        self.database_url, self.worker_name = database_url, worker_name
        self.processor, self.config = processor, config
        self.passes = 0  # (tests wait on it)

    @classmethod
    def from_context(cls, context: JobContext) -> "PaymentsJob":
        settings = context.settings
        processor = None
        if settings.stripe_api_key:
            from flows.payments.stripe_processor import StripeProcessor

            processor = StripeProcessor(settings.stripe_api_key, settings.stripe_api_base)
        config = PaymentsJobConfig(poll_interval=context.poll_interval, lease=context.lease,
                                   retry_base=context.retry_backoff)
        return cls(context.database_url, context.worker_name, processor, config)

    async def run(self, stopping: asyncio.Event) -> None:
        if self.processor is None:
            log.warning("no payment processor configured (FLOWS_STRIPE_API_KEY): payments are not submitted")
        queries = await PaymentQueries.connect(self.database_url, self.worker_name)
        wake = asyncio.Event()
        listener = asyncio.create_task(self._listen(wake, stopping))
        try:
            while not stopping.is_set():
                wake.clear()
                busy = await self._step(queries)
                if busy:
                    continue  # there may be more
                waiters = [asyncio.create_task(e.wait()) for e in (wake, stopping)]
                await asyncio.wait(waiters, timeout=self.config.poll_interval, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await queries.close()
            if self.processor is not None:
                await self.processor.close()

    async def _listen(self, wake: asyncio.Event, stopping: asyncio.Event) -> None:
        """Keeps a connection LISTENing; a lost one is opened again (the poll covers the gap)."""
        while not stopping.is_set():
            try:
                async with listening(self.database_url, {CHANNEL: lambda _: wake.set()}) as lost:
                    wake.set()
                    await lost.wait()
            except QueryFailed as error:
                log.warning("payments listener lost", error=str(error))
                await asyncio.sleep(1)

    async def _step(self, queries: PaymentQueries) -> bool:
        """One pass; True when it claimed a full batch (more may be waiting)."""
        config = self.config
        try:
            started = time.perf_counter()
            done = await queries.money_pass(config.retry_base, config.horizon)
            PASS_SECONDS.observe(time.perf_counter() - started)
            if done and any(v for k, v in done.items() if k != "skipped"):
                log.info("money pass", **done)
            self.passes += 1
            if self.processor is None:
                return False
            payments = await queries.claim_payments(config.batch, config.lease, config.stale)
            refunds = await queries.claim_refunds(config.batch, config.lease)
        except QueryFailed as error:
            log.warning("payments pass failed", error=str(error))
            await asyncio.sleep(1)
            return False
        slots = asyncio.Semaphore(config.concurrency)

        async def bounded(work):
            async with slots:
                await work

        await asyncio.gather(*(bounded(self._payment(queries, p)) for p in payments),
                             *(bounded(self._refund(queries, r)) for r in refunds))
        return len(payments) == config.batch or len(refunds) == config.batch

    async def _payment(self, queries: PaymentQueries, payment: DuePayment) -> None:
        bound = log.bind(payment_id=str(payment.id), attempt=payment.attempt, status=payment.status)
        processor = self.processor
        outcome = "recorded"
        try:
            try:
                intent = None
                if payment.status == "pending":
                    if payment.attempt > 1:  # an attempt before may have created it: never create a second
                        intent = await processor.find_payment(payment.id)
                    if intent is None:
                        intent = await processor.create_payment(payment)
                    status = await queries.record_intent(payment, intent, release=False)  # the id, stored first
                    bound = bound.bind(reference=intent["id"])
                else:
                    status = payment.status
                if status == "created":
                    intent = await processor.confirm_payment(intent["id"] if intent else payment.provider_reference,
                                                             payment.id)
                elif intent is None:  # processing without news, or moved on meanwhile: ask
                    intent = await processor.retrieve_payment(payment.provider_reference)
                status = await queries.record_intent(payment, intent, release=True)
                bound.info("payment at the processor", now=status)
            except Declined as declined:
                outcome = "declined"
                if declined.intent is not None:
                    await queries.record_intent(payment, declined.intent, release=True)
                else:
                    await queries.fail_payment(payment, str(declined), True, self.config.retry_base)
                bound.warning("the processor refused the payment", reason=str(declined))
            except Unavailable as error:
                outcome = "retry"
                await queries.fail_payment(payment, str(error), False, self.config.retry_base)
                bound.warning("processor unavailable; trying again later", error=str(error))
        except Fenced:
            outcome = "fenced"
            bound.warning("lease lost; another worker has the payment")
        except QueryFailed as error:  # the lease runs out and the next attempt looks the payment up first
            outcome = "unrecorded"
            bound.error("could not record the processor's answer", error=str(error))
        except Exception:  # one payment's surprise is never the batch's end: its lease runs out, it goes again
            outcome = "unrecorded"
            bound.exception("payment work failed unexpectedly")
        finally:
            SUBMISSIONS.labels("payment", outcome).inc()

    async def _refund(self, queries: PaymentQueries, refund: DueRefund) -> None:
        bound = log.bind(refund_id=str(refund.id), attempt=refund.attempt)
        outcome = "recorded"
        try:
            try:
                found = None
                if refund.attempt > 1:  # an attempt before may have made it
                    found = await self.processor.find_refund(refund.payment_reference, refund.id)
                status = await queries.record_refund(refund, found or await self.processor.create_refund(refund))
                bound.info("refund at the processor", now=status)
            except Declined as declined:
                outcome = "declined"
                await queries.fail_refund(refund, str(declined), True, self.config.retry_base)
                bound.warning("the processor refused the refund", reason=str(declined))
            except Unavailable as error:
                outcome = "retry"
                await queries.fail_refund(refund, str(error), False, self.config.retry_base)
        except Fenced:
            outcome = "fenced"
        except QueryFailed as error:
            outcome = "unrecorded"
            bound.error("could not record the refund", error=str(error))
        except Exception:
            outcome = "unrecorded"
            bound.exception("refund work failed unexpectedly")
        finally:
            SUBMISSIONS.labels("refund", outcome).inc()


register_job(PaymentsJob.name, PaymentsJob.from_context)
