"""An operator's `emop` session with a meter, under the platform's per-meter lease.

With a database configured, the `emop` CLI never opens a second session to a
meter a worker is talking to: it opens an emop_session command for the meter
(sql/schema/emop_sessions.sql), waits until the meter is free (a worker's
long command gives it up at its next step; a top-up still goes first), holds
the lease while it talks to the meter (renewed in the background) and closes
the session, done or failed, when the operation ends. A meter the database
does not know has no platform: the CLI talks to it directly.

    async with EmopSessions(database_url) as sessions:
        async with sessions.hold("EML2400000001", "prepay_balance", on_wait=print) as held:
            ...  # held: under the lease (False: the meter is not registered)
"""

import asyncio
import getpass
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from flows.db.connect import describe, first_line
from flows.errors import FlowsError, Unreachable

LEASE = timedelta(seconds=30)
RENEW_EVERY = 10.0  # seconds: a third of the lease
ASK_EVERY = 0.5  # seconds between asks while waiting (flows.emop_session_patience allows 30)


@dataclass(frozen=True)
class Waiting:
    """What holds the meter while the operator waits."""

    serial: str
    kind: str
    held_by: str | None  # the worker (or operator) holding it; None: a top-up queued first
    since: datetime | None
    progress: dict

    def describe(self) -> str:
        who = f" by {self.held_by}" if self.held_by else " (queued first)"
        since = f" since {self.since:%H:%M:%S}" if self.since else ""
        cursor = f", at {self.progress['cursor']}" if self.progress.get("cursor") else ""
        return f"waiting for meter {self.serial}: {self.kind}{who}{since}{cursor}"


def holder_name() -> str:
    """Who holds the lease, as /meter_commands shows it (requested_by, lease_owner)."""
    return f"emop:{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}"


class EmopSessions:
    def __init__(self, database_url: str, holder: str | None = None):
        self.database_url = database_url
        self.holder = holder or holder_name()
        self.conn: psycopg.AsyncConnection | None = None

    async def __aenter__(self) -> "EmopSessions":
        try:
            self.conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True,
                                                              connect_timeout=5)
        except psycopg.OperationalError as error:
            raise Unreachable(f"cannot connect to the database at {describe(self.database_url)}: "
                              f"{first_line(error)}", hint="--direct talks to the meter without the platform") from None
        return self

    async def __aexit__(self, *exc) -> None:
        await self.conn.close()

    @asynccontextmanager
    async def hold(self, serial: str, operation: str,
                   on_wait: Callable[[Waiting], None] | None = None) -> AsyncIterator[bool]:
        """The meter under this operator's lease for the block; yields False for a meter the database does
        not know (talk to it directly)."""
        session = await self._value("SELECT flows.open_emop_session(%s, %s, %s)", serial, self.holder, operation)
        if session is None:
            yield False
            return
        failure = None
        try:
            await self._wait(session, serial, on_wait)
            renewing = asyncio.create_task(self._renew(session))
            try:
                yield True
            except BaseException as error:
                failure = f"{type(error).__name__}: {error}" if not isinstance(error, asyncio.CancelledError) \
                    else "interrupted"
                raise
            finally:
                renewing.cancel()
                await asyncio.gather(renewing, return_exceptions=True)
        finally:
            await asyncio.shield(self._close(session, failure))

    async def _wait(self, session, serial: str, on_wait) -> None:
        while True:
            held, kind, held_by, since, progress = await self._row(
                "SELECT held, waiting_for, held_by, since, progress FROM flows.hold_emop_session(%s, %s, %s)",
                session, self.holder, LEASE)
            if held:
                return
            if on_wait is not None:
                on_wait(Waiting(serial, kind, held_by, since, progress or {}))
            await asyncio.sleep(ASK_EVERY)

    async def _renew(self, session) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            await self._row("SELECT held FROM flows.hold_emop_session(%s, %s, %s)", session, self.holder, LEASE)

    async def _close(self, session, failure: str | None) -> None:
        await self._value("SELECT flows.close_emop_session(%s, %s, %s)", session, self.holder, failure)

    async def _row(self, sql: str, *args) -> tuple:
        try:
            cursor = await self.conn.execute(sql, args)
            return await cursor.fetchone()
        except psycopg.Error as error:
            if error.sqlstate == "FL409":
                raise FlowsError(f"the emop session ended: {error.diag.message_primary}",
                                 hint="someone cancelled it in /meter_commands, or it was not renewed") from None
            raise FlowsError(f"the database refused the emop session: {first_line(error)}") from None

    async def _value(self, sql: str, *args):
        return (await self._row(sql, *args))[0]
