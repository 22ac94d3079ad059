"""Codec throughput: our EMOP codec vs emop-frame-protocol 0.4.14 (the Kaitai codec simt-emlite uses).

Both run in the same interpreter: the library only exists as CPython 3.13 wheels,
so this script re-runs itself in .venv-interop (built by scripts/setup.sh) with
our package on the path. The frames are the 232 golden frames of
tests/emop/data/vectors.json. Three figures, each ours vs theirs on identical input:

  parse   frame -> data field (library: EmopFrame; ours: parse_frame, which also checks the CRC)
  decode  frame -> message -> typed payload (library: + EmopDefaultRequestResponse/EmopMessage and
          the log/profile response classes; ours: + messages.parse_* and the object registry codec)
  build   request data field -> frame bytes (library: EmliteAPI._build_data_field/_build_frame_bytes)

usage: python bench/bench_codec.py [--seconds 1.0]
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTEROP = ROOT / ".venv-interop" / "bin" / "python"


def reexec_in_interop_venv() -> None:
    if not INTEROP.exists():
        sys.exit(f"bench_codec: {INTEROP} is missing; run `make setup`")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "workers"),
        "BENCH_CODEC_CHILD": "1",
        "EMLITE_TIMEOUT_SECONDS": "1",
    }
    sys.exit(subprocess.call([str(INTEROP), __file__, *sys.argv[1:]], env=env))


def rate(function, items, seconds: float) -> float:
    """Items per second, best of three runs of at least ``seconds`` / 3 each."""
    best = 0.0
    for _ in range(3):
        count, started = 0, time.perf_counter()
        deadline = started + seconds / 3
        while time.perf_counter() < deadline:
            for item in items:
                function(item)
            count += len(items)
        best = max(best, count / (time.perf_counter() - started))
    return best


def main() -> None:
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 1.0

    from emop_frame_protocol.emop_event_log_response import EmopEventLogResponse
    from emop_frame_protocol.emop_frame import EmopFrame
    from emop_frame_protocol.emop_message import EmopMessage
    from emop_frame_protocol.emop_object_id_enum import ObjectIdEnum
    from emop_frame_protocol.emop_profile_log_1_response import emop_decode_profile_log_1_response
    from emop_frame_protocol.emop_profile_log_2_response import emop_decode_profile_log_2_response
    from emop_frame_protocol.emop_profile_three_phase_intervals_response_frame import (
        EmopProfileThreePhaseIntervalsResponseFrame,
    )
    from emop_frame_protocol.generated.emop_default_request_response import EmopDefaultRequestResponse
    from emop_frame_protocol.vendor.kaitaistruct import BytesIO, KaitaiStream
    from simt_emlite.emlite.emlite_api import EmliteAPI

    from flows.emop import messages
    from flows.emop.frame import build_frame, parse_frame
    from flows.emop.objects import _BY_ID

    vectors = json.loads((ROOT / "tests" / "emop" / "data" / "vectors.json").read_text())
    frames = [bytes.fromhex(v["hex"]) for v in vectors]
    known = {o.value for o in ObjectIdEnum}

    def theirs_parse(raw):
        frame = EmopFrame.from_bytes(raw)
        frame._read()
        return frame.data.message

    def ours_parse(raw):
        return parse_frame(raw).message

    def theirs_decode(raw):
        frame = EmopFrame.from_bytes(raw)
        frame._read()
        message = frame.data.message
        fmt = frame.data.format.value if hasattr(frame.data.format, "value") else frame.data.format
        if fmt == 1:
            default = EmopDefaultRequestResponse(len(message), KaitaiStream(BytesIO(message)))
            default._read()
            object_id = int.from_bytes(default.object_id, "big")
            if default.payload and object_id in known:
                record = EmopMessage(
                    len(default.payload), ObjectIdEnum(object_id), KaitaiStream(BytesIO(default.payload))
                )
                record._read()
                return record.message
            return default.payload
        if fmt == 5 and len(message) == 64:
            response = EmopEventLogResponse(KaitaiStream(BytesIO(message)))
            response._read()
            return response
        if fmt == 3 and len(message) == 84:
            return emop_decode_profile_log_1_response(message)
        if fmt == 4 and len(message) == 84:
            return emop_decode_profile_log_2_response(False, message)
        if fmt == 0x14 and len(message) > 13:
            response = EmopProfileThreePhaseIntervalsResponseFrame(
                len(message), KaitaiStream(BytesIO(message))
            )
            response._read()
            return response
        return message

    def ours_decode(raw):
        frame = parse_frame(raw)
        data = frame.data
        fmt = data[0]
        if fmt == 1:
            message = messages.parse_default(data)
            obj = _BY_ID.get(message.object_id)
            if message.payload and obj is not None:
                return obj.codec.decode(message.payload)
            return message.payload
        if fmt == 5 and len(data) == 65:
            return messages.parse_event_log(data)
        if fmt in (3, 4) and len(data) == 85:
            return messages.parse_profile_log(data)
        if fmt == 0x14 and len(data) > 14:
            return messages.parse_three_phase_intervals(data)
        return data

    requests = [
        parse_frame(f).data for f, v in zip(frames, vectors, strict=True) if v["direction"] == "request"
    ]
    requests = [d for d in requests if d[0] == 1]
    api = EmliteAPI("127.0.0.1", 9)
    rw = EmopDefaultRequestResponse.ReadWriteFlags

    def theirs_build(data):
        flag = rw.write if data[4] == 1 else rw.read
        return api._build_frame_bytes(api._build_data_field(bytearray(data[1:4]), flag, data[5:]))

    def ours_build(data):
        return build_frame(data)

    for data in requests:
        assert theirs_build(data) == ours_build(data), data.hex()
    for raw in frames:
        theirs_decode(raw), ours_decode(raw)

    print(
        f"bench_codec: Python {sys.version.split()[0]}, {len(frames)} golden frames, "
        f"{len(requests)} request data fields"
    )
    print(f"{'':8} {'ours/s':>12} {'library/s':>12} {'ratio':>7}")
    results = {}
    for name, ours, theirs, items in (
        ("parse", ours_parse, theirs_parse, frames),
        ("decode", ours_decode, theirs_decode, frames),
        ("build", ours_build, theirs_build, requests),
    ):
        mine, baseline = rate(ours, items, seconds), rate(theirs, items, seconds)
        results[name] = mine / baseline
        print(f"{name:8} {mine:12,.0f} {baseline:12,.0f} {mine / baseline:6.2f}x")
    print(f"ratio (decode, frames/s ours vs emop-frame-protocol): {results['decode']:.2f}x (target >= 1x)")


if __name__ == "__main__":
    if os.environ.get("BENCH_CODEC_CHILD") != "1":
        reexec_in_interop_venv()
    main()
