"""Simulated time for a fleet: real time, optionally accelerated, optionally moved by hand."""

import time
from datetime import UTC, datetime, timedelta

from flows.emop.units import EPOCH_2000, EPOCH_2000_UNIX


class SimClock:
    """Seconds since 2000-01-01 UTC as the emulated meters experience them.

    ``factor`` 1 follows the wall clock, 60 makes a simulated hour pass in a real
    minute, 0 freezes time (then only ``advance`` moves it: deterministic tests).
    """

    def __init__(self, factor: float = 1.0, start: datetime | None = None):
        if factor < 0:
            raise ValueError("the time factor cannot be negative")
        self.factor = factor
        self._real0 = time.time()
        self._sim0 = (start.timestamp() if start else self._real0) - EPOCH_2000_UNIX
        self._moved = 0.0

    def seconds(self) -> float:
        return self._sim0 + (time.time() - self._real0) * self.factor + self._moved

    def now(self) -> datetime:
        return EPOCH_2000 + timedelta(seconds=self.seconds())

    def advance(self, delta: timedelta | float) -> None:
        """Jump simulated time forward (meters catch up on their next request or state access)."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if seconds < 0:
            raise ValueError("simulated time only moves forward")
        self._moved += seconds


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds + EPOCH_2000_UNIX, UTC)
