"""A meter's past as its own half-hour log tells it, recorded as a worker records a profile-log read.

The demo community starts with a year of half hours: reading them over EMOP
would take the workers an hour and hold every meter meanwhile, so they are
taken from the emulated meter's log directly (the records its profile log 1,
or its three-phase interval profile, would answer with), turned into half
hours by the worker's own functions (flows.worker.workflows) and recorded by
flows.record_interval_hh, as a backfill would record them.
"""

from datetime import datetime, timedelta
from decimal import Decimal

import psycopg

from flows.emop.results import ThreePhaseIntervalValues
from flows.emop.units import datetime_to_epoch2000
from flows.emop.values import three_phase_divisor
from flows.emulator.model import THREE_PHASE_CHANNELS, MeterModel
from flows.factories.meters import Meter
from flows.factories.readings import record_half_hours
from flows.worker.workflows import HalfHourRows, interval_profile_half_hours, profile_log_1_half_hours

HALF_HOUR = timedelta(minutes=30)


def profile_history(meter: Meter, model: MeterModel, since: datetime, until: datetime) -> HalfHourRows:
    """The half hours from ``since`` to ``until`` (whole half hours) of the meter's registers (``meter.registers``,
    none of them reversed), from the emulated meter's log, as record_interval_hh takes them."""
    registers = {element: {"register_id": register_id, "direction_reversed": False}
                 for element, register_id in meter.registers.items()}
    first = datetime_to_epoch2000(since) // 1800
    count = int((until - since) / HALF_HOUR)
    if model.kind == "three":
        divisor = three_phase_divisor(model.hardware)
        channels = [f"{c:06X}" for c in THREE_PHASE_CHANNELS]
        return interval_profile_half_hours(
            [ThreePhaseIntervalValues(i.start, i.status, {ch: Decimal(v) / divisor for ch, v in zip(
                channels, i.values, strict=True)}) for i in model.interval_profile(first, count)], registers)
    rows, _ = profile_log_1_half_hours(model.profile_log_1(first, count + 1), None, registers, since, until)
    return rows


def record_profile_history(conn: psycopg.Connection, meter: Meter, model: MeterModel, since: datetime,
                           until: datetime) -> int:
    """``profile_history`` recorded (flows.record_interval_hh). Returns the half hours added or changed."""
    rows = profile_history(meter, model, since, until)
    return record_half_hours(conn, rows.register_ids, rows.timestamps, rows.import_kwh, rows.export_kwh)
