"""What a request that takes too long is waiting for: a test that calls the API while workers, the gateway and
the payments job run beside it can ask, so that a timeout in CI names the transaction that held it up."""

import asyncio
from collections.abc import Callable

WAITING = """
SELECT a.pid, a.application_name, a.state, a.wait_event_type, a.wait_event, pg_blocking_pids(a.pid) AS blocked_by,
       now() - a.xact_start AS in_transaction_for, left(a.query, 300) AS query
FROM pg_stat_activity AS a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND (a.state <> 'idle' OR cardinality(pg_blocking_pids(a.pid)) > 0)
ORDER BY a.xact_start NULLS LAST
"""


async def watched(call: Callable, stack, after: float = 10.0):
    """Runs ``call`` (blocking: an HTTP request) in a thread; if it has not returned after ``after`` seconds, the
    database's busy and waiting sessions then are kept. Returns (result, what was seen or None)."""
    seen: list = []

    async def watch() -> None:
        await asyncio.sleep(after)
        with stack.sql() as conn:
            seen.extend(conn.execute(WAITING).fetchall())

    watcher = asyncio.create_task(watch())
    try:
        result = await asyncio.to_thread(call)
    finally:
        watcher.cancel()
    return result, ("\n".join(map(str, seen)) if seen else None)
