"""The SQL the workers run: named functions in the database, called here and
nowhere else (no SQL is assembled in Python). See sql/schema/commands.sql and
sql/schema/scheduling.sql for what each does.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from flows.emop.client import THREE_PHASE_HARDWARE

FENCED = "FL409"  # sqlstate of flows.fence_meter_command: the worker no longer holds the command
CHANNEL = "flows_meter_commands"


class Fenced(Exception):
    """The command moved on (lease expired and claimed again): discard what this worker did."""


@dataclass(frozen=True)
class Command:
    """A claimed command and how to reach its meter."""

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
    esco_code: str
    registers: dict  # element (A, B, SINGLE) -> {"register_id", "direction_reversed"}
    created_at: datetime
    lease_expires_at: datetime

    @property
    def three_phase(self) -> bool:
        return self.hardware in THREE_PHASE_HARDWARE


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb in and out as Python objects (Decimals travel as strings)."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=lambda v: json.dumps(v, default=str), decoder=json.loads
        )


def _fenced(error: asyncpg.PostgresError) -> bool:
    return getattr(error, "sqlstate", None) == FENCED


class Queries:
    def __init__(self, pool: asyncpg.Pool, worker: str):
        self.pool = pool
        self.worker = worker

    async def claim(self, limit: int, lease: timedelta) -> list[Command]:
        rows = await self.pool.fetch(
            "SELECT * FROM flows.claim_meter_commands($1, $2, $3)", self.worker, limit, lease
        )
        return [
            Command(
                id=r["id"], kind=r["kind"], parameters=r["parameters"], attempt=r["attempt"],
                max_attempts=r["max_attempts"], progress=r["progress"], meter_id=r["meter_id"],
                serial=r["serial"], host=str(r["ip_address"]).split("/")[0] if r["ip_address"] else None,
                port=r["emop_port"], hardware=r["hardware"], esco_code=r["esco_code"],
                registers=r["registers"], created_at=r["created_at"], lease_expires_at=r["lease_expires_at"],
            )
            for r in rows
        ]

    async def renew(self, commands: list[Command], lease: timedelta) -> set[UUID]:
        """Renews the leases; returns the ids this worker holds no longer."""
        lost = await self.pool.fetchval(
            "SELECT flows.renew_meter_command_leases($1, $2, $3, $4)",
            self.worker, [c.id for c in commands], [c.attempt for c in commands], lease,
        )
        return set(lost)

    async def note_progress(self, command: Command, progress: dict) -> None:
        await self._fenced_call(
            "SELECT flows.note_meter_command_progress($1, $2, $3, $4)", command, progress
        )

    async def finish(self, command: Command, outcome: dict) -> None:
        # Not waiting for the WAL flush: a result a crash loses is not lost work, the command's lease runs
        # out and it runs again (syncs record idempotently; a token push is reconciled from its progress,
        # which is committed synchronously before the push).
        await self._fenced_call("SELECT flows.finish_meter_command($1, $2, $3, $4)", command, outcome,
                                synchronous=False)

    async def fail(self, command: Command, error: str, retryable: bool, backoff: timedelta) -> str:
        return await self._fenced_call(
            "SELECT flows.fail_meter_command($1, $2, $3, $4, $5, $6)", command, error, retryable, backoff
        )

    async def release(self, command: Command) -> None:
        await self._fenced_call("SELECT flows.release_meter_command($1, $2, $3)", command)

    async def _fenced_call(self, sql: str, command: Command, *args, synchronous: bool = True):
        try:
            if synchronous:
                return await self.pool.fetchval(sql, command.id, self.worker, command.attempt, *args)
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit = off")
                return await conn.fetchval(sql, command.id, self.worker, command.attempt, *args)
        except asyncpg.PostgresError as error:
            if _fenced(error):
                raise Fenced(str(error)) from None
            raise

    async def run_scheduler(self) -> dict | None:
        return await self.pool.fetchval("SELECT flows.run_scheduler()")

    async def queue_depth(self) -> dict[str, int]:
        rows = await self.pool.fetch(
            "SELECT status, count(*) AS n FROM flows.meter_commands"
            " WHERE status IN ('pending', 'running') GROUP BY status"
        )
        return {"pending": 0, "running": 0} | {r["status"]: r["n"] for r in rows}

    async def last_event_time(self, meter_id: UUID) -> datetime | None:
        return await self.pool.fetchval(
            'SELECT max("timestamp") FROM flows.meter_event_log WHERE meter_id = $1', meter_id
        )
