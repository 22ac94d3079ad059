"""EMOP frames: building, parsing and the control byte (docs/emop-protocol.md §2-§3).

    7E | L | dst type | dst addr (3) | src type | src addr (3) | control | data (L-12) | CRC (2, big-endian)

``L`` counts the bytes after the 0x7E; the CRC is CRC-16/CCITT-FALSE over
everything between the 0x7E and the CRC. The data field starts with the format
byte (``FORMAT_*``). ``parse_frame`` raises only ``FrameError`` subclasses.
"""

from binascii import crc_hqx
from dataclasses import dataclass

from flows.emop.errors import BadCrc, BadDelimiter, BadLength

DELIMITER = 0x7E
MIN_FRAME_LENGTH = 13  # L: 12 bytes of header and CRC after the delimiter, plus the format byte
MAX_FRAME_LENGTH = 0xFF
MAX_DATA_FIELD = MAX_FRAME_LENGTH - 12  # 243

FORMAT_DEFAULT = 0x01
FORMAT_PROFILE_LOG_1 = 0x03
FORMAT_PROFILE_LOG_2 = 0x04
FORMAT_EVENT_LOG = 0x05
FORMAT_THREE_PHASE_INTERVALS = 0x14

# What simt-emlite puts in every request; real meters answer it.
CLIENT_ADDRESS = 0x21AE42
CLIENT_CONTROL = 0x05


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR)."""
    return crc_hqx(data, 0xFFFF)


def control_byte(sequence: int, nak_code: int = 0) -> int:
    """Bits 0-2 sequence number, bits 3-7 ACK/NAK code."""
    if not 0 <= sequence <= 7 or not 0 <= nak_code <= 31:
        raise ValueError(f"sequence {sequence} / NAK code {nak_code} out of range")
    return (nak_code << 3) | sequence


@dataclass(slots=True)
class Frame:
    """One EMOP frame. Addresses are 24-bit numbers (big-endian on the wire)."""

    data: bytes
    destination_type: int = 0
    destination_address: int = 0
    source_type: int = 0
    source_address: int = CLIENT_ADDRESS
    control: int = CLIENT_CONTROL

    @property
    def sequence(self) -> int:
        return self.control & 0x07

    @property
    def nak_code(self) -> int:
        return self.control >> 3

    @property
    def format(self) -> int:
        return self.data[0]

    @property
    def message(self) -> bytes:
        """The data field without its format byte."""
        return self.data[1:]

    def to_bytes(self) -> bytes:
        return build_frame(
            self.data,
            self.destination_type,
            self.destination_address,
            self.source_type,
            self.source_address,
            self.control,
        )


def build_frame(
    data: bytes,
    destination_type: int = 0,
    destination_address: int = 0,
    source_type: int = 0,
    source_address: int = CLIENT_ADDRESS,
    control: int = CLIENT_CONTROL,
) -> bytes:
    """The wire bytes of a frame carrying ``data`` (format byte + message)."""
    if not 1 <= len(data) <= MAX_DATA_FIELD:
        raise BadLength(f"a data field holds 1 to {MAX_DATA_FIELD} bytes, not {len(data)}")
    body = (
        bytes((len(data) + 12, destination_type))
        + destination_address.to_bytes(3, "big")
        + bytes((source_type,))
        + source_address.to_bytes(3, "big")
        + bytes((control,))
        + data
    )
    return b"\x7e" + body + crc_hqx(body, 0xFFFF).to_bytes(2, "big")


def frame_size(head: bytes) -> int:
    """Total wire size of the frame whose first two bytes are ``head`` (checks them)."""
    if head[0] != DELIMITER:
        raise BadDelimiter(f"a frame starts with 7E, not {head[0]:02X}")
    if head[1] < MIN_FRAME_LENGTH:
        raise BadLength(f"frame length {head[1]} is below the minimum of {MIN_FRAME_LENGTH}")
    return head[1] + 1


def parse_frame(raw: bytes, check_crc: bool = True) -> Frame:
    """Exactly one frame from ``raw``; raises BadDelimiter, BadLength or BadCrc, nothing else."""
    if not raw:
        raise BadLength("no bytes: an empty frame")
    if raw[0] != DELIMITER:
        raise BadDelimiter(f"a frame starts with 7E, not {raw[0]:02X}")
    if len(raw) < 2:
        raise BadLength("a frame of 1 byte")
    size = frame_size(raw)
    if len(raw) != size:
        raise BadLength(f"frame length byte says {size} bytes, {len(raw)} arrived")
    if check_crc:
        crc = crc_hqx(raw[1:-2], 0xFFFF)
        if crc != (raw[-2] << 8 | raw[-1]):
            raise BadCrc(f"CRC {raw[-2]:02X}{raw[-1]:02X} on the wire, {crc:04X} computed")
    return Frame(
        raw[11:-2],
        raw[2],
        int.from_bytes(raw[3:6], "big"),
        raw[6],
        int.from_bytes(raw[7:10], "big"),
        raw[10],
    )
