"""Long meter work in bounded steps, so a top-up never waits behind it.

A command's workflow marks the points it can resume from (``checkpoint``:
where it got to, and what it observed since the last checkpoint). After every
exchange with the meter, the MeterClient calls ``after_exchange``, which ends
the step there when

* a command that goes first waits for the meter (a top-up, an operator's emop
  session: ``flows.command_priority``). The worker learns it without asking
  after every exchange: whenever it is woken (NOTIFY of new commands) and at
  each poll it asks ``flows.commands_waited_for_v1`` which of its commands are
  in the way, and flags them (``hand_over``);
* the worker is stopping (SIGTERM, a drain);
* a step's worth of exchanges is done, for work whose progress is worth
  recording as it goes (a backfill of weeks of profile log: ``records``). A
  step is as many exchanges as fit in ``step_seconds`` at the meter's measured
  exchange time (pacing included): one exchange on a production meter paced at
  2 s, a dozen on a fast emulated one.

Ending a step calls ``flows.step_meter_command_v1``: it records what was
checkpointed (observations and progress) and, when something waits or the
worker stops, hands the command back (pending, the attempt not counted, to be
resumed from its progress); the workflow then ends with ``HandedBack``. Work
after the last checkpoint is redone when the command resumes (reads and writes
are idempotent on a meter). Top-ups themselves never end a step.
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
    records: bool = False  # record progress at the end of every step (long backfills), not only when handed back
    hand_over: bool = False  # something that goes first waits for the meter: end the step at the next exchange
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
        """The MeterClient hook: ends the step when something waits for the meter or the worker is stopping,
        and when a recording step is full."""
        if self.hand_over or self.stopping.is_set() \
                or (self.records and self.meter.exchanges - self._step_start >= self.size()):
            await self.end_step()

    async def end_step(self) -> None:
        outcome, changed = self.unrecorded, self.changed
        how = await self.queries.step(self.command, None if outcome.empty else outcome, changed,
                                      stop=self.stopping.is_set(), handing_over=self.hand_over)
        self.unrecorded, self.changed, self.hand_over = Outcome(), {}, False
        self.steps += 1
        self._step_start = self.meter.exchanges
        if how != "continue":
            raise HandedBack(how, self.steps)

    def finished(self, outcome: Outcome) -> Outcome:
        """What the command records when it finishes: what no step recorded, then its own outcome."""
        return self.unrecorded.extended(outcome) if not self.unrecorded.empty else outcome
