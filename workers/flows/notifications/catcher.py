"""The mail catcher: a real SMTP server (aiosmtpd, the maintained successor of
the standard library's smtpd) that accepts every message and keeps it in a
Maildir instead of delivering it. ``flows up`` runs it (``flows mail catch``)
so the demo's emails can be read with ``flows mail list | show``; the tests
send through it too. Each message keeps its envelope (X-Caught-From,
X-Caught-To) and when it arrived (X-Caught-At).
"""

import asyncio
import hashlib
import itertools
import mailbox
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from flows.errors import FlowsError


class MaildirHandler:
    """aiosmtpd handler: every message into the Maildir at ``directory``, as received, after three headers
    of our own. Written without fsync (unlike the standard library's mailbox, whose fsync per message made the
    catcher the bottleneck of every send): a catcher for development and tests, not a mail store."""

    def __init__(self, directory: Path):
        self.directory = directory
        for part in ("tmp", "new", "cur"):  # a Maildir
            (directory / part).mkdir(parents=True, exist_ok=True)
        self._names = itertools.count()
        self._host = socket.gethostname().replace("/", "_").replace(":", "_")

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        caught = (f"X-Caught-From: {envelope.mail_from or ''}\r\n"
                  f"X-Caught-To: {', '.join(envelope.rcpt_tos)}\r\n"
                  f"X-Caught-At: {format_datetime(datetime.now(UTC))}\r\n").encode()
        key = f"{time.time_ns()}.{os.getpid()}_{next(self._names)}.{self._host}"
        temporary = self.directory / "tmp" / key
        temporary.write_bytes(caught + (envelope.original_content or envelope.content))
        temporary.rename(self.directory / "new" / key)  # Maildir: appears whole, or not at all
        return f"250 OK: caught as {key}"


async def serve(directory: Path, host: str, port: int) -> asyncio.Server:
    """The catcher listening on host:port (in this event loop) until the server is closed."""
    handler = MaildirHandler(directory)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SMTP(handler, hostname="flows-mail-catcher"), host, port)


@dataclass(frozen=True)
class CaughtMail:
    id: str
    caught_at: datetime
    sender: str
    to: str
    subject: str
    message: EmailMessage

    def summary(self) -> dict:
        return {"id": self.id, "caught_at": self.caught_at.isoformat(), "from": self.sender, "to": self.to,
                "subject": self.subject, "message_id": self.message["Message-ID"],
                "attachments": [part.get_filename() for part in self.message.iter_attachments()]}

    def detail(self) -> dict:
        text = self.message.get_body(("plain",))
        html = self.message.get_body(("html",))
        return {**self.summary(), "headers": dict(self.message.items()),
                "text": text.get_content() if text else None, "html": html.get_content() if html else None}


def _caught(key: str, message: EmailMessage) -> CaughtMail:
    # a short id for people to type (the Maildir key is long, and its start is the same second for many)
    return CaughtMail(id=hashlib.sha256(key.encode()).hexdigest()[:10],
                      caught_at=parsedate_to_datetime(message["X-Caught-At"]), sender=message["From"] or "",
                      to=message["X-Caught-To"] or "", subject=message["Subject"] or "", message=message)


def caught_mail(directory: Path) -> list[CaughtMail]:
    """Every caught message, oldest first."""
    if not directory.exists():
        return []
    box = mailbox.Maildir(directory, factory=lambda f: BytesParser(policy=policy.default).parse(f), create=False)
    return sorted((_caught(key, message) for key, message in box.iteritems()), key=lambda m: (m.caught_at, m.id))


def one_mail(directory: Path, key: str) -> CaughtMail:
    """A caught message by its id, or by a unique start of it."""
    matches = [m for m in caught_mail(directory) if m.id.startswith(key)]
    if len(matches) != 1:
        raise FlowsError(f"{'no' if not matches else 'more than one'} caught message {key!r} in {directory}",
                         hint="list them with `flows mail list`")
    return matches[0]
