"""Realtime fixtures: the worker suite's stack (database, PostgREST, emulated
meters, an in-process worker) plus a real `flows gateway` process."""

import pytest

from tests.support.realtime import GatewayProcess
from tests.worker.conftest import fleet_of, running_worker, stack  # noqa: F401  (fixtures, shared)


@pytest.fixture
def gateway(stack, tmp_path):  # noqa: F811
    process = GatewayProcess(stack.api, tmp_path)
    process.start()
    yield process
    process.stop()
