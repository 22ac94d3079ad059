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
