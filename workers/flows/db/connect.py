"""Finding and connecting to the Flows database.

The URL comes from, in order: an explicit argument (``--database-url``), the
``FLOWS_DATABASE_URL`` environment variable, or the embedded stack created by
``flows up`` (superuser over its private Unix socket).
"""

import os
from urllib.parse import parse_qs, urlsplit

import psycopg

from flows.errors import ConfigError, Unreachable


def database_url(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    if os.environ.get("FLOWS_DATABASE_URL"):
        return os.environ["FLOWS_DATABASE_URL"]
    from flows.stack.config import StackConfig

    stack = StackConfig.load()
    if stack is not None:
        return stack.cluster().socket_url(stack.database)
    raise ConfigError(
        "no database configured",
        hint="set FLOWS_DATABASE_URL, pass --database-url, or start the embedded stack with `flows up`",
    )


def describe(url: str) -> str:
    """``host:port/dbname`` of a URL, without credentials, for messages."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = parts.hostname or query.get("host", ["local socket"])[0]
    port = parts.port or query.get("port", ["5432"])[0]
    return f"{host}:{port}{parts.path or '/'}"


def first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line.removeprefix("connection failed: ")


def connect(url: str, **kwargs) -> psycopg.Connection:
    """A psycopg connection, or ``Unreachable`` with one clear line."""
    try:
        return psycopg.connect(url, connect_timeout=int(os.environ.get("FLOWS_CONNECT_TIMEOUT", "5")), **kwargs)
    except psycopg.OperationalError as error:
        raise Unreachable(f"cannot connect to the database at {describe(url)}: {first_line(error)}") from None
