"""The object registry: every object id docs/emop-protocol.md documents, with the codec of its payload.

``OBJECTS`` maps a name (the library's ``ObjectIdEnum`` name) to an ``ObjectDef``;
``by_id`` and ``lookup`` find one by number, name, hex (``FFC802``) or triplet
(``255.200.2``). A codec turns payload bytes into a typed value in user units and
back: ``decode`` accepts a longer payload (extra bytes are ignored, as real
clients do) and raises ``BadPayload`` for a shorter or malformed one.
"""

import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from flows.emop.errors import BadPayload, UnknownObject
from flows.emop.units import (
    datetime_to_epoch2000,
    epoch2000_to_datetime,
    money_from_raw,
    money_to_raw,
)
from flows.emop.values import (
    THREE_PHASE_FLAGS,
    Backlight,
    LoadSwitch,
    RegisterRead,
    SignalQuality,
    ThreePhaseHardware,
    TransactionDetails,
    enum_or_int,
)


class Codec:
    """Payload <-> value. ``size`` is the payload length, None when it takes the rest."""

    size: int | None = None
    kind = "raw"

    def decode(self, payload: bytes):
        raise NotImplementedError

    def encode(self, value) -> bytes:
        raise NotImplementedError

    def _need(self, payload: bytes) -> None:
        if self.size is not None and len(payload) < self.size:
            raise BadPayload(f"{self.kind} needs {self.size} payload bytes, got {len(payload)}")


class Raw(Codec):
    kind = "bytes"

    def __init__(self, size: int | None = None):
        self.size = size

    def decode(self, payload: bytes) -> bytes:
        self._need(payload)
        return bytes(payload if self.size is None else payload[: self.size])

    def encode(self, value: bytes) -> bytes:
        value = bytes(value)
        if self.size is not None and len(value) != self.size:
            raise BadPayload(f"{self.kind} is {self.size} bytes, not {len(value)}")
        return value


class Text(Codec):
    """ASCII text, the whole payload, kept verbatim (padding and NULs included)."""

    kind = "text"

    def decode(self, payload: bytes) -> str:
        return payload.decode("latin-1")

    def encode(self, value: str) -> bytes:
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            raise BadPayload(f"{value!r} is not 8-bit text") from None


class Token(Text):
    """A top-up token: ASCII digits, written as they are (20 digits in practice)."""

    kind = "token"

    def encode(self, value: str) -> bytes:
        if not value.isascii() or not value.isdigit() or len(value) > 40:
            raise BadPayload(f"a token is a string of digits, not {value!r}")
        return value.encode("ascii")


class UInt(Codec):
    """Little-endian integer of 1, 2 or 4 bytes."""

    _formats = {(1, False): "<B", (2, False): "<H", (4, False): "<I", (4, True): "<i"}

    def __init__(self, size: int, signed: bool = False):
        self.size = size
        self.kind = f"{'s' if signed else 'u'}{size * 8}"
        self._struct = struct.Struct(self._formats[(size, signed)])

    def decode(self, payload: bytes) -> int:
        self._need(payload)
        return self._struct.unpack_from(payload)[0]

    def encode(self, value: int) -> bytes:
        try:
            return self._struct.pack(value)
        except struct.error:
            raise BadPayload(f"{value!r} does not fit {self.kind}") from None


class Money(UInt):
    """u32 (or s32) count of 0.00001 GBP <-> Decimal GBP."""

    def __init__(self, signed: bool = False):
        super().__init__(4, signed)
        self.signed = signed
        self.kind = "money"

    def decode(self, payload: bytes) -> Decimal:
        return money_from_raw(super().decode(payload))

    def encode(self, value) -> bytes:
        return super().encode(money_to_raw(value, self.signed))


