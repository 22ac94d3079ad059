"""Data fields (format byte + message) of every format simt-emlite uses (docs/emop-protocol.md §4-§7).

Builders return the data field bytes (what goes inside a frame); parsers take a
data field and raise only ``EmopError`` subclasses. Request timestamps of the
log formats are big-endian, every timestamp inside a response little-endian.
"""

import struct
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import IntFlag

from flows.emop.errors import BadPayload
from flows.emop.frame import (
    FORMAT_DEFAULT,
    FORMAT_EVENT_LOG,
    FORMAT_PROFILE_LOG_1,
    FORMAT_PROFILE_LOG_2,
    FORMAT_THREE_PHASE_INTERVALS,
    MAX_DATA_FIELD,
)
from flows.emop.units import datetime_to_epoch2000, epoch2000_to_datetime

READ = 0
WRITE = 1
EVENT_LOG_OBJECT = 0xFFFF49
EVENT_LOG_PAGES = 10
EVENTS_PER_PAGE = 10
PROFILE_BODY = 80


# -- default format (0x01): object id, r/w flag, payload ----------------------------------


@dataclass(slots=True)
class DefaultMessage:
    object_id: int
    read_write: int = READ
    payload: bytes = b""

    def to_data(self) -> bytes:
        return b"\x01" + self.object_id.to_bytes(3, "big") + bytes((self.read_write,)) + self.payload


def read_request(object_id: int) -> bytes:
    return b"\x01" + object_id.to_bytes(3, "big") + b"\x00"


def write_request(object_id: int, payload: bytes) -> bytes:
    return b"\x01" + object_id.to_bytes(3, "big") + b"\x01" + payload


def parse_default(data: bytes) -> DefaultMessage:
    if not data or data[0] != FORMAT_DEFAULT:
        raise BadPayload(f"expected the default format 01, got {data[:1].hex() or 'nothing'}")
    if len(data) < 5:
        raise BadPayload(f"a default message has at least 4 bytes, got {len(data) - 1}")
    return DefaultMessage(int.from_bytes(data[1:4], "big"), data[4], bytes(data[5:]))


# -- event log (0x05) --------------------------------------------------------------------

EVENT_NAMES = {
    1: "bm_over_current", 2: "bm_faulty_contactor", 3: "bm_reverse_energy_detect",
    4: "bm_terminal_cover_removed", 5: "bm_watchdog_reset", 6: "bm_nv_write_exceeded",
    7: "bm_metrology_error", 8: "bm_memory_error", 9: "bm_module_removed", 10: "bm_magnetic_fraud",
    11: "bm_non_legal_time", 15: "bm_spad_1_write", 16: "bm_spad_2_write", 17: "dsp_error",
    18: "bm_comms_error", 19: "gw_comms_error", 20: "pf_tag_1_error", 21: "pf_tag_2_error",
    22: "spare_0020", 23: "spare_0040", 24: "spare_0080", 25: "non_legal_time", 26: "memory_type",
    27: "memory_error", 28: "watchdog_reset", 29: "sw_image_wdog", 30: "sw_image_hes_previous",
    31: "sw_image_applied", 32: "sw_image_bad", 33: "event_power_up", 34: "event_power_dn",
    35: "event_image_received", 36: "event_log_reset_id", 37: "event_image_error",
    38: "daily_log_snapshot", 39: "billing_log_snapshot", 40: "do_bind_command",
    41: "do_unbind_command", 42: "new_image_applied", 43: "watchdog_image_applied",
    44: "previous_image_applied", 61: "hes_msg_pending", 62: "sm_comms_error", 63: "wan_comms_error",
    64: "han_comms_error_gas", 65: "han_comms_error_ihu", 66: "han_api_not_responding",
    67: "spare_0040_2", 68: "spare_0080_2", 69: "non_legal_time_2", 70: "memory_type_2",
    71: "memory_error_2", 72: "watchdog_reset_2", 73: "sw_image_wdog_2", 74: "sw_image_hes_previous_2",
    75: "sw_image_applied_2", 76: "sw_image_bad_2", 77: "event_image_received_2",
    78: "event_log_reset_id_2", 80: "han_device_joined", 81: "han_device_left",
    83: "invalid_wan_message", 84: "event_power_up_2", 85: "event_power_down",
    86: "last_gasp_sent_to_hes", 87: "alarm_sent_to_hes", 88: "event_image_error_2",
    89: "gw_do_unbind_command", 90: "gw_do_bind_command", 91: "gw_new_image_applied",
    92: "gw_watchdog_image_applied", 93: "gw_previous_image_applied", 94: "gsm_reset_no_connection",
    95: "status_word_reset", 96: "zigbee_get_sw_ver_err", 97: "zigbee_send_mac_link_err",
    98: "zigbee_shutodwn_err", 99: "zigbee_active_image_err", 104: "listening_socket_aborted",
    105: "auto_roaming_disable",
}  # fmt: skip
_EVENT = struct.Struct("<IBB")


