"""Typed values carried in object payloads and log records (user units: GBP, kWh, V, UTC)."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntEnum

Backlight = IntEnum(
    "Backlight",
    {"normal_sp_or_always_off_3p": 0}
    | {f"n{k}_seconds_turn_off_3p": k for k in range(1, 31)}
    | {"always_off_sp": 0x66, "always_on_sp": 0x77, "always_on_3p": 0xFF},
)
Backlight.__doc__ = "Backlight setting (FFFF10); values outside the enum stay plain ints."


class LoadSwitch(IntEnum):
    """Load switch setting (FFFF11); values outside the enum stay plain ints."""

    normal_button_always = 0
    no_button_prepay_mode = 0x66
    no_button_credit_mode = 0x77
    never_button_required = 0x88


def enum_or_int(enum: type[IntEnum], value: int) -> IntEnum | int:
    try:
        return enum(value)
    except ValueError:
        return value


@dataclass(frozen=True, slots=True)
class RegisterRead:
    """Cumulative totals of one element: active in kWh, reactive in kvarh."""

    import_active: Decimal
    export_active: Decimal
    import_reactive: Decimal
    export_reactive: Decimal


@dataclass(frozen=True, slots=True)
class SignalQuality:
    """csq_net_op (FFFD1D): cellular signal quality 0-31 and a network operator code 0-7."""

    csq: int
    network_operator: int


THREE_PHASE_FLAGS = (
    "middle_output_terminals",  # 0 auxiliary relay fitted, 1 pulse output fitted
    "disconnect_switch",
    "gsm_communications",
    "real_time_clock",
    "magnetic_detection",
    "terminal_cover_tamper_switch",
    "top_cover_tamper_switch",
)


@dataclass(frozen=True, slots=True)
class HardwareKind:
    """A model of Emlite meter: a row of flows.hardware_kinds (sql/schema/hardware_kinds.sql).

    The EMOP client runs without a database, so it carries this copy; tests/worker/test_contract.py
    holds the two equal. Change both, in a migration, when a model is added.
    """

    model: str  # what meter_registry.hardware holds
    phases: int  # 1 or 3
    elements: int  # elements read separately: 2 = A and B (twin element); three phase reports totals as A
    prepay_capable: bool
    serial_prefix: str | None  # serials that name the model without asking the meter
    version_texts: tuple[str, ...]  # what hardware_version says (single phase only)
    description: str


HARDWARE_KINDS = {kind.model: kind for kind in (
    HardwareKind("C1.w", 1, 2, True, None, ("6C", "6Cw"), "single phase, twin element (A and B)"),
    HardwareKind("B1.w", 1, 1, True, None, ("6Bw",), "single phase, single element"),
    HardwareKind("EMA1.w", 1, 1, True, None, ("3Aw",), "single phase, single element"),
    HardwareKind("SINGLE_PHASE_UNKNOWN", 1, 1, True, None, (),
                 "single phase, hardware_version not recognised: read as one element"),
    HardwareKind("P1.ax", 3, 1, False, "EMP1AX", (),
                 "three phase, whole current; no prepayment, tariffs or profile log 1"),
    HardwareKind("P1.cx", 3, 1, False, "EMP1CX", (),
                 "three phase, CT operated; no prepayment, tariffs or profile log 1"),
)}
UNKNOWN_SINGLE_PHASE = "SINGLE_PHASE_UNKNOWN"
# hardware_version text -> model; twin-element and three-phase models.
SINGLE_PHASE_HARDWARE = {text: kind.model for kind in HARDWARE_KINDS.values() for text in kind.version_texts}
TWIN_ELEMENT_HARDWARE = frozenset(kind.model for kind in HARDWARE_KINDS.values() if kind.elements == 2)
THREE_PHASE_HARDWARE = frozenset(kind.model for kind in HARDWARE_KINDS.values() if kind.phases == 3)


def three_phase_divisor(hardware: str) -> int:
    """What three-phase registers and interval values are divided by for k-units: 1000 on P1.ax, 10000 on P1.cx."""
    return 1000 if hardware == "P1.ax" else 10000


@dataclass(frozen=True, slots=True)
class ThreePhaseHardware:
    """three_phase_hardware_configuration (000503). whole_current: P1.ax (else P1.cx, CT operated)."""

    whole_current: bool
    middle_output_terminals: bool = False
    disconnect_switch: bool = False
    gsm_communications: bool = False
    real_time_clock: bool = False
    magnetic_detection: bool = False
    terminal_cover_tamper_switch: bool = False
    top_cover_tamper_switch: bool = False
    unused: bytes = b"\x00\x00\x00"

    @property
    def hardware(self) -> str:
        return "P1.ax" if self.whole_current else "P1.cx"


@dataclass(frozen=True, slots=True)
class TransactionDetails:
    """monetary_info_transaction_details (FFC840); the first 8 bytes are not decoded by anyone."""

    undecoded: bytes
    payment_time: datetime
    payment_value: Decimal
