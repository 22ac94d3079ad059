"""The feed's two snapshot connections (psycopg, for its pipeline mode).

A step reads the change log and every audience's rows in one REPEATABLE READ
snapshot, and keeps it open as the next step's "before". Reading rows takes two
statements per audience (set role and claims, then the prepared read); in
pipeline mode they all go out at once, so a step costs a few round trips
however many audiences it reads for, instead of two per audience (on a busy
machine every round trip waits for the backend to be scheduled).
"""

import contextlib

import psycopg
from psycopg import AsyncRawCursor
from psycopg.types.string import TextLoader


class SnapshotConnection:
    def __init__(self, conn: psycopg.AsyncConnection):
        self.conn = conn
        self.in_snapshot = False

    @classmethod
    async def connect(cls, url: str) -> "SnapshotConnection":
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, cursor_factory=AsyncRawCursor,
                                                     application_name="flows-gateway", options="-c jit=off")
        for name in ("json", "jsonb"):
            conn.adapters.register_loader(name, TextLoader)  # rows are passed on as the text PostgreSQL made
        return cls(conn)

    async def begin_snapshot(self) -> None:
        await self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.in_snapshot = True

    async def end_snapshot(self) -> None:
        if self.in_snapshot and not self.conn.closed:
            self.in_snapshot = False
            await self.conn.execute("ROLLBACK")

    async def fetch(self, query: str, *args) -> list[tuple]:
        cursor = await self.conn.execute(query, args or None)
        return await cursor.fetchall()

    async def fetchval(self, query: str, *args):
        rows = await self.fetch(query, *args)
        return rows[0][0] if rows else None

    async def fetchrow(self, query: str, *args):
        rows = await self.fetch(query, *args)
        return rows[0] if rows else None

    @contextlib.asynccontextmanager
    async def savepoint(self):
        """Statements that may fail (e.g. a claim naming an ESCO that is gone) without ending the snapshot."""
        await self.conn.execute("SAVEPOINT gateway")
        try:
            yield
        except psycopg.errors.Error:
            await self.conn.execute("ROLLBACK TO SAVEPOINT gateway")
            raise
        await self.conn.execute("RELEASE SAVEPOINT gateway")

    async def pipeline(self, statements: list[tuple[str, tuple, bool]]) -> list[list[tuple] | None]:
        """Run (query, args, wants_rows) statements in one pipeline, in a savepoint; the rows of those wanting rows."""
        cursors = []
        async with self.savepoint():
            async with self.conn.pipeline():
                for query, args, wants_rows in statements:
                    cursor = self.conn.cursor()
                    await cursor.execute(query, args or None, prepare=True)
                    cursors.append(cursor if wants_rows else None)
            return [await cursor.fetchall() if cursor is not None else None for cursor in cursors]

    @property
    def closed(self) -> bool:
        return self.conn.closed

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.conn.close()
