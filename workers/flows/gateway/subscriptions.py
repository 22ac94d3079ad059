"""Subscriptions and the bounded outbox of each client connection.

The feed puts messages into a connection's outbox; the connection's writer
takes them out and sends them. An outbox holds at most ``limit`` messages: when
a slow client lets it fill, it is emptied and each of its subscriptions is told
to resync (reload its state and carry on from the position in the message),
so a slow client never costs unbounded memory.
"""

import asyncio
import itertools
import json
from collections import deque
from dataclasses import dataclass, field

from flows.gateway import filters, metrics
from flows.gateway.principal import Principal

_ids = itertools.count(1)


@dataclass(frozen=True)
class Message:
    """One message for one subscription: ``body`` is the JSON object's members, without braces."""

    kind: str  # change | snapshot | resync | error
    subscription: "Subscription"
    position: int
    body: str
    committed_at: float | None = None  # epoch seconds of the commit (changes only)
    changes: int = 0


@dataclass(eq=False)
class Subscription:
    name: str  # the client's name for it (WebSocket), or "stream" (SSE)
    relation: str
    filter: list[dict]
    filter_key: str
    principal: Principal
    outbox: "Outbox"
    transport: str
    since: int | None = None
    snapshot: bool = False
    pinned: frozenset[str] | None = None  # the only keys the filter can match, if it pins the key column
    cursor: int = 0  # changes up to here were delivered (or did not concern it)
    joined: bool = False
    resync_due: str | None = None  # why it must resync once the current step is done
    serial: int = field(default_factory=lambda: next(_ids))

    @classmethod
    def create(cls, name: str, relation: str, conditions: list[dict], principal: Principal, outbox: "Outbox",
               transport: str, key_column: str | None, since: int | None = None,
               snapshot: bool = False) -> "Subscription":
        return cls(name=name, relation=relation, filter=conditions, filter_key=filters.canonical(conditions),
                   principal=principal, outbox=outbox, transport=transport, since=since, snapshot=snapshot,
                   pinned=filters.pinned_keys(conditions, key_column) if key_column else None)

    def envelope(self) -> str:
        """What every message to this subscription starts with."""
        return f'"relation":{json.dumps(self.relation)}'


class Outbox:
    def __init__(self, limit: int):
        self.limit = limit
        self.messages: deque[Message] = deque()
        self.ready = asyncio.Event()
        self.subscriptions: set[Subscription] = set()

    def put(self, message: Message) -> None:
        if message.subscription.resync_due:
            return  # covered by the resync it is about to get
        if len(self.messages) >= self.limit:
            self._overflow()
            return
        self.messages.append(message)
        self.ready.set()

    def put_control(self, message: Message) -> None:
        """Resyncs and errors: never dropped (the outbox was just emptied for them, or they end a subscription)."""
        self.messages.append(message)
        self.ready.set()

    def _overflow(self) -> None:
        metrics.QUEUE_DROPS.inc(len(self.messages))
        self.messages.clear()
        for subscription in self.subscriptions:
            subscription.resync_due = "slow client"

    async def get(self, timeout: float | None) -> Message | None:
        """The next message, or None after ``timeout`` seconds without one."""
        if not self.messages:
            self.ready.clear()
            try:
                await asyncio.wait_for(self.ready.wait(), timeout)
            except TimeoutError:
                return None
        return self.messages.popleft() if self.messages else None
