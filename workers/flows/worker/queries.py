"""The worker's boundary with the database: the named SQL functions it calls,
here and nowhere else (no SQL is assembled in Python), and the connections
they run on. See sql/schema/commands.sql and sql/schema/scheduling.sql for what
each function does.

Every function called here ends in a version (``_v1``): a deploy that changes
one adds ``_v2`` beside it, and the old one stays until no running worker calls
it (docs/database.md, "Versioned functions").

Whatever the driver raises (the server is unreachable, the connection broke,
a statement failed) leaves this module as one project error, ``QueryFailed``,
or ``Fenced`` when the fence refused, so the daemon handles "the database did
not do it" in one way.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from flows.errors import FlowsError
from flows.worker.outcome import Outcome

FENCED = "FL409"  # sqlstate of flows.fence_meter_command: the worker no longer holds the command
CHANNEL = "flows_meter_commands"  # NOTIFY: ids of commands to claim
WORKERS_CHANNEL = "flows_workers"  # NOTIFY: the name of a worker asked to drain
_DRIVER_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class QueryFailed(FlowsError):
    """The database did not do what the worker asked: unreachable, the connection lost, or the statement failed.
    The driver's error is the ``__cause__``; ``sqlstate`` is its SQLSTATE when the server answered."""

    def __init__(self, error: BaseException):
        super().__init__(str(error) or type(error).__name__)
        self.sqlstate: str | None = getattr(error, "sqlstate", None)


class Fenced(QueryFailed):
    """The command moved on (lease expired and claimed again): discard what this worker did."""


@contextmanager
def _driver_errors() -> Iterator[None]:
    try:
        yield
    except _DRIVER_ERRORS as error:
        raise (Fenced if getattr(error, "sqlstate", None) == FENCED else QueryFailed)(error) from error


@dataclass(frozen=True)
class Command:
    """A claimed command, how to reach its meter, and what kind of meter it is."""

    id: UUID
    kind: str
    parameters: dict
    attempt: int
    max_attempts: int
    progress: dict
    meter_id: UUID
    serial: str
    host: str | None
    port: int
    hardware: str | None
    three_phase: bool  # flows.is_three_phase: its hardware or its serial says so
    esco_code: str
    registers: dict  # element (A, B, SINGLE) -> {"register_id", "direction_reversed"}
    created_at: datetime
    lease_expires_at: datetime


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb in and out as Python objects (Decimals travel as strings)."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=lambda v: json.dumps(v, default=str), decoder=json.loads
        )


@asynccontextmanager
async def listening(database_url: str, callbacks: dict[str, Callable[[str], None]]) -> AsyncIterator[asyncio.Event]:
    """A connection LISTENing on each channel, calling its callback with each notification's payload;
    yields an event that is set when the connection is lost."""
    lost = asyncio.Event()
    with _driver_errors():
        conn = await asyncpg.connect(database_url)
    try:
        with _driver_errors():
            conn.add_termination_listener(lambda _: lost.set())
            for channel, callback in callbacks.items():
                await conn.add_listener(channel, lambda _c, _p, _ch, payload, callback=callback: callback(payload))
        yield lost
    finally:
        with _driver_errors():
            if not conn.is_closed():
                await conn.close()


class PooledQueries:
    """SQL calls of an outbound job (payments, notifications): one pool of connections that read and write
    jsonb as Python objects, and this worker's name for the rows it claims."""

    def __init__(self, pool: asyncpg.Pool, worker: str):
        self.pool = pool
        self.worker = worker

    @classmethod
    async def connect(cls, database_url: str, worker: str, pool_size: int = 4):
        with _driver_errors():
            pool = await asyncpg.create_pool(database_url, min_size=1, max_size=pool_size, init=init_connection)
        return cls(pool, worker)

    async def close(self) -> None:
        with _driver_errors():
            await self.pool.close()


STEP_CONNECTIONS = 4  # the steps of long work record on connections of their own (Queries.steps)