class Scaled(UInt):
    """Unsigned integer in 1/divisor units <-> Decimal (0.1 V, W -> kW)."""

    def __init__(self, size: int, divisor: int, kind: str):
        super().__init__(size)
        self.divisor = divisor
        self.kind = kind

    def decode(self, payload: bytes) -> Decimal:
        return Decimal(super().decode(payload)) / self.divisor

    def encode(self, value) -> bytes:
        if isinstance(value, float):
            raise BadPayload(f"{self.kind} must be a Decimal or an int, never a float")
        raw = Decimal(value) * self.divisor
        if raw != raw.to_integral_value():
            raise BadPayload(f"{value} has more precision than 1/{self.divisor}")
        return super().encode(int(raw))


class Flag(UInt):
    """One byte, 1 = enabled."""

    def __init__(self):
        super().__init__(1)
        self.kind = "flag"

    def decode(self, payload: bytes) -> bool:
        return super().decode(payload) == 1

    def encode(self, value: bool) -> bytes:
        return b"\x01" if value else b"\x00"


class Choice(UInt):
    """One byte holding an IntEnum member (unknown values stay ints)."""

    def __init__(self, enum):
        super().__init__(1)
        self.enum = enum
        self.kind = enum.__name__

    def decode(self, payload: bytes):
        return enum_or_int(self.enum, super().decode(payload))

    def encode(self, value) -> bytes:
        return super().encode(int(value))


class Timestamp(UInt):
    """u32 LE seconds since 2000 <-> aware UTC datetime."""

    def __init__(self):
        super().__init__(4)
        self.kind = "timestamp"

    def decode(self, payload: bytes) -> datetime:
        return epoch2000_to_datetime(super().decode(payload))

    def encode(self, value: datetime) -> bytes:
        return super().encode(datetime_to_epoch2000(value))


