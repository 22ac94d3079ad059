"""The vending adapter interface: where top-up tokens come from.

Production tokens come from an external vending service per meter (STS tokens
bound to the meter's keys); an adapter for such a service implements
``VendingAdapter`` and is registered under a name with ``register_vendor``,
with a factory that builds it from the home folder (where an adapter keeps its
files). ``get_vendor(name, home)`` returns one; which name is configured is
``flows.settings`` (``FLOWS_VENDOR``, default ``test``).
"""

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Protocol, runtime_checkable

from flows.errors import ConfigError


@dataclass(frozen=True, slots=True)
class VendedToken:
    serial: str
    amount: Decimal  # GBP
    token: str  # the digits to write to the meter (20 in practice)
    vendor: str
    sequence: int | None = None  # the vendor's per-meter counter, when it has one

    @property
    def grouped(self) -> str:
        """The token in groups of four digits, as printed for people."""
        return "-".join(self.token[i : i + 4] for i in range(0, len(self.token), 4))


@runtime_checkable
class VendingAdapter(Protocol):
    """Mints a token crediting ``amount`` GBP to meter ``serial``."""

    name: str

    async def vend(self, serial: str, amount: Decimal) -> VendedToken: ...


_FACTORIES: dict[str, Callable[[Path], VendingAdapter]] = {}


def register_vendor(name: str, factory: Callable[[Path], VendingAdapter]) -> None:
    _FACTORIES[name] = factory


def get_vendor(name: str, home: Path) -> VendingAdapter:
    """The adapter named ``name``, built for the home folder ``home``."""
    if name not in _FACTORIES:
        raise ConfigError(
            f"no vending adapter named {name!r}",
            hint=f"known: {', '.join(sorted(_FACTORIES))}; set FLOWS_VENDOR",
        )
    return _FACTORIES[name](home)
