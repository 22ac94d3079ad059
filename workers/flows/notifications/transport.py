"""What a sender delivers through: a channel's transport (mail.SmtpTransport, sms.SmsTransport).

A transport renders the message from its template and hands it to the
provider; it returns the provider's id for it, or raises ``DeliveryFailed``:
permanent when trying again cannot help (a refused address, a template that
does not render), else retried after the backoff.
"""

from typing import Protocol

from flows.notifications.queries import Attachment, Claimed


class DeliveryFailed(Exception):
    def __init__(self, reason: str, permanent: bool):
        super().__init__(reason)
        self.permanent = permanent


class Transport(Protocol):
    channel: str

    async def deliver(self, message: Claimed, attachment: Attachment | None) -> str:
        """Sends ``message``; returns the provider's id for it."""
        ...

    async def close(self) -> None: ...