@dataclass(frozen=True, slots=True)
class Event:
    timestamp: datetime
    event_id: int
    event_set: int

    @property
    def name(self) -> str:
        return EVENT_NAMES.get(self.event_id, f"event_{self.event_id}")


@dataclass(slots=True)
class EventLogPage:
    index: int
    events: list[Event]


def event_log_request(index: int) -> bytes:
    if not 0 <= index < EVENT_LOG_PAGES:
        raise BadPayload(f"event log page {index} is not 0-9")
    return bytes((FORMAT_EVENT_LOG,)) + EVENT_LOG_OBJECT.to_bytes(3, "big") + bytes((index,))


def parse_event_log_request(data: bytes) -> int:
    if len(data) < 5 or data[0] != FORMAT_EVENT_LOG or int.from_bytes(data[1:4], "big") != EVENT_LOG_OBJECT:
        raise BadPayload(f"not an event log request: {data.hex()}")
    return data[4]


def event_log_response(index: int, events: list[Event]) -> bytes:
    """Ten events, newest first; missing ones are zero (id 0, which readers skip)."""
    body = b"".join(
        _EVENT.pack(datetime_to_epoch2000(e.timestamp), e.event_id, e.event_set) for e in events[:10]
    )
    body += bytes(6 * (EVENTS_PER_PAGE - min(len(events), EVENTS_PER_PAGE)))
    return bytes((FORMAT_EVENT_LOG,)) + EVENT_LOG_OBJECT.to_bytes(3, "big") + bytes((index,)) + body


def parse_event_log(data: bytes) -> EventLogPage:
    if not data or data[0] != FORMAT_EVENT_LOG:
        raise BadPayload(f"expected the event log format 05, got {data[:1].hex() or 'nothing'}")
    if len(data) < 65:
        raise BadPayload(f"an event log page is 64 bytes, got {len(data) - 1}")
    events = []
    for i in range(EVENTS_PER_PAGE):
        seconds, event_id, event_set = _EVENT.unpack_from(data, 5 + 6 * i)
        events.append(Event(epoch2000_to_datetime(seconds), event_id, event_set))
    return EventLogPage(data[4], events)


# -- profile logs (0x03, 0x04) -----------------------------------------------------------


class ProfileStatus(IntFlag):
    """Profile-log status word: first wire byte in the high 8 bits, second in the low 8."""

    RESET = 0x0100
    VALID_DATA = 0x0080
    POWER_FAIL = 0x0040
    MINOR_TIME_ERROR = 0x0020
    MAJOR_TIME_ERROR = 0x0010
    COMMS_ERROR = 0x0008


@dataclass(frozen=True, slots=True)
class ProfileLog1Record:
    """Cumulative element A/B active import (kWh) at the start of a half hour."""

    timestamp: datetime
    status: ProfileStatus
    import_a: Decimal
    import_b: Decimal


@dataclass(frozen=True, slots=True)
class ProfileLog2Record:
    """Export, reactive registers and voltage; the B fields only on twin-element meters."""

    timestamp: datetime
    status: ProfileStatus
    active_export_a: Decimal
    reactive_import_a: Decimal
    reactive_export_a: Decimal
    voltage: int  # raw; unit not established (0.1 V would match the other voltage objects)
    active_export_b: Decimal | None = None
    reactive_import_b: Decimal | None = None
    reactive_export_b: Decimal | None = None


@dataclass(slots=True)
class ProfileLogPage:
    format: int
    header: bytes
    records: list = field(default_factory=list)


_PL1 = struct.Struct("<IHII")
_PL2_SINGLE = struct.Struct("<IH4I")
_PL2_TWIN = struct.Struct("<IH7I")


