"""Baseline for bench_fleet.py: the production pattern, blocking threads using simt-emlite's EmliteAPI.

Runs in .venv-interop (Python 3.13). Each task reads the objects of one meter
(by default serial, prepay balance and element A: three EmliteAPI.read_element
calls, decoded with EmopMessage as the mediator client does). Prints one JSON line.

usage: baseline_simt_fleet.py METERS_JSON THREADS [OBJECT,OBJECT,...]
"""

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from emop_frame_protocol.emop_message import EmopMessage
from emop_frame_protocol.emop_object_id_enum import ObjectIdEnum
from emop_frame_protocol.util import emop_encode_u3be
from emop_frame_protocol.vendor.kaitaistruct import BytesIO, KaitaiStream
from simt_emlite.emlite.emlite_api import EmliteAPI

OBJECTS = [ObjectIdEnum.serial, ObjectIdEnum.prepay_balance, ObjectIdEnum.read_element_a]


def read_meter(meter: dict):
    api = EmliteAPI(meter["host"], meter["port"])
    values = []
    for object_id in OBJECTS:
        payload = api.read_element(bytearray(emop_encode_u3be(object_id.value)))
        record = EmopMessage(len(payload), object_id, KaitaiStream(BytesIO(payload)))
        record._read()
        values.append(record.message)
    return values


def answered(values: list, meter: dict) -> bool:
    """Every object decoded, and the serial (when read) is the meter's own."""
    return all(
        value is not None and (object_id != ObjectIdEnum.serial or value.serial.strip() == meter["serial"])
        for object_id, value in zip(OBJECTS, values, strict=True)
    )


def main() -> None:
    meters = json.loads(open(sys.argv[1]).read())["meters"]
    threads = int(sys.argv[2])
    if len(sys.argv) > 3:
        OBJECTS[:] = [getattr(ObjectIdEnum, name) for name in sys.argv[3].split(",")]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(read_meter, meters))
    elapsed = time.perf_counter() - started
    good = sum(answered(values, meter) for values, meter in zip(results, meters, strict=True))
    print(json.dumps({"seconds": elapsed, "meters": len(meters), "ok": good}))


if __name__ == "__main__":
    main()
