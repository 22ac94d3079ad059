"""The notification jobs' boundary with the database: the named SQL functions
they call (sql/schema/notifications/), here and nowhere else, and the
connections they run on. Versioned (``_v1``) like the worker's: a running
worker calls them while migrations deploy (docs/database.md).

Errors leave as the worker's: ``QueryFailed`` (the database did not do it),
``Fenced`` when the sender no longer holds the message (FL409).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from flows.worker.queries import Fenced, PooledQueries, QueryFailed, _driver_errors

CHANNEL = "flows_notifications"  # NOTIFY'd when messages are queued (flows.ring_notification_senders)

__all__ = ["CHANNEL", "Attachment", "Claimed", "Fenced", "NotificationQueries", "QueryFailed", "RuleRun"]


@dataclass(frozen=True)
class Claimed:
    """A message a sender holds under a lease, on its ``attempt``."""

    id: UUID
    esco_code: str
    rule: str
    channel: str
    recipient: str
    template: str
    parameters: dict
    invoice_id: UUID | None
    attempt: int
    max_attempts: int
    created_at: datetime
    send_after: datetime
    lease_expires_at: datetime


@dataclass(frozen=True)
class Attachment:
    filename: str
    media_type: str
    content: bytes


@dataclass(frozen=True)
class RuleRun:
    rule: str
    queued: int
    error: str | None


class NotificationQueries(PooledQueries):
    async def run_rules(self) -> list[RuleRun]:
        with _driver_errors():
            rows = await self.pool.fetch("SELECT rule, queued, error FROM flows.run_notification_rules_v1()")
        return [RuleRun(r["rule"], r["queued"], r["error"]) for r in rows]

    async def claim(self, channel: str, limit: int, lease: timedelta) -> list[Claimed]:
        with _driver_errors():
            rows = await self.pool.fetch("SELECT * FROM flows.claim_notifications_v1($1, $2, $3, $4)",
                                         channel, self.worker, limit, lease)
        return [Claimed(**dict(r)) for r in rows]

    async def record_sent(self, message: Claimed, provider_message_id: str) -> None:
        with _driver_errors():
            await self.pool.execute("SELECT flows.record_notification_sent_v1($1, $2, $3, $4)",
                                    message.id, self.worker, message.attempt, provider_message_id)

    async def record_failed(self, message: Claimed, error: str, permanent: bool, backoff: timedelta) -> str:
        with _driver_errors():
            return await self.pool.fetchval("SELECT flows.record_notification_failed_v1($1, $2, $3, $4, $5, $6)",
                                            message.id, self.worker, message.attempt, error, permanent, backoff)

    async def release(self, messages: list[Claimed]) -> int:
        with _driver_errors():
            return await self.pool.fetchval("SELECT flows.release_notifications_v1($1, $2, $3)", self.worker,
                                            [m.id for m in messages], [m.attempt for m in messages])

    async def attachment(self, message: Claimed) -> Attachment | None:
        with _driver_errors():
            row = await self.pool.fetchrow("SELECT * FROM flows.notification_attachment_v1($1)", message.id)
        return Attachment(row["filename"], row["media_type"], row["content"]) if row else None
