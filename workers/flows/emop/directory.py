"""Where a meter is: serial -> host and port.

An address comes from the caller (``--host/--port`` in the CLI) or from the
resolvers added with ``register_resolver``: functions serial -> MeterAddress or
None, tried when no host is given. The `emop` CLI adds the database lookup
(``flows.db.meters.address_from_database``: meter_registry.ip_address and
emop_port).
"""

from collections.abc import Callable
from dataclasses import dataclass

from flows.errors import ConfigError

DEFAULT_PORT = 8080


@dataclass(frozen=True, slots=True)
class MeterAddress:
    serial: str | None
    host: str
    port: int = DEFAULT_PORT


Resolver = Callable[[str], MeterAddress | None]
_resolvers: list[Resolver] = []


def register_resolver(resolver: Resolver) -> None:
    """Add a lookup (e.g. by serial in the database); the first that knows the serial wins."""
    _resolvers.append(resolver)


def resolve(serial: str | None, host: str | None = None, port: int | None = None) -> MeterAddress:
    if host:
        return MeterAddress(serial, host, port or DEFAULT_PORT)
    if not serial:
        raise ConfigError("which meter?", hint="give a SERIAL (or -s SERIAL) and --host/--port")
    for resolver in _resolvers:
        found = resolver(serial)
        if found is not None:
            return MeterAddress(serial, found.host, port or found.port)
    raise ConfigError(
        f"no address known for meter {serial}",
        hint="pass --host (and --port), or register the meter and set FLOWS_DATABASE_URL",
    )
