"""Every error the EMOP codec and client raise.

Two families, both ``FlowsError`` so the CLIs print one line and an exit code:

* ``EmopError``: the bytes are wrong or the meter said no. The parser raises
  nothing but these, whatever bytes arrive. ``Nak`` (the meter refused) is also
  a ``Refused`` (exit 4).
* ``MeterUnreachable`` (an ``Unreachable``, exit 3): the transport failed after
  the configured retries; the subclass says how (refused, timed out, closed).
"""

from flows.errors import FlowsError, Refused, Unreachable


class EmopError(FlowsError):
    """Something about an EMOP frame or its content is wrong."""


class FrameError(EmopError):
    """The bytes are not a well-formed EMOP frame."""


class BadDelimiter(FrameError):
    """The frame does not start with 0x7E."""


class BadLength(FrameError):
    """The length byte does not match the bytes there are, or is too small."""


class TruncatedFrame(BadLength):
    """The connection ended in the middle of a frame."""


class BadCrc(FrameError):
    """The CRC-16/CCITT-FALSE of the frame does not match its last two bytes."""


class BadPayload(EmopError):
    """A frame is well formed but its content cannot be decoded (or encoded)."""


class UnknownObject(EmopError):
    """An object id or name this codec does not know."""


class UnexpectedResponse(EmopError):
    """A well-formed reply that does not answer the request (other object, format or sequence)."""


NAK_NAMES = {
    0: "ok",
    1: "fcs_error",
    2: "format_error",
    3: "frame_len_incorrect",
    4: "max_data_payload_exceeded",
    5: "unknown_object_id",
    6: "security_not_granted",
    7: "frame_addr_incorrect",
}


class Nak(EmopError, Refused):
    """The meter answered with a non-zero ACK/NAK code (exit code 4)."""

    def __init__(self, code: int, object_id: int | None = None, serial: str | None = None):
        self.code = code
        self.code_name = NAK_NAMES.get(code, f"code_{code}")
        self.object_id = object_id
        self.serial = serial
        what = f"object {object_id:06X}" if object_id is not None else "the request"
        who = f"meter {serial}" if serial else "the meter"
        super().__init__(f"{who} refused {what}: NAK {code} ({self.code_name})")


class MeterUnreachable(Unreachable):
    """No usable answer from the meter after every attempt (exit code 3)."""

    def __init__(self, message: str, attempts: int = 1, hint: str | None = None):
        super().__init__(message, hint)
        self.attempts = attempts


class ConnectionRefused(MeterUnreachable):
    """The meter (or the proxy on its behalf) refused or reset the connection."""


class ReplyTimeout(MeterUnreachable):
    """Connecting or waiting for the reply took longer than the timeout."""


class ConnectionClosed(MeterUnreachable):
    """The meter closed the connection without answering."""


class ProxyFailed(MeterUnreachable):
    """The SOCKS5 proxy could not be reached or failed."""