class Queries:
    """The worker's SQL calls. Two pools: ``pool`` for claims, top-ups, finishing and the worker's own
    bookkeeping; ``steps`` for what long work records step by step (hundreds of backfills at once), so that
    it never makes a top-up wait for a connection."""

    def __init__(self, pool: asyncpg.Pool, worker: str, steps: asyncpg.Pool | None = None):
        self.pool = pool
        self.steps = steps or pool
        self.worker = worker

    @classmethod
    async def connect(cls, database_url: str, worker: str, pool_size: int) -> "Queries":
        with _driver_errors():
            pool = await asyncpg.create_pool(database_url, min_size=1, max_size=pool_size, init=init_connection)
            steps = await asyncpg.create_pool(database_url, min_size=1, max_size=STEP_CONNECTIONS,
                                              init=init_connection)
        return cls(pool, worker, steps)

    async def close(self) -> None:
        with _driver_errors():
            await self.pool.close()
            if self.steps is not self.pool:
                await self.steps.close()

    async def register(self, host: str, pid: int, version: str, concurrency: int, escos: list[str] | None,
                       heartbeat: timedelta) -> UUID:
        """Registers this worker (its name is ``self.worker``); returns its id."""
        with _driver_errors():
            return await self.pool.fetchval(
                "SELECT flows.register_worker_v1($1, $2, $3, $4, $5, $6, $7)",
                self.worker, host, pid, version, concurrency, escos, heartbeat,
            )

    async def heartbeat(self, in_flight: int, finished: int) -> bool | None:
        """True: an administrator asked this worker to drain; None: it is not registered (register again)."""
        with _driver_errors():
            return await self.pool.fetchval("SELECT flows.worker_heartbeat_v1($1, $2, $3)", self.worker, in_flight,
                                            finished)

    async def stopped(self, finished: int) -> None:
        with _driver_errors():
            await self.pool.execute("SELECT flows.worker_stopped_v1($1, $2)", self.worker, finished)

    async def claim(self, limit: int, lease: timedelta) -> list[Command]:
        with _driver_errors():
            rows = await self.pool.fetch(
                "SELECT * FROM flows.claim_meter_commands_v2($1, $2, $3)", self.worker, limit, lease
            )
        return [
            Command(
                id=r["id"], kind=r["kind"], parameters=r["parameters"], attempt=r["attempt"],
                max_attempts=r["max_attempts"], progress=r["progress"], meter_id=r["meter_id"],
                serial=r["serial"], host=str(r["ip_address"]).split("/")[0] if r["ip_address"] else None,
                port=r["emop_port"], hardware=r["hardware"], three_phase=r["three_phase"], esco_code=r["esco_code"],
                registers=r["registers"], created_at=r["created_at"], lease_expires_at=r["lease_expires_at"],
            )
            for r in rows
        ]

    async def renew(self, commands: list[Command], lease: timedelta) -> set[UUID]:
        """Renews the leases; returns the ids this worker holds no longer."""
        with _driver_errors():
            lost = await self.pool.fetchval(
                "SELECT flows.renew_meter_command_leases_v1($1, $2, $3, $4)",
                self.worker, [c.id for c in commands], [c.attempt for c in commands], lease,
            )
        return set(lost)

    async def note_progress(self, command: Command, progress: dict) -> None:
        await self._fenced_call("SELECT flows.note_meter_command_progress_v1($1, $2, $3, $4)", command, progress)

    async def finish(self, finished: list[tuple[Command, Outcome]]) -> set[UUID]:
        """Finishes many commands in one transaction; returns the ids this worker no longer held (fenced:
        nothing of theirs was recorded)."""
        # Not waiting for the WAL flush: a result a crash loses is not lost work, the command's lease runs
        # out and it runs again (syncs record idempotently; a token push is reconciled from its progress,
        # which is committed synchronously before the push).
        batch = [{"id": str(c.id), "attempt": c.attempt, "outcome": o.to_json()} for c, o in finished]
        with _driver_errors():
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit = off")
                fenced = await conn.fetchval("SELECT flows.finish_meter_commands_v1($1, $2)", self.worker, batch)
        return set(fenced)

    async def waited_for(self) -> set[UUID]:
        """The commands this worker runs whose meter a top-up (or an operator) waits for."""
        with _driver_errors():
            return set(await self.pool.fetchval("SELECT flows.commands_waited_for_v1($1)", self.worker))

    async def step(self, command: Command, outcome: Outcome | None, progress: dict, stop: bool,
                   handing_over: bool = False) -> str:
        """The end of a step of long work: records it; continue, yielded (a top-up or an operator waits for
        the meter) or released (``stop``). Both of the last hand the command back; they (``handing_over``)
        go ahead of the steps that only record."""
        pool = self.pool if stop or handing_over else self.steps
        with _driver_errors():
            return await pool.fetchval("SELECT flows.step_meter_command_v1($1, $2, $3, $4, $5, $6)",
                                             command.id, self.worker, command.attempt,
                                             outcome.to_json() if outcome else None, progress, stop)

    async def fail(self, command: Command, error: str, retryable: bool, backoff: timedelta) -> str:
        return await self._fenced_call(
            "SELECT flows.fail_meter_command_v1($1, $2, $3, $4, $5, $6)", command, error, retryable, backoff
        )

    async def release(self, command: Command) -> None:
        await self._fenced_call("SELECT flows.release_meter_command_v1($1, $2, $3)", command)

    async def _fenced_call(self, sql: str, command: Command, *args):
        with _driver_errors():
            return await self.pool.fetchval(sql, command.id, self.worker, command.attempt, *args)

    async def run_scheduler(self) -> dict | None:
        with _driver_errors():
            return await self.pool.fetchval("SELECT flows.run_scheduler_v1()")

    async def queue_depth(self) -> dict[str, int]:
        with _driver_errors():
            row = await self.pool.fetchrow("SELECT pending, running FROM flows.meter_command_queue_depth_v1()")
        return dict(row)

    async def last_event_time(self, meter_id: UUID) -> datetime | None:
        with _driver_errors():
            return await self.pool.fetchval("SELECT flows.last_meter_event_time_v1($1)", meter_id)