def profile_log_request(log: int, timestamp: datetime) -> bytes:
    """log 1 or 2; the timestamp goes big-endian (as the library's request class writes it)."""
    fmt = {1: FORMAT_PROFILE_LOG_1, 2: FORMAT_PROFILE_LOG_2}[log]
    return bytes((fmt,)) + datetime_to_epoch2000(timestamp).to_bytes(4, "big")


def parse_profile_log_request(data: bytes) -> tuple[int, datetime]:
    if len(data) != 5 or data[0] not in (FORMAT_PROFILE_LOG_1, FORMAT_PROFILE_LOG_2):
        raise BadPayload(f"not a profile log request: {data.hex()}")
    return data[0] - 2, epoch2000_to_datetime(int.from_bytes(data[1:5], "big"))


def _status(word: int) -> ProfileStatus:
    return ProfileStatus(word)


def _wire_status(status: int) -> int:
    # the struct packs little-endian; the first wire byte is the high half of the word
    return ((status & 0xFF) << 8) | (status >> 8)


def profile_log_response(log: int, header: bytes, records: list, twin: bool = False) -> bytes:
    """Header (4 bytes, echoed from the request) + an 80-byte body of records, zero padded."""
    fmt = {1: FORMAT_PROFILE_LOG_1, 2: FORMAT_PROFILE_LOG_2}[log]
    parts = []
    for r in records:
        ts, status = datetime_to_epoch2000(r.timestamp), _wire_status(int(r.status))
        if log == 1:
            parts.append(_PL1.pack(ts, status, _wh(r.import_a), _wh(r.import_b)))
        else:
            values = [r.active_export_a, r.reactive_import_a, r.reactive_export_a]
            tail = [r.active_export_b, r.reactive_import_b, r.reactive_export_b] if twin else []
            packer = _PL2_TWIN if twin else _PL2_SINGLE
            parts.append(packer.pack(ts, status, *map(_wh, values[:3]), r.voltage, *map(_wh, tail)))
    body = b"".join(parts)
    if len(body) > PROFILE_BODY:
        raise BadPayload(f"{len(records)} records do not fit the {PROFILE_BODY}-byte body")
    return bytes((fmt,)) + header + body + bytes(PROFILE_BODY - len(body))


def _wh(kwh: Decimal) -> int:
    raw = Decimal(kwh) * 1000
    if raw != raw.to_integral_value() or not 0 <= raw <= 0xFFFF_FFFF:
        raise BadPayload(f"{kwh} kWh is not a whole number of Wh in range")
    return int(raw)


def _kwh(wh: int) -> Decimal:
    return Decimal(wh) / 1000


def records_per_page(log: int, twin: bool) -> int:
    if log == 1:
        return PROFILE_BODY // _PL1.size  # 5 (simt-emlite decodes only the first 4)
    return PROFILE_BODY // (_PL2_TWIN.size if twin else _PL2_SINGLE.size)  # 2 or 3


def parse_profile_log(data: bytes, twin: bool = False) -> ProfileLogPage:
    """A profile log 1 or 2 response; all-zero records are padding and end the list."""
    if not data or data[0] not in (FORMAT_PROFILE_LOG_1, FORMAT_PROFILE_LOG_2):
        raise BadPayload(f"expected a profile log format 03/04, got {data[:1].hex() or 'nothing'}")
    if len(data) < 5:
        raise BadPayload("a profile log response has a 4-byte header")
    log = data[0] - 2
    packer = _PL1 if log == 1 else (_PL2_TWIN if twin else _PL2_SINGLE)
    page = ProfileLogPage(data[0], bytes(data[1:5]))
    offset = 5
    while offset + packer.size <= len(data):
        chunk = data[offset : offset + packer.size]
        offset += packer.size
        if not any(chunk):
            break
        ts, wire_status, *values = packer.unpack(chunk)
        when, status = epoch2000_to_datetime(ts), _status(_wire_status(wire_status))
        if log == 1:
            page.records.append(ProfileLog1Record(when, status, _kwh(values[0]), _kwh(values[1])))
        else:
            b_values = [_kwh(v) for v in values[4:7]] if twin else [None, None, None]
            page.records.append(
                ProfileLog2Record(when, status, *(_kwh(v) for v in values[:3]), values[3], *b_values)
            )
    return page


