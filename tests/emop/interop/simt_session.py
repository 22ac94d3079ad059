"""Drive simt-emlite 1.2.12 (the production client) against emulated meters; print JSON results.

Runs in the Python 3.13 interop venv, not in the test process. The production
path is EmlitePrepayAPI -> gRPC -> mediator -> EmliteAPI -> TCP. The mediator
servicer shipped in the 1.2.12 wheel passes ``bytes`` where its own compiled
EmliteAPI demands a ``bytearray`` (every call fails), so this script serves the
same three RPCs with a minimal servicer that calls EmliteAPI the way the
mediator means to: EmliteAPI (framing, socket, tenacity retries) and
EmlitePrepayAPI (requests, decoding, conversions) are simt-emlite's own code.

usage: simt_session.py '{"serial": ..., "host": ..., "port": ..., "token": ..., "three_phase": {...}}'
"""

import json
import sys
from concurrent import futures
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
from emop_frame_protocol.util import emop_encode_u3be
from simt_emlite.emlite.emlite_api import EmliteAPI
from simt_emlite.mediator.api_prepay import EmlitePrepayAPI
from simt_emlite.mediator.grpc.generated.mediator_pb2 import (
    ReadElementReply,
    SendRawMessageReply,
    WriteElementReply,
)
from simt_emlite.mediator.grpc.generated.mediator_pb2_grpc import (
    EmliteMediatorServiceServicer,
    add_EmliteMediatorServiceServicer_to_server,
)
from tenacity import RetryError


class Mediator(EmliteMediatorServiceServicer):
    """readElement / writeElement / sendRawMessage onto EmliteAPI, errors reported as the mediator does."""

    def __init__(self, meters):
        self.apis = {serial: EmliteAPI(host, port) for serial, host, port in meters}

    def _call(self, context, request, call):
        api = self.apis.get(request.serial)
        if api is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Meter '{request.serial}' not known")
        try:
            return call(api)
        except RetryError:
            context.abort(grpc.StatusCode.INTERNAL, "failed to connect after retries")
        except EOFError as error:
            context.abort(grpc.StatusCode.INTERNAL, f"EOFError: {error}")

    def readElement(self, request, context):
        oid = bytearray(emop_encode_u3be(request.objectId))
        return ReadElementReply(response=self._call(context, request, lambda api: api.read_element(oid)))

    def writeElement(self, request, context):
        oid = bytearray(emop_encode_u3be(request.objectId))
        self._call(context, request, lambda api: api.write_element(oid, request.payload))
        return WriteElementReply()

    def sendRawMessage(self, request, context):
        return SendRawMessageReply(
            response=self._call(context, request, lambda api: api.send_message(request.dataField))
        )


def plain(value):
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Decimal | datetime):
        return str(value)
    if hasattr(value, "name") and hasattr(value, "value"):
        return value.name
    return value


def main() -> None:
    job = json.loads(sys.argv[1])
    meters = [(m["serial"], m["host"], m["port"]) for m in job["meters"]]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add_EmliteMediatorServiceServicer_to_server(Mediator(meters), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    api = EmlitePrepayAPI(mediator_address=f"127.0.0.1:{port}", logging_level="WARNING")
    out = {}
    try:
        single = job["single"]
        s = single["serial"]
        out["serial"] = api.serial_read(s)
        out["hardware"] = api.hardware(s)
        out["firmware"] = api.firmware_version(s)
        out["clock"] = api.clock_time_read(s).isoformat()
        out["csq"] = api.csq(s)
        out["voltage"] = api.instantaneous_voltage(s)
        out["element_a"] = plain(api.read_element_a(s))
        out["element_b"] = plain(api.read_element_b(s))
        out["read"] = plain(api.read(s))
        out["balance_before"] = str(api.prepay_balance(s))
        out["transactions_before"] = api.prepay_transaction_count(s)
        out["tariffs_active"] = plain(dict(api.tariffs_active_read(s)))
        api.tariffs_future_write(
            s,
            datetime(2030, 4, 1, tzinfo=UTC),
            Decimal(single["future"]["standing_charge"]),
            Decimal(single["future"]["unit_rate"]),
            Decimal(single["future"]["emergency_credit"]),
            Decimal(single["future"]["ecredit_availability"]),
            Decimal(single["future"]["debt_recovery_rate"]),
        )
        out["tariffs_future"] = plain(dict(api.tariffs_future_read(s)))
        since = datetime.fromisoformat(single["profile_from"])
        log1 = api.profile_log_1(s, since)
        out["profile_log_1"] = [
            {"timestamp": r.timestamp, "import_a": r.import_a, "import_b": r.import_b} for r in log1.records
        ]
        events = api.event_log(s, 0)
        out["event_log"] = [
            {"timestamp": e.timestamp, "event_id": plain(e.event_id), "event_set": e.event_set}
            for e in events.events
        ]
        api.prepay_send_token(s, single["token"])
        out["balance_after"] = str(api.prepay_balance(s))
        out["transactions_after"] = api.prepay_transaction_count(s)
        three = job.get("three_phase")
        if three:
            t = three["serial"]
            out["three_phase"] = {
                "hardware": api.hardware(t),
                "read": plain(api.read(t)),
                "voltages": plain(api.three_phase_instantaneous_voltage(t)),
                "serial": api.three_phase_serial(t),
            }
            day_start = datetime.fromisoformat(three["intervals_from"])
            intervals = api.three_phase_intervals(t, None, day_start, day_start + timedelta(hours=2))
            out["three_phase"]["intervals"] = (
                len(intervals.intervals) if hasattr(intervals, "intervals") else str(type(intervals))
            )
    finally:
        server.stop(None)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
