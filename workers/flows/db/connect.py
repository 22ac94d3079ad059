"""Connecting to the Flows database, with one clear line when it is unreachable.

Which database is the caller's business (``flows.settings``).
"""

import os
from urllib.parse import parse_qs, urlsplit

import psycopg

from flows.errors import Unreachable


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
