"""Errors a user sees, each with the exit code the CLIs return for it.

Exit codes: 1 failure, 2 usage error (click's own), 3 something is unreachable
(database, meter), 4 a meter refused the request (NAK).
"""


class FlowsError(Exception):
    """An error with a message fit for one line on a terminal."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message} ({self.hint})" if self.hint else message


class ConfigError(FlowsError):
    """Configuration is missing or wrong."""

    exit_code = 2


class Unreachable(FlowsError):
    """A database or meter could not be reached."""

    exit_code = 3


class Refused(FlowsError):
    """The other side answered but refused (e.g. a meter NAK)."""

    exit_code = 4
