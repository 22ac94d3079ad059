"""What the client's high-level methods return, and how any of it becomes JSON.

Money is Decimal GBP, energy Decimal kWh (kvarh for reactive), voltages Decimal
volts, times aware UTC datetimes. ``to_jsonable`` turns any result into plain
JSON types: Decimal -> string (never float), datetime -> ISO 8601, enum -> name,
bytes -> hex.
"""

import dataclasses
from datetime import date, datetime
from decimal import Decimal
from enum import Enum, IntFlag

from flows.emop.values import RegisterRead

TARIFF_KEYS = (
    "standing_charge",
    "unit_rate_element_a",
    "unit_rate_element_b",
    "prepayment_emergency_credit",
    "prepayment_ecredit_availability",
    "prepayment_debt_recovery_rate",
)  # the money keys of the tariff JSON (docs/data-model.md)


@dataclasses.dataclass(frozen=True, slots=True)
class Tariff:
    """A meter tariff in GBP (unit rates per kWh, standing charge and debt recovery per day).

    ``activation_datetime`` is set for the future tariff only (UTC, already
    converted from UK wall-clock time when the meter corrects for daylight saving).
    """

    standing_charge: Decimal
    unit_rate_element_a: Decimal
    unit_rate_element_b: Decimal
    prepayment_emergency_credit: Decimal
    prepayment_ecredit_availability: Decimal
    prepayment_debt_recovery_rate: Decimal
    threshold_mask: tuple[bool, ...] = (False,) * 8
    threshold_values: tuple[int, ...] = (0,) * 7
    activation_datetime: datetime | None = None
    block_rate: int | None = None
    element_b_tou_rate: int | None = None

    def to_json(self) -> dict:
        """The tariff JSON of docs/data-model.md (meter_shadows.tariffs_active / tariffs_future)."""
        out = {key: str(getattr(self, key)) for key in TARIFF_KEYS}
        if self.activation_datetime is not None:
            out["activation_datetime"] = self.activation_datetime.isoformat()
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class ThreePhaseTotals:
    """Total registers of a three-phase meter in kWh / kvarh / kVAh; None where a read failed."""

    active_import: Decimal | None
    active_export: Decimal | None
    reactive_import: Decimal | None
    reactive_export: Decimal | None
    apparent_import: Decimal | None
    apparent_export: Decimal | None


@dataclasses.dataclass(frozen=True, slots=True)
class MeterRead:
    """``read``: the registers the hardware has (element B only on twin-element meters)."""

    hardware: str
    element_a: RegisterRead | None = None
    element_b: RegisterRead | None = None
    three_phase: ThreePhaseTotals | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TopUp:
    """A token push confirmed by the meter: balance and transaction count before and after."""

    token: str
    balance_before: Decimal
    balance_after: Decimal
    transactions_before: int
    transactions_after: int

    @property
    def credited(self) -> Decimal:
        return self.balance_after - self.balance_before


@dataclasses.dataclass(frozen=True, slots=True)
class ThreePhaseIntervalValues:
    start: datetime
    status: int
    values: dict[str, Decimal]  # channel id (hex) -> scaled value


_PLAIN = frozenset((str, int, bool, type(None)))


def to_jsonable(value):
    """Plain JSON types for any result (dataclasses, Decimal, datetime, enums, bytes, containers)."""
    kind = type(value)  # the common exact types first: a worker converts every reading it records
    if kind in _PLAIN:
        return value
    if kind is Decimal:
        return str(value)
    if kind is datetime:
        return value.isoformat()
    if kind is dict:
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in ("name", "credited", "hardware"):
            attr = getattr(type(value), name, None)
            if isinstance(attr, property):
                out[name] = to_jsonable(getattr(value, name))
        return out
    if isinstance(value, IntFlag):
        return sorted(member.name.lower() for member in type(value) if member in value)
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"cannot make {type(value).__name__} JSON")
