"""Payment fixtures: the worker suite's stack (database, PostgREST, emulated meters, an in-process worker), a
real `flows gateway` process that takes processor webhooks, and the test processor served in this process."""

from datetime import timedelta

import pytest

from flows.payments.job import PaymentsJob, PaymentsJobConfig
from flows.payments.stripe_processor import StripeProcessor
from flows.payments.test_processor import TestProcessor
from tests.support.payments import API_KEY, WEBHOOK_SECRET, serving
from tests.support.realtime import GatewayProcess
from tests.worker.conftest import fleet_of, running_worker, stack  # noqa: F401  (fixtures, shared)


@pytest.fixture
def gateway(stack, tmp_path):  # noqa: F811
    process = GatewayProcess(stack.api, tmp_path, env={"FLOWS_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET})
    process.start()
    yield process
    process.stop()


@pytest.fixture
async def processor(gateway):
    """The test processor, delivering its events to the gateway; ``processor.url`` is its API."""
    test_processor = TestProcessor(webhook_url=f"{gateway.url}/webhooks/stripe", webhook_secret=WEBHOOK_SECRET,
                                   settle_after=0.5, retry_delay=0.2, max_retry_delay=2)
    async with serving(test_processor) as url:
        test_processor.url = url
        yield test_processor


def payments_job(stack, processor: TestProcessor | None, name: str = "payments-tests") -> PaymentsJob:  # noqa: F811
    """The payments job as a worker runs it, against the test processor (None: the money pass only)."""
    adapter = StripeProcessor(API_KEY, processor.url) if processor is not None else None
    return PaymentsJob(stack.worker_url, name, adapter,
                       PaymentsJobConfig(poll_interval=0.2, lease=timedelta(seconds=5),
                                         retry_base=timedelta(milliseconds=200)))
