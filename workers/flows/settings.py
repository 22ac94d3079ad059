"""Settings: where the database is, the API's JWT secret, the home folder, the vendor.

Each setting is resolved in one place, in one order: an explicit value (a
command-line option), then the environment, then the embedded stack that
``flows up`` made (its ``stack.json`` in the home folder).

    FLOWS_DATABASE_URL   the database (else the embedded stack's, over its socket)
    FLOWS_JWT_SECRET     the secret PostgREST and the gateway verify tokens with (32+ characters)
    FLOWS_JWT_AUD        the audience tokens are minted for, when the API requires one
    FLOWS_HOME           the home folder (else the embedded stack's default)
    FLOWS_VENDOR         the vending adapter (default: the test vendor)
    FLOWS_SMTP_URL       where email goes: smtp://host:port (smtps:// for TLS; user:password@ to log in;
                         ?starttls=true), else the embedded stack's mail catcher
    FLOWS_MAIL_FROM      the sender address of notifications (default notifications@flows.localhost)
    FLOWS_SMS_URL        the SMS gateway (Twilio's Messages API): https://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com,
                         else the embedded stack's test gateway
    FLOWS_SMS_FROM       the sender of texts: a number or an alphanumeric sender id (default Flows)

The command line builds one ``Settings`` and passes the values down:
connections, tokens and vending take them as arguments and never look for the
embedded stack themselves.
"""

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from flows.errors import ConfigError
from flows.stack.config import StackConfig, stack_home

MIN_JWT_SECRET = 32  # characters; a shorter HS256 secret can be brute-forced from one token
# The embedded stack's SMS test gateway (flows.notifications.sms_test_gateway) takes these credentials.
TEST_GATEWAY_ACCOUNT = "AC" + "0" * 32
TEST_GATEWAY_TOKEN = "test-gateway-token"


@dataclass(frozen=True)
class Settings:
    explicit_database_url: str | None = None
    explicit_jwt_secret: str | None = None
    home: Path = field(default_factory=stack_home)
    vendor: str = field(default_factory=lambda: os.environ.get("FLOWS_VENDOR") or "test")

    @classmethod
    def resolve(
        cls, database_url: str | None = None, jwt_secret: str | None = None, home: str | Path | None = None
    ) -> "Settings":
        """Settings from explicit values, else the environment (the stack is read only when needed)."""
        return cls(
            explicit_database_url=database_url or os.environ.get("FLOWS_DATABASE_URL") or None,
            explicit_jwt_secret=jwt_secret or os.environ.get("FLOWS_JWT_SECRET") or None,
            home=Path(home).resolve() if home else stack_home(),
        )

    @cached_property
    def stack(self) -> StackConfig | None:
        """The embedded stack living in ``home``, if ``flows up`` made one."""
        return StackConfig.load(self.home)

    @property
    def database_url(self) -> str:
        if self.explicit_database_url:
            return self.explicit_database_url
        if self.stack is not None:
            return self.stack.cluster().socket_url(self.stack.database)
        raise ConfigError(
            "no database configured",
            hint="set FLOWS_DATABASE_URL, pass --database-url, or start the embedded stack with `flows up`",
        )

    @property
    def has_database(self) -> bool:
        return bool(self.explicit_database_url) or self.stack is not None

    @property
    def jwt_secret(self) -> str:
        if self.explicit_jwt_secret:
            return check_jwt_secret(self.explicit_jwt_secret)
        if self.stack is not None:
            return check_jwt_secret(self.stack.jwt_secret)
        raise ConfigError("no JWT secret configured", hint="set FLOWS_JWT_SECRET or run `flows up` first")

    @property
    def jwt_audience(self) -> str | None:
        return os.environ.get("FLOWS_JWT_AUD") or None

    # -- notifications (docs/notifications.md) --------------------------------
    @property
    def smtp_url(self) -> str | None:
        """Where email goes: FLOWS_SMTP_URL, else the embedded stack's mail catcher, else nowhere (None)."""
        if url := os.environ.get("FLOWS_SMTP_URL"):
            return url
        if self.stack is not None and self.stack.mail_port:
            return f"smtp://127.0.0.1:{self.stack.mail_port}"
        return None

    @property
    def mail_from(self) -> str:
        return os.environ.get("FLOWS_MAIL_FROM") or "notifications@flows.localhost"

    @property
    def sms_url(self) -> str | None:
        """The SMS gateway: FLOWS_SMS_URL, else the embedded stack's test gateway, else none."""
        if url := os.environ.get("FLOWS_SMS_URL"):
            return url
        if self.stack is not None and self.stack.sms_port:
            return f"http://{TEST_GATEWAY_ACCOUNT}:{TEST_GATEWAY_TOKEN}@127.0.0.1:{self.stack.sms_port}"
        return None

    @property
    def sms_from(self) -> str:
        return os.environ.get("FLOWS_SMS_FROM") or "Flows"

    @property
    def mail_dir(self) -> Path:
        """The mail catcher's Maildir (`flows mail list` reads it)."""
        return Path(os.environ.get("FLOWS_MAIL_DIR") or self.home / "mail")


def check_jwt_secret(secret: str) -> str:
    """The secret, if long enough to sign tokens with; else a clear error."""
    if len(secret) < MIN_JWT_SECRET:
        raise ConfigError(f"the JWT secret has {len(secret)} characters; at least {MIN_JWT_SECRET} are needed",
                          hint="generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'")
    return secret
