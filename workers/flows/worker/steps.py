"""Long meter work in bounded steps, so a top-up never waits behind it.

A command's workflow marks the points it can resume from (``checkpoint``:
where it got to, and what it observed since the last checkpoint). After every
exchange with the meter, the MeterClient calls ``after_exchange``; once a step's
worth of exchanges is done, the step ends: ``flows.step_meter_command_v1``
records the checkpointed observations and progress and says whether to go
on. It hands the command back (pending, the attempt not counted, resumed later
from its progress) when a command that goes first waits for the meter (a
top-up, an operator's emop session: ``flows.command_priority``) or when the
worker is stopping; the workflow then ends with ``HandedBack``.

A step is as many exchanges as fit in ``step_seconds`` at the meter's measured
exchange time (pacing included): one exchange on a production meter paced at
2 s, a dozen on a fast emulated one. Work after the last checkpoint is redone
when the command resumes (reads and writes are idempotent on a meter).
Top-ups themselves never end a step.
"""

import asyncio
from dataclasses import dataclass, field

from flows.emop.client import MeterClient
from flows.worker.outcome import Outcome
from flows.worker.queries import Command, Queries

MAX_STEP_EXCHANGES = 256


class HandedBack(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """The command went back to the queue at the end of a step: ``how`` is yielded (a command that goes
    first waits for the meter) or released (the worker is stopping)."""

    def __init__(self, how: str, steps: int):
        super().__init__(how)
        self.how = how
        self.steps = steps


@dataclass
class Steps:
    command: Command
    meter: MeterClient
    queries: Queries
    step_seconds: float
    stopping: asyncio.Event
    progress: dict = field(default_factory=dict)  # the command's progress: its earlier attempts', then checkpoints
    unrecorded: Outcome = field(default_factory=Outcome)  # observed up to the last checkpoint, not yet recorded
    changed: dict = field(default_factory=dict)  # progress checkpointed since the last step ended
    steps: int = 0
    _step_start: int = 0  # meter.exchanges when the step began

    def __post_init__(self) -> None:
        self.progress = dict(self.command.progress)

    def size(self) -> int:
        """Exchanges in a step: ``step_seconds`` at the meter's measured exchange time."""
        seconds = self.meter.exchange_seconds
        if not seconds:
            return 1
        return max(1, min(MAX_STEP_EXCHANGES, int(self.step_seconds / seconds)))

    def checkpoint(self, progress: dict, observed: Outcome | None = None) -> None:
        """The work can resume from here: ``progress`` says where (merged into the command's progress),
        ``observed`` is what it saw since the last checkpoint (recorded when the step ends)."""
        self.progress.update(progress)
        self.changed.update(progress)
        if observed is not None:
            self.unrecorded = self.unrecorded.extended(observed)

    async def after_exchange(self) -> None:
        """The MeterClient hook: ends the step when it is full, or at once when the worker is stopping."""
        if self.stopping.is_set() or self.meter.exchanges - self._step_start >= self.size():
            await self.end_step()

    async def end_step(self) -> None:
        outcome, changed = self.unrecorded, self.changed
        how = await self.queries.step(self.command, None if outcome.empty else outcome, changed,
                                      stop=self.stopping.is_set())
        self.unrecorded, self.changed = Outcome(), {}
        self.steps += 1
        self._step_start = self.meter.exchanges
        if how != "continue":
            raise HandedBack(how, self.steps)

    def finished(self, outcome: Outcome) -> Outcome:
        """What the command records when it finishes: what no step recorded, then its own outcome."""
        return self.unrecorded.extended(outcome) if not self.unrecorded.empty else outcome
