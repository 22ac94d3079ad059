"""Outbound jobs run beside the meter commands; a failing one is started again, never the worker's end."""

import asyncio

import pytest

from flows.errors import ConfigError
from flows.settings import Settings
from flows.worker import jobs
from flows.worker.jobs import JobContext, build_jobs, supervise

from .conftest import wait_for


class Flaky:
    """Fails its first run, then records each run in the database until asked to stop."""

    name = "flaky"

    def __init__(self, database_url: str):
        self.database_url = database_url
        self.runs = 0

    async def run(self, stopping: asyncio.Event) -> None:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("the relay is down")
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS job_runs (n integer)")
            conn.execute("INSERT INTO job_runs VALUES (%s)", (self.runs,))
        await stopping.wait()


async def test_a_failing_job_is_started_again_and_stops_with_the_worker(db_url, running_worker):
    job = Flaky(db_url)
    worker = await running_worker(db_url, jobs=[job], scheduler_interval=0)
    await wait_for(lambda: job.runs >= 2, timeout=15)
    import psycopg

    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT array_agg(n) FROM job_runs").fetchone()[0] == [2]
    worker.stop()


async def test_supervise_returns_once_stopping():
    stopping = asyncio.Event()
    stopping.set()
    await asyncio.wait_for(supervise(Flaky("unused"), stopping), 1)


def test_jobs_are_built_by_name_and_unknown_ones_are_a_clear_error(monkeypatch):
    monkeypatch.setattr(jobs, "_FACTORIES", {})
    jobs.register_job("flaky", lambda context: Flaky(context.database_url))
    context = JobContext("postgresql://nowhere/flows", "w1", Settings())
    assert [job.name for job in build_jobs(context)] == ["flaky"]
    with pytest.raises(ConfigError, match="no outbound job named smtp"):
        build_jobs(context, ["smtp"])
