"""What the worker records from a meter, on simulated time: emulated meters run on a fleet clock set in the
past, which a test moves on day by day; this reads them through the real EMOP client as the worker's sync and
profile-log read do, and records what it read with the product's recording functions (record_meter_states,
record_interval_hh, record_meter_events), stamped with the fleet's simulated time where the worker stamps the
wall clock. The reconciliation tests (tests/reconciliation/) build days of history with it; what happens "now"
(a payment, its top-up) still goes through the real worker."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from flows.emop import messages
from flows.emop.client import EmopClient
from flows.emop.results import to_jsonable
from flows.emulator import Fleet
from flows.worker.workflows import profile_log_1_half_hours

HALF_HOUR = timedelta(minutes=30)


@dataclass
class _Read:
    """How far the recording of one meter got: the last profile record used, the last event recorded."""

    meter_id: str
    registers: dict  # element -> {"register_id", "direction_reversed"}, as a command carries them
    profile_from: datetime
    previous: messages.ProfileLog1Record | None = None
    events_since: datetime | None = None
    observations: int = field(default=0)


class MeterRecorder:
    """Records a fleet's meters (serial -> meter id) into the database behind ``conn`` (autocommit)."""

    def __init__(self, conn: psycopg.Connection, fleet: Fleet, meter_ids: dict[str, str],
                 history: timedelta = timedelta(days=1)):
        self.conn = conn
        self.fleet = fleet
        self.client = EmopClient(timeout=2.0, attempts=2, backoff=0.0, pacing=0.0)
        start = fleet.clock.now() - history
        self.reads: dict[str, _Read] = {}
        for serial, meter_id in meter_ids.items():
            registers = {element: {"register_id": str(register), "direction_reversed": reversed_}
                         for element, register, reversed_ in conn.execute(
                             "SELECT element, register_id, direction_reversed FROM flows.meter_registers "
                             "WHERE meter_id = %s AND status = 'enabled'", (meter_id,))}
            self.reads[serial] = _Read(meter_id, registers, start.replace(minute=0, second=0, microsecond=0))

    def now(self) -> datetime:
        return self.fleet.clock.now()

    async def observe(self, *serials: str) -> datetime:
        """Reads each meter (all by default) as a sync of balance, tariffs and event log and a profile log read
        up to now do, and records it all at the simulated moment; that moment."""
        moment = self.now()
        for serial in serials or self.reads:
            await self._observe(serial, moment)
        return moment

    async def run(self, until: datetime, every: timedelta) -> None:
        """Moves simulated time on to ``until``, observing every meter each ``every``."""
        while self.now() + every <= until:
            self.fleet.clock.advance(every)
            await self.observe()
        if until > self.now():
            self.fleet.clock.advance(until - self.now())
            await self.observe()

    async def _observe(self, serial: str, moment: datetime) -> None:
        read = self.reads[serial]
        emulated = self.fleet[serial]
        meter = self.client.meter(serial, host=emulated.host, port=emulated.port)
        async with meter.session():
            balance = await meter.prepay_balance()
            active = (await meter.tariffs_active_read()).to_json()
            future = await meter.tariffs_future_read()
            events = await meter.event_log_since(read.events_since)
            # a record holds the registers at the start of its half hour: the last whole half hour needs the next
            end = moment.replace(minute=moment.minute - moment.minute % 30, second=0, microsecond=0)
            records = await meter.profile_log_1_range(read.previous.timestamp if read.previous else read.profile_from,
                                                      end + HALF_HOUR)
        pending = future.activation_datetime and future.activation_datetime > datetime(2001, 1, 1,
                                                                                        tzinfo=moment.tzinfo)
        state = {"meter_id": read.meter_id, "observed_at": moment.isoformat(), "balance": str(balance),
                 "tariffs_active": to_jsonable(active), "tariffs_future": to_jsonable(future.to_json()) if pending
                 else {}}
        self.conn.execute("SELECT flows.record_meter_states(%s)", (Jsonb([state]),))
        rows, read.previous = profile_log_1_half_hours(
            [r for r in records if read.previous is None or r.timestamp > read.previous.timestamp],
            read.previous, read.registers, read.profile_from, end)
        if rows.register_ids:
            self.conn.execute("SELECT flows.record_interval_hh(%s::uuid[], %s::timestamptz[], %s::numeric[], "
                              "%s::numeric[])", (rows.register_ids, rows.timestamps, rows.import_kwh, rows.export_kwh))
        if events:
            self.conn.execute("SELECT flows.record_meter_events(%s, %s::timestamptz[], %s::integer[], %s::integer[])",
                              (read.meter_id, [e.timestamp for e in events], [e.event_id for e in events],
                               [e.event_set for e in events]))
            read.events_since = max(e.timestamp for e in events)
        read.observations += 1
