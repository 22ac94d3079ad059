"""Ingest: a day of half-hourly data for 10,000 registers (480,000 rows).

Measured in one run, on one database:
  set-based   flows.record_interval_hh, 1,000 registers (48,000 rows) per call,
              each call one transaction, parameters in binary, calls pipelined
              (the next batch is encoded while the server records one); it also
              keeps the daily and monthly rollups exact and checks every
              register exists.
  per row     one INSERT statement per row in autocommit, as the production
              system writes (measured on a 20,000-row sample of the same data).
  COPY        raw COPY of the same 480,000 rows into the same table (rows
              pre-rendered as text: the fastest way in).
Each is run three times, interleaved, on fresh days; medians are compared.
Targets: set-based >= 20x per-row; set-based >= 50% of COPY.
"""

import statistics
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from common import database, report, timed  # noqa: E402
from flows import factories  # noqa: E402

REGISTERS = 10_000
BATCH = 1000  # registers per call (48,000 rows)
SAMPLE = 20_000  # rows for the per-row baseline
RUNS = 3


def make_registers(conn) -> list[uuid.UUID]:
    esco = factories.add_esco(conn, "BENCH", "Bench").id
    factories.add_meters(conn, esco, [factories.MeterSpec(f"EML{i:010d}") for i in range(1, REGISTERS // 2 + 1)],
                         elements=["A", "B"], registers_from="2020-01-01T00:00:00Z")
    return [r[0] for r in conn.execute("SELECT register_id FROM flows.meter_registers ORDER BY register_id")]


def day_rows(registers, day: datetime):
    for n, register in enumerate(registers):
        for k in range(48):
            yield register, day + timedelta(minutes=30 * k), Decimal((n * 7 + k) % 500) / 1000 + Decimal("0.05")


def main() -> None:
    with database() as url, psycopg.connect(url, autocommit=True) as conn:
        registers = make_registers(conn)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        days = iter(today - timedelta(days=d) for d in range(2, 2 + 3 * RUNS))
        conn.execute("SELECT flows.ensure_partitions('flows.register_interval_hh', %s, %s)",
                     (today - timedelta(days=2 + 3 * RUNS), today))

        def set_based(day):
            batches = []
            for i in range(0, REGISTERS, BATCH):
                rows = list(day_rows(registers[i:i + BATCH], day))
                batches.append(tuple(list(column) for column in zip(*rows, strict=True)))

            def run():
                # pipelined: the next batch is encoded while the server records this one
                with conn.pipeline():
                    for ids, times, imports in batches:
                        conn.execute("SELECT flows.record_interval_hh(%b, %b, %b, NULL, 'profile_log')",
                                     (ids, times, imports))
            return run

        def raw_copy(day):
            text = "".join(f"{r}\t{t.isoformat()}\t{kwh}\t\\N\tprofile_log\n"
                           for r, t, kwh in day_rows(registers, day)).encode()

            def run():
                with conn.cursor() as cur, cur.copy(
                        'COPY flows.register_interval_hh (register_id, "timestamp", import_kwh, export_kwh, source)'
                        " FROM STDIN") as copy:
                    copy.write(text)
            return run

        def per_row(day):
            sample = list(day_rows(registers, day))[:SAMPLE]

            def run():
                for register, moment, kwh in sample:
                    conn.execute('INSERT INTO flows.register_interval_hh (register_id, "timestamp", import_kwh,'
                                 " source) VALUES (%s, %s, %s, 'reads') ON CONFLICT DO NOTHING",
                                 (register, moment, kwh))
            return run

        # Interleaved, each run on a fresh day (all rows new), medians of RUNS.
        set_times, copy_times, row_times = [], [], []
        set_day = next(days)
        for run in range(RUNS):
            day = set_day if run == 0 else next(days)
            set_times.append(timed(set_based(day)))
            copy_times.append(timed(raw_copy(next(days))))
            row_times.append(timed(per_row(next(days))))
        rows = REGISTERS * 48
        set_seconds, copy_seconds, row_seconds = (statistics.median(t) for t in (set_times, copy_times, row_times))
        rollups_ok = conn.execute("""
            SELECT sum(import_kwh) FROM flows.register_interval_daily WHERE day = flows.uk_day(%s::timestamptz + '12h')
        """, (set_day,)).fetchone()[0] == conn.execute("""
            SELECT sum(import_kwh) FROM flows.register_interval_hh
            WHERE flows.uk_day("timestamp") = flows.uk_day(%s::timestamptz + '12h')
        """, (set_day,)).fetchone()[0]

    set_rate, copy_rate, row_rate = rows / set_seconds, rows / copy_seconds, SAMPLE / row_seconds
    report("ingest: set-based vs one row per statement", set_rate / row_rate, 20, [
        f"set-based  {set_rate:10,.0f} rows/s  ({rows:,} rows in {set_seconds:.2f} s, rollups exact: {rollups_ok})",
        f"per row    {row_rate:10,.0f} rows/s  ({SAMPLE:,}-row sample in {row_seconds:.2f} s)",
    ])
    report("ingest: set-based vs raw COPY", set_rate / copy_rate, 0.5, [
        f"COPY       {copy_rate:10,.0f} rows/s  ({rows:,} rows in {copy_seconds:.2f} s)",
        f"set-based is {100 * set_rate / copy_rate:.0f}% of COPY",
    ])


if __name__ == "__main__":
    main()
