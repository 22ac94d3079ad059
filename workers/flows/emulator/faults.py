"""Faults an emulated meter injects, by rate or by script.

Kinds (what the client sees):
  refuse     the connection is reset as soon as it is accepted
  silence    the request is read and never answered (the client times out)
  close      the request is read and the connection closed without an answer
  bad_crc    the answer's CRC is wrong
  truncated  half of the answer is sent, then the connection is closed
  nak        the answer is a NAK (code ``nak_code``, or ``nak:N`` in a script)

A script is a list consumed in order, one entry per connection (``refuse``) or
exchange (the others); ``None``/``"ok"`` answers normally. When the script is
empty, each kind fires with its rate (probability per exchange).
"""

import random
from collections import deque
from dataclasses import dataclass, field

KINDS = ("refuse", "silence", "close", "bad_crc", "truncated", "nak")


@dataclass
class Fault:
    kind: str
    nak_code: int = 5


def parse_fault(entry: str | None, default_nak: int = 5) -> Fault | None:
    if entry is None or entry == "ok":
        return None
    kind, _, code = entry.partition(":")
    if kind not in KINDS:
        raise ValueError(f"unknown fault {entry!r}; one of {', '.join(KINDS)} (nak:N for a NAK code)")
    if code and kind != "nak":
        raise ValueError(f"only nak takes a code, not {entry!r}")
    return Fault(kind, int(code) if code else default_nak)


@dataclass
class FaultPlan:
    rates: dict[str, float] = field(default_factory=dict)
    script: list[str | None] = field(default_factory=list)
    nak_code: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            parse_fault(kind)
            if not 0 <= rate <= 1:
                raise ValueError(f"fault rate {kind}={rate} is not between 0 and 1")
        self._queue = deque(parse_fault(e, self.nak_code) for e in self.script)
        self._random = random.Random(self.seed)
        self.injected: dict[str, int] = {}

    def add_script(self, *entries: str | None) -> None:
        """Append faults to the script (they fire before any rate-based one)."""
        self._queue.extend(parse_fault(e, self.nak_code) for e in entries)

    def set_rate(self, kind: str, rate: float) -> None:
        parse_fault(kind)
        self.rates[kind] = rate

    def clear(self) -> None:
        self._queue.clear()
        self.rates.clear()

    def on_connect(self) -> Fault | None:
        """A fault to apply to a new connection (only ``refuse`` applies here)."""
        if self._queue:
            if self._queue[0] is not None and self._queue[0].kind == "refuse":
                return self._count(self._queue.popleft())
            return None
        return self._roll(("refuse",))

    def on_exchange(self) -> Fault | None:
        if not self._queue and not self.rates:
            return None  # a healthy meter: asked on every exchange
        if self._queue:
            if self._queue[0] is not None and self._queue[0].kind == "refuse":
                return None  # waits for the next connection
            return self._count(self._queue.popleft())
        return self._roll(KINDS[1:])

    def _roll(self, kinds) -> Fault | None:
        for kind in kinds:
            rate = self.rates.get(kind, 0)
            if rate and self._random.random() < rate:
                return self._count(Fault(kind, self.nak_code))
        return None

    def _count(self, fault: Fault | None) -> Fault | None:
        if fault is not None:
            self.injected[fault.kind] = self.injected.get(fault.kind, 0) + 1
        return fault
