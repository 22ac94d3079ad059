"""How the notification jobs are set up: where mail goes, and the senders' pace."""

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlsplit

from flows.errors import ConfigError


@dataclass(frozen=True)
class SmtpTarget:
    """An SMTP server from a URL: smtp://host:port (plain), smtps://host:port (TLS from the start),
    smtp://user:password@host:port?starttls=true (log in, after STARTTLS)."""

    host: str
    port: int
    use_tls: bool = False
    start_tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> "SmtpTarget":
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(f"not an SMTP URL: {url!r}", hint="e.g. smtp://127.0.0.1:1025 or smtps://relay:465")
        options = parse_qs(parts.query)
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            use_tls=parts.scheme == "smtps",
            start_tls=options.get("starttls", ["false"])[0].lower() in ("1", "true", "yes"),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:  # never the password
        return f"{'smtps' if self.use_tls else 'smtp'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class SenderConfig:
    """A sender's pace. The lease must outlast a send (timeout) and its record, so a live sender never
    loses a message to another one mid-send (docs/notifications.md, "The send/record window")."""

    batch: int = 64  # messages claimed at once
    concurrency: int = 8  # sent at once (SMTP connections kept open)
    lease: timedelta = timedelta(minutes=2)
    poll: float = 5.0  # seconds between claims when no NOTIFY rings
    retry_backoff: timedelta = timedelta(seconds=30)  # first retry; doubles, at most 30 minutes
    send_timeout: float = 30.0  # seconds for one delivery

    def __post_init__(self):
        if self.lease.total_seconds() < 2 * self.send_timeout:
            raise ConfigError(f"a sender's lease ({self.lease}) must be at least twice its send timeout "
                              f"({self.send_timeout} s)", hint="so a message is recorded before its lease runs out")


@dataclass(frozen=True)
class RulesConfig:
    interval: float = 10.0  # seconds between rule passes
