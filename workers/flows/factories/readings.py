"""What meters report: state (balance, reads, voltages, tariffs, health ...),
half hours and events, through the recording functions the workers use, so
history, shadows and rollups follow exactly as in production."""

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

import psycopg


def record_states(conn: psycopg.Connection, states: Sequence[Mapping]) -> int:
    """flows.record_meter_states: each state is {meter_id, observed_at, ...fields}
    (docs/data-model.md, "Recording what meters report"). Returns history rows added."""
    return conn.execute("SELECT flows.record_meter_states(%s::jsonb)",
                        (json.dumps(list(states), default=str),)).fetchone()[0]


def record_half_hours(conn: psycopg.Connection, register_ids: Sequence[str], timestamps: Sequence[datetime],
                      import_kwh: Sequence[Decimal | None], export_kwh: Sequence[Decimal | None] | None = None,
                      source: str = "profile_log") -> int:
    """flows.record_interval_hh, one half hour per position of the arrays (export None: not measured).
    Returns the half hours added or changed."""
    exports = list(export_kwh) if export_kwh is not None else [None] * len(register_ids)
    return conn.execute("SELECT flows.record_interval_hh(%s::uuid[], %s::timestamptz[], %s::numeric[],"
                        " %s::numeric[], %s)",
                        (list(register_ids), list(timestamps), list(import_kwh), exports, source)).fetchone()[0]


def record_events(conn: psycopg.Connection, meter_id: str, timestamps: Sequence[datetime],
                  event_types: Sequence[int], event_sets: Sequence[int]) -> int:
    """flows.record_meter_events: the meter's event log entries."""
    return conn.execute("SELECT flows.record_meter_events(%s, %s::timestamptz[], %s::integer[], %s::integer[])",
                        (meter_id, list(timestamps), list(event_types), list(event_sets))).fetchone()[0]
