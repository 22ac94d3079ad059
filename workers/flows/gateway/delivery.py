"""What the WebSocket and SSE transports share: a client session (its token's
expiry), the loop that takes messages from an outbox until the token expires,
and the accounting of what was delivered."""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from flows.gateway import metrics
from flows.gateway.principal import Principal
from flows.gateway.subscriptions import Message, Outbox

HEARTBEAT = "heartbeat"
EXPIRED = "expired"


@dataclass
class Session:
    principal: Principal
    expires_at: float | None

    def seconds_left(self) -> float | None:
        return None if self.expires_at is None else self.expires_at - time.time()


async def messages(outbox: Outbox, session: Session, heartbeat: float) -> AsyncIterator[Message | str]:
    """Messages as they come, HEARTBEAT after ``heartbeat`` idle seconds, and EXPIRED (last) when the token runs out."""
    while True:
        left = session.seconds_left()
        if left is not None and left <= 0:
            yield EXPIRED
            return
        message = await outbox.get(heartbeat if left is None else min(heartbeat, left))
        if message is None:
            left = session.seconds_left()
            yield EXPIRED if left is not None and left <= 0 else HEARTBEAT
            if left is not None and left <= 0:
                return
            continue
        yield message


def delivered(message: Message) -> None:
    """Count a message handed to the client's socket, and how long after its commit."""
    if message.kind == "change":
        metrics.EVENTS.labels(message.subscription.relation).inc(message.changes)
        if message.committed_at is not None:
            metrics.DELIVERY.observe(max(0.0, time.time() - message.committed_at))