# -- three-phase interval profile (0x14) -------------------------------------------------

_INTERVAL_REQUEST = struct.Struct(">BBII4s")


@dataclass(frozen=True, slots=True)
class ThreePhaseIntervalsRequest:
    start: datetime
    end: datetime
    profile: int = 0  # 0 profile_0 (always used), 1 profile_1, 255 reset


@dataclass(frozen=True, slots=True)
class ThreePhaseInterval:
    start: datetime
    status: int  # first wire byte high: phase 1-3 voltage failure .. log_reset; low: valid_data, power_fail
    values: tuple[int, ...]  # raw, one per channel (divide by 1000 for P1.ax, 10000 for P1.cx)


@dataclass(slots=True)
class ThreePhaseBlock:
    block_number: int
    block_is_last: bool
    frame_number: int
    frame_is_last: bool
    start: datetime
    interval_minutes: int
    channel_ids: tuple[int, ...]
    intervals: list[ThreePhaseInterval]


def three_phase_intervals_request(start: datetime, end: datetime, profile: int = 0) -> bytes:
    return _INTERVAL_REQUEST.pack(
        FORMAT_THREE_PHASE_INTERVALS,
        profile,
        datetime_to_epoch2000(start),
        datetime_to_epoch2000(end),
        b"\xff\xff\xff\xff",
    )


def parse_three_phase_intervals_request(data: bytes) -> ThreePhaseIntervalsRequest:
    if len(data) != _INTERVAL_REQUEST.size or data[0] != FORMAT_THREE_PHASE_INTERVALS:
        raise BadPayload(f"not a three-phase intervals request: {data.hex()}")
    _, profile, start, end, _ = _INTERVAL_REQUEST.unpack(data)
    return ThreePhaseIntervalsRequest(epoch2000_to_datetime(start), epoch2000_to_datetime(end), profile)


def three_phase_intervals_response(block: ThreePhaseBlock) -> bytes:
    n = len(block.channel_ids)
    out = bytearray((FORMAT_THREE_PHASE_INTERVALS,))
    out.append((0x80 if block.block_is_last else 0) | block.block_number)
    out.append((0x80 if block.frame_is_last else 0) | block.frame_number)
    out += struct.pack("<IBB", datetime_to_epoch2000(block.start), block.interval_minutes, n)
    for channel in block.channel_ids:
        out += channel.to_bytes(3, "big")
    for interval in block.intervals:
        if len(interval.values) != n:
            raise BadPayload(f"an interval has {len(interval.values)} values for {n} channels")
        out += interval.status.to_bytes(2, "big") + struct.pack(f"<{n}I", *interval.values)
    if len(out) > MAX_DATA_FIELD:
        raise BadPayload(f"{len(block.intervals)} intervals do not fit one frame")
    return bytes(out)


def parse_three_phase_intervals(data: bytes) -> ThreePhaseBlock:
    if not data or data[0] != FORMAT_THREE_PHASE_INTERVALS:
        raise BadPayload(f"expected the three-phase format 14, got {data[:1].hex() or 'nothing'}")
    if len(data) < 9:
        raise BadPayload("a three-phase intervals response has a 2-byte frame and 6-byte block header")
    start_seconds, minutes, n = struct.unpack_from("<IBB", data, 3)
    ids_end = 9 + 3 * n
    if len(data) < ids_end:
        raise BadPayload(f"{n} channel ids do not fit the response")
    channels = tuple(int.from_bytes(data[i : i + 3], "big") for i in range(9, ids_end, 3))
    start = epoch2000_to_datetime(start_seconds)
    size = 2 + 4 * n
    values = struct.Struct(f"<{n}I")
    intervals = []
    for k, offset in enumerate(range(ids_end, len(data) - size + 1, size)):
        status = int.from_bytes(data[offset : offset + 2], "big")
        intervals.append(
            ThreePhaseInterval(
                epoch2000_to_datetime(start_seconds + k * minutes * 60),
                status,
                values.unpack_from(data, offset + 2),
            )
        )
    return ThreePhaseBlock(
        data[1] & 0x7F, bool(data[1] & 0x80), data[2] & 0x7F, bool(data[2] & 0x80),
        start, minutes, channels, intervals,
    )  # fmt: skip
