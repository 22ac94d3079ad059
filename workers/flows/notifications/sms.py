"""Texts through an SMS gateway over HTTP. ``SmsGateway`` is the adapter a
provider implements; ``TwilioGateway`` speaks Twilio's Messages API (the
provider's real wire format: POST
/2010-04-01/Accounts/{AccountSid}/Messages.json, form-encoded To, From and
Body, HTTP Basic auth with the account SID and auth token; 201 with the
message's ``sid``; errors as JSON ``{"code", "message", "status"}``). Tests
and the embedded stack run it against sms_test_gateway.py, a local stand-in
speaking the same format.

HTTP 4xx but 429 is permanent (a number Twilio will not text, a body it
refuses), except 401/403 (credentials: retried, as a fix makes them pass);
429, 5xx and transport errors are retried.
"""

from typing import Protocol
from urllib.parse import unquote, urlsplit

import httpx

from flows.errors import ConfigError
from flows.notifications.queries import Attachment, Claimed
from flows.notifications.templates import TemplateFailed, Templates
from flows.notifications.transport import DeliveryFailed

API_VERSION = "2010-04-01"


class SmsGateway(Protocol):
    async def send(self, to: str, body: str) -> str:
        """Sends a text; returns the gateway's id for it, or raises DeliveryFailed."""
        ...

    async def close(self) -> None: ...


def gateway_url(url: str) -> tuple[str, str, str]:
    """(base URL, account SID, auth token) of https://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.username or not parts.password or not parts.hostname:
        raise ConfigError("the SMS gateway URL needs the account SID and auth token",
                          hint="FLOWS_SMS_URL=https://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com")
    base = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
    return base, unquote(parts.username), unquote(parts.password)


class TwilioGateway:
    def __init__(self, url: str, sender: str, timeout: float = 30.0):
        """``url``: the API's base with the credentials (gateway_url)."""
        base, self.account, token = gateway_url(url)
        self.sender = sender
        self.http = httpx.AsyncClient(base_url=base, auth=(self.account, token), timeout=timeout)

    async def send(self, to: str, body: str) -> str:
        try:
            response = await self.http.post(f"/{API_VERSION}/Accounts/{self.account}/Messages.json",
                                            data={"To": to, "From": self.sender, "Body": body})
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"SMS gateway unreachable: {type(error).__name__}: {error}", permanent=False) \
                from error
        if response.status_code in (200, 201):
            return response.json()["sid"]
        try:
            detail = response.json()
            reason = f"HTTP {response.status_code}, Twilio error {detail.get('code')}: {detail.get('message')}"
        except ValueError:
            reason = f"HTTP {response.status_code}: {response.text[:200]}"
        status = response.status_code
        raise DeliveryFailed(reason, permanent=400 <= status < 500 and status not in (401, 403, 408, 429))

    async def close(self) -> None:
        await self.http.aclose()


class SmsTransport:
    channel = "sms"

    def __init__(self, gateway: SmsGateway, templates: Templates):
        self.gateway = gateway
        self.templates = templates

    async def deliver(self, message: Claimed, attachment: Attachment | None) -> str:
        try:
            body = self.templates.sms(message.template, message.parameters)
        except TemplateFailed as error:
            raise DeliveryFailed(str(error), permanent=True) from error
        return await self.gateway.send(message.recipient, body)

    async def close(self) -> None:
        await self.gateway.close()
