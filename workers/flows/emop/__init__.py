"""EMOP, the Emlite meter protocol: a pure codec (frame, messages, objects) and an async client.

Importing the package loads only the errors; the client (and its network
dependencies) loads when ``EmopClient`` / ``MeterClient`` is first used.
"""

from flows.emop.errors import (
    BadCrc,
    BadDelimiter,
    BadLength,
    BadPayload,
    ConnectionClosed,
    ConnectionRefused,
    EmopError,
    FrameError,
    MeterUnreachable,
    Nak,
    ProxyFailed,
    ReplyTimeout,
    TruncatedFrame,
    UnexpectedResponse,
    UnknownObject,
)

__all__ = [
    "BadCrc",
    "BadDelimiter",
    "BadLength",
    "BadPayload",
    "ConnectionClosed",
    "ConnectionRefused",
    "EmopClient",
    "EmopError",
    "FrameError",
    "MeterClient",
    "MeterUnreachable",
    "Nak",
    "ProxyFailed",
    "ReplyTimeout",
    "TokenNotCredited",
    "TruncatedFrame",
    "UnexpectedResponse",
    "UnknownObject",
]


def __getattr__(name):
    if name in ("EmopClient", "MeterClient", "TokenNotCredited"):
        from flows.emop import client

        return getattr(client, name)
    raise AttributeError(name)
