"""Outbound jobs: what the worker runs beside meter commands (the payment processor,
email, SMS).

A job is a long-running coroutine that claims its own work through named SQL
functions (like the meter commands: a table is the queue) and returns when
``stopping`` is set. Each runs as one task of the worker; one that fails is
logged and started again after a pause, so a broken SMTP relay never stops the
meters. A job module registers a factory with ``register_job``; ``flows worker
--jobs`` picks which run (default: all).
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from flows.errors import ConfigError
from flows.log import get_logger
from flows.settings import Settings

log = get_logger("flows.worker.jobs")


@dataclass(frozen=True)
class JobContext:
    """What a job is built from: where the database is, who the worker is, the settings, and the worker's
    lease, poll and retry backoff (a job holds its own work the same way)."""

    database_url: str
    worker_name: str
    settings: Settings
    lease: timedelta = timedelta(minutes=2)
    poll_interval: float = 2.0
    retry_backoff: timedelta = timedelta(seconds=10)


class OutboundJob(Protocol):
    name: str

    async def run(self, stopping: asyncio.Event) -> None: ...


_FACTORIES: dict[str, Callable[[JobContext], OutboundJob]] = {}


def register_job(name: str, factory: Callable[[JobContext], OutboundJob]) -> None:
    _FACTORIES[name] = factory


def job_names() -> list[str]:
    return sorted(_FACTORIES)


def build_jobs(context: JobContext, names: list[str] | None = None) -> list[OutboundJob]:
    """The jobs named (default: every registered one), built for ``context``."""
    wanted = job_names() if names is None else names
    if unknown := [n for n in wanted if n not in _FACTORIES]:
        raise ConfigError(f"no outbound job named {', '.join(unknown)}", hint=f"known: {', '.join(job_names())}")
    return [_FACTORIES[name](context) for name in wanted]


async def supervise(job: OutboundJob, stopping: asyncio.Event, pause: float = 5.0) -> None:
    """Runs ``job`` until ``stopping``; a crash is logged and the job started again after ``pause``."""
    while not stopping.is_set():
        try:
            await job.run(stopping)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbound job failed; starting it again", job=job.name, in_seconds=pause)
            try:
                await asyncio.wait_for(stopping.wait(), pause)
            except TimeoutError:
                pass
