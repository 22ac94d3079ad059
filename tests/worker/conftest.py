"""End-to-end fixtures: a database with its own PostgREST, an emulated fleet,
and a worker (in this process), all real."""

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from flows import factories
from flows.emulator import Fleet, FleetConfig, MeterConfig
from flows.vending import MemorySequenceStore
from flows.vending.emulated import EmulatedVendor
from flows.worker.daemon import Worker, WorkerConfig
from tests.support.api import start_postgrest

VENDOR_SECRET = b"worker-tests-only"
REGISTERS_FROM = "2020-01-01T00:00:00Z"  # before any reading the emulated meters hold


class Stack:
    def __init__(self, api, worker_url: str):
        self.api = api
        self.worker_url = worker_url

    def sql(self):
        return self.api.sql()


@pytest.fixture(scope="module")
def stack(pg_server, template_db, tmp_path_factory):
    name = f"flows_worker_{uuid.uuid4().hex[:8]}"
    with pg_server.janitor(name, template_dbname=template_db):
        password = secrets.token_urlsafe(12)
        with psycopg.connect(pg_server.url(name), autocommit=True) as conn:
            conn.execute(f"ALTER ROLE flows_worker PASSWORD '{password}'")
        with start_postgrest(pg_server, name, tmp_path_factory.mktemp("worker-api")) as api:
            yield Stack(api, pg_server.url(name, "flows_worker", password))


def worker_config(url: str, **overrides) -> WorkerConfig:
    return WorkerConfig(database_url=url, **{
        "pacing": 0.0, "scheduler_interval": 0, "retry_backoff": timedelta(milliseconds=50),
        "poll_interval": 0.2, "emop_timeout": 0.5, "emop_attempts": 2, "lease": timedelta(seconds=20),
        "shutdown_grace": 2, **overrides})


def new_esco(stack) -> tuple[str, str]:
    """A new ESCO whose commands are never held back by its running limit; (id, code)."""
    with stack.sql() as conn:
        esco = factories.add_esco(conn, factories.new_esco_code("W"), max_running_commands=1000)
    return esco.id, esco.code


def register(stack, fleet: Fleet, esco: str) -> dict[str, str]:
    """Registers every emulated meter (at its 127.0.0.1 port) in an ESCO; serial -> meter id."""
    with stack.sql() as conn:
        return factories.add_emulated_meters(conn, esco, fleet.meters, registers_from=REGISTERS_FROM)


def serials(count: int, first: int) -> list[str]:
    return [f"EML{2500000000 + first + i}" for i in range(count)]


@pytest.fixture
async def fleet_of():
    """fleet_of(MeterConfig, ...) starts an emulated fleet (time frozen) for this test."""
    fleets = []

    async def start(*meters: MeterConfig, **options) -> Fleet:
        settings = {"time_factor": 0, "latency": 0.0, "vendor_secret": VENDOR_SECRET, "start": datetime.now(UTC),
                    **options}
        fleet = Fleet(FleetConfig(meters=list(meters), **settings))
        await fleet.start()
        fleets.append(fleet)
        return fleet

    yield start
    for fleet in fleets:
        await fleet.stop()


@pytest.fixture
async def running_worker():
    """running_worker(database_url, **settings): a worker in this process until the test ends."""
    import asyncio

    workers = []

    async def start(database_url: str, jobs=(), **overrides) -> Worker:
        worker = Worker(worker_config(database_url, **overrides),
                        vendor=EmulatedVendor(VENDOR_SECRET, MemorySequenceStore()), jobs=jobs)
        worker.task = asyncio.create_task(worker.run())  # a test may await it (a drained worker exits)
        workers.append((worker, worker.task))
        return worker

    yield start
    for worker, task in workers:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05):
    """Polls ``predicate`` (sync or async) until it returns something truthy."""
    import asyncio
    import inspect

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        await asyncio.sleep(interval)