class Clock(Codec):
    """7 bytes: year-2000, month, day, hour, minute, second, weekday (0 = Sunday)."""

    size = 7
    kind = "time"

    def decode(self, payload: bytes) -> datetime:
        self._need(payload)
        year, month, day, hour, minute, second = payload[:6]
        try:
            return datetime(2000 + year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError as error:
            raise BadPayload(f"meter time {payload[:7].hex()} is not a date: {error}") from None

    def encode(self, value: datetime) -> bytes:
        if value.tzinfo is None:
            raise BadPayload("a time for the meter must be timezone-aware")
        value = value.astimezone(UTC)
        if not 2000 <= value.year <= 2255:
            raise BadPayload(f"year {value.year} is outside the meter's range")
        weekday = (value.weekday() + 1) % 7  # Python Monday=0 -> meter Sunday=0
        return bytes(
            (value.year - 2000, value.month, value.day, value.hour, value.minute, value.second, weekday)
        )


_READING = struct.Struct("<4I")


class Reading(Codec):
    """16 bytes: import/export active (Wh), import/export reactive (varh) -> kWh / kvarh."""

    size = 16
    kind = "reading"

    def decode(self, payload: bytes) -> RegisterRead:
        self._need(payload)
        return RegisterRead(*(Decimal(v) / 1000 for v in _READING.unpack_from(payload)))

    def encode(self, value: RegisterRead) -> bytes:
        raws = []
        for kwh in (value.import_active, value.export_active, value.import_reactive, value.export_reactive):
            raw = Decimal(kwh) * 1000
            if raw != raw.to_integral_value() or not 0 <= raw <= 0xFFFF_FFFF:
                raise BadPayload(f"register value {kwh} is not a whole number of Wh in range")
            raws.append(int(raw))
        return _READING.pack(*raws)


class Csq(Codec):
    """1 byte: bits 7-5 network operator, bits 4-0 csq."""

    size = 1
    kind = "csq_net_op"

    def decode(self, payload: bytes) -> SignalQuality:
        self._need(payload)
        return SignalQuality(csq=payload[0] & 0x1F, network_operator=payload[0] >> 5)

    def encode(self, value: SignalQuality) -> bytes:
        if not (0 <= value.csq <= 31 and 0 <= value.network_operator <= 7):
            raise BadPayload(f"{value} out of range")
        return bytes(((value.network_operator << 5) | value.csq,))


class ThresholdMask(Codec):
    """1 byte; returned as 8 booleans, rate 1 first (bit 0) to rate 8 (bit 7)."""

    size = 1
    kind = "threshold_mask"

    def decode(self, payload: bytes) -> tuple[bool, ...]:
        self._need(payload)
        return tuple(bool(payload[0] >> bit & 1) for bit in range(8))

    def encode(self, value) -> bytes:
        if len(value) != 8:
            raise BadPayload("a threshold mask has 8 rates")
        return bytes((sum(1 << bit for bit, on in enumerate(value) if on),))


_THRESHOLDS = struct.Struct("<7H")


class ThresholdValues(Codec):
    """14 bytes: seven u16 LE thresholds th1..th7 (unit not established)."""

    size = 14
    kind = "threshold_values"

    def decode(self, payload: bytes) -> tuple[int, ...]:
        self._need(payload)
        return _THRESHOLDS.unpack_from(payload)

    def encode(self, value) -> bytes:
        try:
            return _THRESHOLDS.pack(*value)
        except struct.error:
            raise BadPayload(f"{value!r} is not seven u16 thresholds") from None


class ThreePhaseConfig(Codec):
    """4 bytes: byte 0 bit 7 meter type (1 whole current), bits 6-0 the fitted flags."""

    size = 4
    kind = "three_phase_hardware_configuration"

    def decode(self, payload: bytes) -> ThreePhaseHardware:
        self._need(payload)
        bits = payload[0]
        flags = {name: bool(bits >> (6 - i) & 1) for i, name in enumerate(THREE_PHASE_FLAGS)}
        return ThreePhaseHardware(whole_current=bool(bits & 0x80), unused=bytes(payload[1:4]), **flags)

    def encode(self, value: ThreePhaseHardware) -> bytes:
        bits = 0x80 if value.whole_current else 0
        for i, name in enumerate(THREE_PHASE_FLAGS):
            bits |= int(getattr(value, name)) << (6 - i)
        if len(value.unused) != 3:
            raise BadPayload("three unused bytes expected")
        return bytes((bits,)) + value.unused


_DETAILS = struct.Struct("<8sIi")


class Transaction(Codec):
    """16 bytes: 8 undecoded, u32 payment time (epoch 2000), s32 payment value (money)."""

    size = 16
    kind = "monetary_info_transaction_details"

    def decode(self, payload: bytes) -> TransactionDetails:
        self._need(payload)
        undecoded, seconds, value = _DETAILS.unpack_from(payload)
        return TransactionDetails(undecoded, epoch2000_to_datetime(seconds), money_from_raw(value))

    def encode(self, value: TransactionDetails) -> bytes:
        if len(value.undecoded) != 8:
            raise BadPayload("8 undecoded bytes expected")
        seconds = datetime_to_epoch2000(value.payment_time)
        return _DETAILS.pack(value.undecoded, seconds, money_to_raw(value.payment_value, signed=True))


@dataclass(frozen=True, slots=True)
class ObjectDef:
    name: str
    id: int
    codec: Codec

    @property
    def hex(self) -> str:
        return f"{self.id:06X}"

    @property
    def triplet(self) -> str:
        return ".".join(str(b) for b in self.id.to_bytes(3, "big"))

    @property
    def wire(self) -> bytes:
        return self.id.to_bytes(3, "big")


RAW = Raw()
U8 = UInt(1)
U16 = UInt(2)
U32 = UInt(4)
MONEY = Money()
FLAG = Flag()
TEXT = Text()
VOLTS = Scaled(2, 10, "voltage")
KILOWATTS = Scaled(2, 1000, "power")

_TABLE: list[tuple[str, int, Codec]] = [
    ("firmware_version", 0x000201, RAW),
    ("three_phase_hardware_configuration", 0x000503, ThreePhaseConfig()),
    ("instantaneous_active_power", 0x010700, KILOWATTS),
    ("three_phase_total_active_import", 0x010800, U32),
    ("three_phase_total_active_export", 0x020800, U32),
    ("instantaneous_reactive_power", 0x030700, RAW),
    ("three_phase_total_reactive_import", 0x030800, U32),
    ("three_phase_total_reactive_export", 0x040800, U32),
    ("three_phase_total_apparent_import", 0x090800, U32),
    ("instantaneous_current", 0x0B0700, RAW),
    ("average_current", 0x0B1800, RAW),
    ("instantaneous_voltage", 0x0C0700, VOLTS),
    ("average_voltage", 0x0C1800, RAW),
    ("tariff_time_switch_element_a_or_single", 0x0D0000, Raw(80)),
    ("tariff_time_switch_element_b", 0x0D00FF, Raw(80)),
    ("instantaneous_power_factor", 0x0D0700, RAW),
    ("instantaneous_frequency", 0x0E0700, RAW),
    ("average_frequency", 0x0E1800, RAW),
    ("three_phase_total_apparent_export", 0x100800, U32),
    ("element_a_instantaneous_active_power_import", 0x150700, KILOWATTS),
    ("three_phase_instantaneous_voltage_l1", 0x200700, VOLTS),
    ("element_b_instantaneous_active_power_import", 0x290700, KILOWATTS),
    ("three_phase_instantaneous_voltage_l2", 0x340700, VOLTS),
    ("three_phase_instantaneous_voltage_l3", 0x480700, VOLTS),
    ("serial", 0x600100, TEXT),
    ("hardware_version", 0x608000, TEXT),
    ("time", 0x800800, Clock()),
    ("three_phase_read", 0xD7060A, RAW),
    ("three_phase_initiate_read", 0xD70A0C, RAW),
    ("active_import_demand", 0xD79600, RAW),
    ("active_export_demand", 0xD79601, RAW),
    ("reactive_import_demand", 0xD79602, RAW),
    ("reactive_export_demand", 0xD79603, RAW),
    ("reactive_energy_quadrant_1_demand", 0xD79604, RAW),
    ("reactive_energy_quadrant_2_demand", 0xD79605, RAW),
    ("reactive_energy_quadrant_3_demand", 0xD79606, RAW),
    ("reactive_energy_quadrant_4_demand", 0xD79607, RAW),
    ("three_phase_serial", 0xD7FF10, TEXT),
    ("prepay_balance", 0xFFC802, Money(signed=True)),
    ("prepay_token_send", 0xFFC803, Token()),
    ("tariff_active_prepayment_emergency_credit", 0xFFC805, MONEY),
    ("tariff_active_prepayment_ecredit_availability", 0xFFC806, MONEY),
    ("tariff_active_prepayment_debt_recovery_rate", 0xFFC807, MONEY),
    ("tariff_future_prepayment_emergency_credit", 0xFFC808, MONEY),
    ("tariff_future_prepayment_ecredit_availability", 0xFFC809, MONEY),
    ("tariff_future_prepayment_debt_recovery_rate", 0xFFC80A, MONEY),
    ("monetary_info_transaction_count", 0xFFC83E, U16),
    ("monetary_info_transaction_details", 0xFFC840, Transaction()),
    ("tariff_active_gas", 0xFFC964, MONEY),
    ("tariff_future_gas", 0xFFC965, MONEY),
    *[(f"tariff_future_element_b_tou_rate_{n}", 0xFFF600 + n, MONEY) for n in range(1, 5)],
    *[(f"tariff_active_element_b_tou_rate_{n}", 0xFFF700 + n, MONEY) for n in range(1, 5)],
    *[
        (f"tariff_{state}_block_{block}_rate_{rate}", base + (block - 1) * 8 + rate, MONEY)
        for state, base in (("future", 0xFFF800), ("active", 0xFFF900))
        for block in range(1, 9)
        for rate in range(1, 9)
    ],
    ("csq_net_op", 0xFFFD1D, Csq()),
    ("daylight_savings_correction_flag", 0xFFFF0B, FLAG),
    ("decimal_places_displayed_in_energy_registers", 0xFFFF0C, RAW),
    ("prepay_enabled_flag", 0xFFFF0D, FLAG),
    ("prepay_no_debt_recovery_when_emergency_credit_flag", 0xFFFF0E, FLAG),
    ("prepay_no_standing_charge_when_power_fail_flag", 0xFFFF0F, FLAG),
    ("backlight", 0xFFFF10, Choice(Backlight)),
    ("load_switch", 0xFFFF11, Choice(LoadSwitch)),
    ("tariff_active_threshold_values", 0xFFFF1E, ThresholdValues()),
    ("tariff_future_threshold_values", 0xFFFF1F, ThresholdValues()),
    ("tariff_active_threshold_mask", 0xFFFF20, ThresholdMask()),
    ("tariff_future_threshold_mask", 0xFFFF21, ThresholdMask()),
    ("tariff_active_standing_charge", 0xFFFF22, MONEY),
    ("tariff_future_standing_charge", 0xFFFF23, MONEY),
    ("tariff_future_activation_datetime", 0xFFFF24, Timestamp()),
    ("tariff_active_tou_rate", 0xFFFF2B, U8),
    ("tariff_active_block_rate", 0xFFFF2C, U8),
    ("tariff_active_price_index_current", 0xFFFF2D, U8),
    ("tariff_active_price", 0xFFFF2E, MONEY),
    ("event_log", 0xFFFF49, RAW),
    ("tariff_active_element_b_tou_rate", 0xFFFF4B, U8),
    ("tariff_active_element_b_price_index_current", 0xFFFF4C, U8),
    ("tariff_active_element_b_price", 0xFFFF4D, MONEY),
    ("tariff_active_tou_flag", 0xFFFF4E, RAW),
    ("tariff_future_tou_flag", 0xFFFF4F, U8),
    ("read_element_b", 0xFFFFF8, Reading()),
    ("read_element_a", 0xFFFFFC, Reading()),
]

OBJECTS: dict[str, ObjectDef] = {name: ObjectDef(name, oid, codec) for name, oid, codec in _TABLE}
_BY_ID: dict[int, ObjectDef] = {obj.id: obj for obj in OBJECTS.values()}


def by_id(object_id: int) -> ObjectDef:
    try:
        return _BY_ID[object_id]
    except KeyError:
        raise UnknownObject(f"object {object_id:06X} is not in the registry") from None


def parse_object_id(text: str) -> int:
    """An object id from a name, hex (FFC802 / 0xFFC802) or triplet (255.200.2)."""
    text = text.strip()
    if text in OBJECTS:
        return OBJECTS[text].id
    parts = text.split(".")
    try:
        if len(parts) == 3:
            values = [int(p) for p in parts]
            if all(0 <= v <= 255 for v in values):
                return int.from_bytes(bytes(values), "big")
        else:
            value = int(text.removeprefix("0x").removeprefix("0X"), 16)
            if 0 <= value <= 0xFFFFFF and len(text.removeprefix("0x").removeprefix("0X")) <= 6:
                return value
    except ValueError:
        pass
    raise UnknownObject(f"{text!r} is not an object name, 6-digit hex id or a.b.c triplet")


def lookup(name_or_id: str | int) -> ObjectDef:
    """The registered object for a name, number, hex or triplet spelling."""
    if isinstance(name_or_id, int):
        return by_id(name_or_id)
    return by_id(parse_object_id(name_or_id))


def decode_payload(object_id: int, payload: bytes):
    return by_id(object_id).codec.decode(payload)


def encode_payload(object_id: int, value) -> bytes:
    return by_id(object_id).codec.encode(value)
