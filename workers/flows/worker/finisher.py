"""Finishing commands in batches: one transaction records many commands' outcomes.

Each command that ends well hands its outcome to ``Finisher.finish`` and waits.
Two writers take whatever has gathered (up to MAX_BATCH) and record it in one
call (``flows.finish_meter_commands_v1``) while the other one's call runs, so
an idle worker finishes a command at once and a busy one finishes hundreds per
transaction: PostgreSQL's fixed cost per call and per commit is shared, which
is most of its CPU per command, and a burst (a fleet synced at once) is
recorded by two backends side by side (bench/bench_sync.py). A batch the
database refuses (one bad outcome, say) is written again one command at a
time, so the others are recorded and only the bad one fails.
"""

import asyncio

from flows.log import get_logger
from flows.worker.outcome import Outcome
from flows.worker.queries import Command, Fenced, Queries, QueryFailed

log = get_logger("flows.worker")
MAX_BATCH = 500
WRITERS = 2


class Finisher:
    def __init__(self, queries: Queries):
        self.queries = queries
        self.waiting: list[tuple[Command, Outcome, asyncio.Future]] = []
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.batches = 0

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._run(), name=f"finisher {n}") for n in range(WRITERS)]

    async def close(self) -> None:
        """Writes what is waiting, then stops."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        while self.waiting:
            await self._write(self._take())

    async def finish(self, command: Command, outcome: Outcome) -> None:
        """Records the outcome and marks the command done; raises Fenced if the worker no longer holds it,
        QueryFailed if the database did not record it."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((command, outcome, future))
        self.wake.set()
        await future

    def _take(self) -> list[tuple[Command, Outcome, asyncio.Future]]:
        batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
        return batch

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.waiting:
                batch = self._take()
                if self.waiting:
                    self.wake.set()  # more than a batch: the other writer takes the rest
                await self._write(batch)

    async def _write(self, batch: list[tuple[Command, Outcome, asyncio.Future]]) -> None:
        self.batches += 1
        try:
            fenced = await self.queries.finish([(command, outcome) for command, outcome, _ in batch])
        except QueryFailed as error:
            if len(batch) > 1 and error.sqlstate is not None:  # the database refused something in it
                for one in batch:
                    await self._write([one])
                return
            for _, _, future in batch:
                _settle(future, error)
            return
        for command, _, future in batch:
            lost = RuntimeError(f"meter command {command.id} is no longer held by {self.queries.worker}")
            _settle(future, Fenced(lost) if command.id in fenced else None)


def _settle(future: asyncio.Future, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
