"""Parse frames with emop-frame-protocol 0.4.14 (the Kaitai codec simt-emlite uses); print what it sees.

Runs in the Python 3.13 interop venv. stdin: a JSON list of frame hex strings.
stdout: a JSON list, one object per frame, or {"error": ...} where the library fails.
"""

import json
import sys

from emop_frame_protocol.emop_frame import EmopFrame
from emop_frame_protocol.emop_message import EmopMessage
from emop_frame_protocol.emop_object_id_enum import ObjectIdEnum
from emop_frame_protocol.generated.emop_default_request_response import EmopDefaultRequestResponse
from emop_frame_protocol.generated.emop_event_log_request import EmopEventLogRequest
from emop_frame_protocol.generated.emop_profile_log_request import EmopProfileLogRequest
from emop_frame_protocol.generated.emop_profile_three_phase_intervals_request import (
    EmopProfileThreePhaseIntervalsRequest,
)
from emop_frame_protocol.vendor.kaitaistruct import BytesIO, KaitaiStream


def fields(record) -> dict:
    out = {}
    for name in dir(record):
        if name.startswith("_") or name in ("close",):
            continue
        value = getattr(record, name)
        if callable(value) or isinstance(value, type):
            continue
        if isinstance(value, bytes | bytearray):
            value = bytes(value).hex()
        elif hasattr(value, "value") and hasattr(value, "name"):
            value = value.value
        elif not isinstance(value, int | str | bool | float) and value is not None:
            continue
        out[name] = value
    return out


def parse(frame_hex: str) -> dict:
    frame = EmopFrame.from_bytes(bytes.fromhex(frame_hex))
    frame._read()
    message = frame.data.message
    out = {
        "frame_length": frame.frame_length,
        "destination_address": frame.destination_address.hex(),
        "source_address": frame.source_address.hex(),
        "control": frame.control,
        "format": frame.data.format.value if hasattr(frame.data.format, "value") else frame.data.format,
        "crc16": frame.crc16.hex(),
    }
    stream = KaitaiStream(BytesIO(message))
    if out["format"] == 1:
        default = EmopDefaultRequestResponse(len(message), stream)
        default._read()
        object_id = int.from_bytes(default.object_id, "big")
        out.update(object_id=object_id, read_write=default.read_write.value, payload=default.payload.hex())
        if default.payload:
            try:
                record = EmopMessage(
                    len(default.payload), ObjectIdEnum(object_id), KaitaiStream(BytesIO(default.payload))
                )
                record._read()
                out["record"] = fields(record.message)
            except ValueError:
                out["record"] = None  # an object id the library does not know
    elif out["format"] == 5:
        request = EmopEventLogRequest(stream)
        request._read()
        out.update(object_id=int.from_bytes(request.object_id, "big"), log_idx=request.log_idx)
    elif out["format"] in (3, 4):
        request = EmopProfileLogRequest(stream)
        request._read()
        out.update(timestamp=request.timestamp)
    elif out["format"] == 0x14:
        request = EmopProfileThreePhaseIntervalsRequest(stream)
        request._read()
        out.update(
            profile_number=request.profile_number.value,
            start_time=request.start_time,
            end_time=request.end_time,
            trailing_fixed=request.trailing_fixed.hex(),
        )
    return out


def main() -> None:
    results = []
    for frame_hex in json.load(sys.stdin):
        try:
            results.append(parse(frame_hex))
        except Exception as error:  # report, the test decides
            results.append({"error": f"{type(error).__name__}: {error}"})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
