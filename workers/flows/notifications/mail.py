"""Email over SMTP with aiosmtplib (maintained, asyncio-native, the async
counterpart of smtplib): a message built from the rule's templates, its
statement PDF attached, sent on a few connections kept open.

Every attempt of a message carries the same Message-ID (<outbox id@domain>):
if a crash between a send and its record sends it twice, the copies are
recognisably one message (mail clients and relays drop a repeated Message-ID).
SMTP replies decide what happens next: 5xx is permanent (a dead letter),
everything else (4xx, refused or lost connections, timeouts) is retried.
"""

import asyncio
from email.header import Header
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, parseaddr

import aiosmtplib

from flows.log import get_logger
from flows.notifications.config import SmtpTarget
from flows.notifications.queries import Attachment, Claimed
from flows.notifications.templates import TemplateFailed, Templates
from flows.notifications.transport import DeliveryFailed

log = get_logger("flows.notifications.mail")


def message_id(message: Claimed, sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "flows.localhost"
    return f"<{message.id}@{domain}>"


def build_email(message: Claimed, templates: Templates, sender: str, attachment: Attachment | None) -> Message:
    """The email of a claimed message: from the ESCO (its name, our address), replies to its contact address.
    Built with the MIME classes (email.mime): a third of the CPU of EmailMessage's header objects, which
    bounded a sender's rate (bench/bench_notifications.py)."""
    rendered = templates.email(message.template, message.parameters)
    body = MIMEMultipart("alternative")
    body.attach(MIMEText(rendered.text, "plain", "utf-8"))
    body.attach(MIMEText(rendered.html, "html", "utf-8"))
    if attachment is None:
        email = body
    else:
        email = MIMEMultipart("mixed")
        email.attach(body)
        part = MIMEApplication(attachment.content, attachment.media_type.partition("/")[2])  # application/pdf
        part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
        email.attach(part)
    name, address = parseaddr(sender)
    email["From"] = formataddr((message.parameters.get("esco_name") or name or "Flows", address), charset="utf-8")
    email["To"] = message.recipient
    if reply_to := message.parameters.get("esco_email"):
        email["Reply-To"] = reply_to
    email["Subject"] = Header(rendered.subject, "utf-8").encode()
    email["Date"] = formatdate(usegmt=True)
    email["Message-ID"] = message_id(message, sender)
    email["X-Flows-Notification"] = str(message.id)
    email["X-Flows-Rule"] = message.rule
    return email


class SmtpTransport:
    channel = "email"

    def __init__(self, target: SmtpTarget, sender: str, templates: Templates, connections: int = 8,
                 timeout: float = 30.0):
        self.target = target
        self.sender = sender
        self.templates = templates
        self.timeout = timeout
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._connections = asyncio.Semaphore(connections)

    async def deliver(self, message: Claimed, attachment: Attachment | None) -> str:
        try:
            email = build_email(message, self.templates, self.sender, attachment)
        except TemplateFailed as error:
            raise DeliveryFailed(str(error), permanent=True) from error
        async with self._connections:
            client = self._idle.get_nowait() if not self._idle.empty() else None
            try:
                if client is None or not client.is_connected:
                    client = await self._connect()
                refused, reply = await client.send_message(email, sender=parseaddr(self.sender)[1])
            except aiosmtplib.SMTPRecipientsRefused as error:
                self._keep(client)
                codes = [r.code for r in error.recipients]
                raise DeliveryFailed(f"recipient refused: {error}", permanent=all(c >= 500 for c in codes)) from error
            except aiosmtplib.SMTPResponseException as error:
                await self._drop(client)
                raise DeliveryFailed(f"SMTP {error.code} {error.message}", permanent=error.code >= 500) from error
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                await self._drop(client)
                raise DeliveryFailed(f"{type(error).__name__}: {error} ({self.target})", permanent=False) from error
            self._keep(client)
        log.debug("email accepted", notification=str(message.id), reply=reply)
        return email["Message-ID"]

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname=self.target.host, port=self.target.port, timeout=self.timeout,
                                 use_tls=self.target.use_tls, start_tls=self.target.start_tls)
        await client.connect()
        if self.target.username:
            await client.login(self.target.username, self.target.password or "")
        return client

    def _keep(self, client: aiosmtplib.SMTP | None) -> None:
        if client is not None and client.is_connected:
            self._idle.put_nowait(client)

    @staticmethod
    async def _drop(client: aiosmtplib.SMTP | None) -> None:
        if client is not None and client.is_connected:
            client.close()

    async def close(self) -> None:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
