"""Shadow prepay ledger and three-way reconciliation: set-based vs a per-meter scan.

One ESCO of 2,000 twin-element prepay meters over 30 UK days: a tariff change
on day 16 (future tariff read before, the new active tariff read after), two
registers' half hours (5.76 million rows), a balance observation every two
hours (720,000) that follow the charging model (energy per element at the
tariff then, standing charge and debt recovery at UK midnight; a debt on one
meter in ten), the daily rollups the recording functions keep; planted: a
token typed on the keypad (+5.00, event 48) on one meter in five and a 1.00
deduction no tariff explains on one in a hundred; written in bulk as setup.
The ledger's days (flows.meter_ledger_days) are filled the way recording
fills them: by the balances' insert trigger (as for flows.record_meter_states)
after flows.refresh_interval_rollups (what writers of half hours call), both
part of the setup's time.

  set-based  billing.reconciliation_exceptions for the ESCO's 30 days (the
             shadow ledger of every meter at once, and the three-way
             reconciliation): must find exactly what was planted
  per meter  the production forensic pattern, written honestly: per meter, its
             balances with lag() and, per interval, the half hours between the
             two observations priced at the tariff active then, the midnights
             crossed, the top-ups between (measured on a sample of meters)
Each side is timed as the median of 3 runs: the first run of a side reads
pages the other may or may not have brought into shared buffers, and sets the
hint bits of rows just written, so timing first runs only would let the order
of the sides decide the ratio.
Prints meters/s of each and the ratio (target >= 10x).
"""

import json
import os
import random
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from common import database, report, timed  # noqa: E402

METERS = int(os.environ.get("FLOWS_BENCH_RECONCILIATION_METERS", "2000"))  # fewer for a quick look
DAYS = 30
FIRST = "2026-09-01"
SAMPLE = 100
RATES = {"prepayment_emergency_credit": "15", "prepayment_ecredit_availability": "10",
         "prepayment_debt_recovery_rate": "0.25", "unit_rate_element_b": "0.1"}
OLD = {**RATES, "standing_charge": "0.5", "unit_rate_element_a": "0.2"}
NEW = {**RATES, "standing_charge": "0.6", "unit_rate_element_a": "0.3"}

PER_METER = """
WITH obs AS (
    SELECT b."timestamp" AS at, b.balance, lag(b."timestamp") OVER w AS prev_at,
           lag(b.balance) OVER w AS prev_balance
    FROM flows.meter_prepay_balance AS b
    WHERE b.meter_id = %(meter)s AND b."timestamp" >= %(t0)s AND b."timestamp" < %(t1)s
    WINDOW w AS (ORDER BY b."timestamp")
)
SELECT (o.at AT TIME ZONE 'Europe/London')::date AS day,
       sum(o.balance - o.prev_balance
           + (SELECT coalesce(sum(i.import_kwh * CASE r.element WHEN 'B' THEN p.unit_rate_b ELSE p.unit_rate_a END),
                              0)
              FROM flows.meter_registers AS r
              JOIN flows.register_interval_hh AS i ON i.register_id = r.register_id
              JOIN billing.meter_tariff_periods AS p ON p.meter_id = r.meter_id
                   AND i."timestamp" >= p.valid_from AND i."timestamp" < p.valid_to
              WHERE r.meter_id = %(meter)s AND i."timestamp" >= o.prev_at AND i."timestamp" < o.at)
           + (SELECT coalesce(sum(p.standing_charge), 0)
              FROM generate_series((o.prev_at AT TIME ZONE 'Europe/London')::date + 1,
                                   (o.at AT TIME ZONE 'Europe/London')::date, interval '1 day') AS g (day)
              JOIN billing.meter_tariff_periods AS p ON p.meter_id = %(meter)s
                   AND flows.uk_day_start(g.day::date) >= p.valid_from
                   AND flows.uk_day_start(g.day::date) < p.valid_to)
           - (SELECT coalesce(sum(t.amount), 0) FROM billing.topups AS t
              WHERE t.meter_id = %(meter)s AND t.status = 'completed' AND t.used_at > o.prev_at AND t.used_at <= o.at)
       ) AS residual
FROM obs AS o WHERE o.prev_at IS NOT NULL
GROUP BY 1 ORDER BY 1
"""

SETUP = """
INSERT INTO flows.escos (id, code, name) VALUES ('00000000-0000-4000-8000-00000000b0e1', 'BENCHREC', 'Bench');
INSERT INTO flows.meter_registry (id, serial, hardware, esco)
SELECT ('00000000-0000-4000-8001-' || lpad(to_hex(n), 12, '0'))::uuid, 'EML44' || lpad(n::text, 8, '0'), 'C1.w',
       '00000000-0000-4000-8000-00000000b0e1'
FROM generate_series(1, %(meters)s) AS n;
INSERT INTO flows.meter_registers (meter_id, esco, element, nature, direction_reversed, start_time)
SELECT m.id, m.esco, e.element, 'power', false, '2025-01-01'
FROM flows.meter_registry AS m, (VALUES ('A'), ('B')) AS e (element)
WHERE m.esco = '00000000-0000-4000-8000-00000000b0e1';
SELECT flows.ensure_partitions(t, %(t0)s::timestamptz - interval '2 days', %(t1)s::timestamptz)
FROM unnest(ARRAY['flows.register_interval_hh', 'flows.meter_prepay_balance',
                  'flows.meter_event_log']::regclass[]) AS t;
INSERT INTO flows.meter_tariff_history (meter_id, "timestamp", kind, tariff)
SELECT m.id, v.at, v.kind, v.tariff
FROM flows.meter_registry AS m, (VALUES
    (%(t0)s::timestamptz - interval '1 day', 'active', %(old)s::jsonb),
    (%(t0)s::timestamptz + interval '10 days', 'future',
     %(new)s::jsonb || jsonb_build_object('activation_datetime', %(change)s::text)),
    (%(t0)s::timestamptz + interval '15 days 6 hours', 'active', %(new)s::jsonb)
) AS v (at, kind, tariff) WHERE m.esco = '00000000-0000-4000-8000-00000000b0e1';
INSERT INTO flows.register_interval_hh (register_id, "timestamp", import_kwh, export_kwh, source)
SELECT r.register_id, g.at, round((0.05 + random() * 0.4)::numeric, 3), NULL, 'profile_log'
FROM flows.meter_registers AS r
CROSS JOIN generate_series(%(t0)s::timestamptz - interval '1 day', %(t1)s::timestamptz - interval '30 minutes',
                           interval '30 minutes') AS g (at)
WHERE r.esco = '00000000-0000-4000-8000-00000000b0e1';
SELECT flows.refresh_interval_rollups(array_agg(r.register_id), array_agg(d.at))
FROM flows.meter_registers AS r
CROSS JOIN generate_series(%(t0)s::timestamptz - interval '1 day', %(t1)s::timestamptz - interval '1 day',
                           interval '1 day') AS d (at)
WHERE r.esco = '00000000-0000-4000-8000-00000000b0e1';
INSERT INTO flows.meter_prepay_balance (meter_id, "timestamp", balance)
SELECT o.meter_id, o.at,
       200 - coalesce(spent.upto, 0)
       - 0.5 * o.midnights - 0.1 * greatest(0, o.midnights - 15) - CASE WHEN o.debt THEN 0.25 * o.midnights ELSE 0 END
       + CASE WHEN o.keypad AND o.at > %(t0)s::timestamptz + interval '3 days 10 hours 13 minutes' THEN 5 ELSE 0 END
       - CASE WHEN o.faulty AND o.at > %(t0)s::timestamptz + interval '20 days 13 hours' THEN 1 ELSE 0 END
FROM (
    SELECT m.id AS meter_id, g.at, m.serial LIKE '%%0' AS debt, m.serial ~ '[05]$' AS keypad,
           m.serial LIKE '%%77' AS faulty,
           greatest(0, (g.at AT TIME ZONE 'Europe/London')::date - %(first)s::date + 1) AS midnights
    FROM flows.meter_registry AS m
    CROSS JOIN generate_series(%(t0)s::timestamptz - interval '1 day', %(t1)s::timestamptz - interval '1 hour',
                               interval '2 hours') AS g (at)
    WHERE m.esco = '00000000-0000-4000-8000-00000000b0e1'
) AS o
LEFT JOIN (  -- what the meter spent on energy before each half hour ended
    SELECT c.meter_id, c.at + interval '30 minutes' AS at,
           sum(c.cost) OVER (PARTITION BY c.meter_id ORDER BY c.at) AS upto
    FROM (SELECT r.meter_id, i."timestamp" AS at,
                 sum(i.import_kwh * CASE WHEN r.element = 'B' THEN 0.1
                                         WHEN i."timestamp" >= %(change)s::timestamptz THEN 0.3 ELSE 0.2 END) AS cost
          FROM flows.meter_registers AS r JOIN flows.register_interval_hh AS i ON i.register_id = r.register_id
          WHERE r.esco = '00000000-0000-4000-8000-00000000b0e1'
          GROUP BY r.meter_id, i."timestamp") AS c
) AS spent ON spent.meter_id = o.meter_id AND spent.at = o.at;
INSERT INTO billing.prepay_debts (meter_id, esco, amount, as_of)
SELECT m.id, m.esco, 30, %(t0)s::timestamptz - interval '5 days' FROM flows.meter_registry AS m
WHERE m.esco = '00000000-0000-4000-8000-00000000b0e1' AND m.serial LIKE '%%0';
INSERT INTO flows.meter_event_log (meter_id, "timestamp", event_type, event_set)
SELECT m.id, %(t0)s::timestamptz + interval '3 days 10 hours 13 minutes', 48, 1 FROM flows.meter_registry AS m
WHERE m.esco = '00000000-0000-4000-8000-00000000b0e1' AND m.serial ~ '[05]$';
ANALYZE;
"""


def main() -> None:
    with database() as url, psycopg.connect(url, autocommit=True) as conn:
        t0 = conn.execute("SELECT flows.uk_day_start(%s::date)", (FIRST,)).fetchone()[0]
        t1 = conn.execute("SELECT flows.uk_day_start(%s::date + %s)", (FIRST, DAYS)).fetchone()[0]
        change = conn.execute("SELECT flows.uk_day_start(%s::date + 15)", (FIRST,)).fetchone()[0]
        started = time.perf_counter()
        for statement in SETUP.split(";\n"):
            if statement.strip():
                conn.execute(statement, {"meters": METERS, "t0": t0, "t1": t1, "change": change.isoformat(),
                                         "old": json.dumps(OLD), "new": json.dumps(NEW),
                                         "first": FIRST})
        setup = time.perf_counter() - started
        esco = "00000000-0000-4000-8000-00000000b0e1"
        last = conn.execute("SELECT %s::date + %s - 1", (FIRST, DAYS)).fetchone()[0]

        kinds, days = {}, []

        def reconcile() -> None:
            kinds.update(conn.execute("SELECT kind, count(*) FROM billing.reconciliation_exceptions(%s, %s, %s) "
                                      "GROUP BY kind", (esco, FIRST, last)).fetchall())

        def shadow_ledger() -> None:
            days[:] = conn.execute("SELECT count(*), count(*) FILTER (WHERE complete), "
                                   "count(*) FILTER (WHERE finding IS NULL) FROM billing.shadow_ledger(%s, %s, %s)",
                                   (esco, FIRST, last)).fetchone()

        set_based = timed(reconcile, repeat=3)
        ledger = timed(shadow_ledger, repeat=3)
        planted = conn.execute("SELECT count(*) FILTER (WHERE serial ~ '[05]$'), "
                               "count(*) FILTER (WHERE serial LIKE '%%77') FROM flows.meter_registry WHERE esco = %s",
                               (esco,)).fetchone()

        meters = [r[0] for r in conn.execute("SELECT id FROM flows.meter_registry WHERE esco = %s", (esco,))]
        sample = random.Random(1).sample(meters, SAMPLE)
        scanned = []

        def per_meter_scan() -> None:
            scanned[:] = [len(conn.execute(PER_METER, {"meter": meter, "t0": t0, "t1": t1}).fetchall())
                          for meter in sample]

        per_meter = timed(per_meter_scan, repeat=3)

    fast, slow = METERS / set_based, SAMPLE / per_meter
    expected = {"credit_without_topup": planted[0], "unexplained_deduction": planted[1]}
    report(f"shadow ledger + three-way reconciliation, {METERS:,} meters x {DAYS} days", fast / slow, 10, [
        f"setup (bulk): {setup:.1f} s",
        f"set-based: billing.reconciliation_exceptions (the ledger and the three-way) {set_based:.2f} s for {METERS} "
        f"meters: {fast:,.0f} meters/s (median of 3)",
        f"  exceptions {kinds} (planted: {expected}): {'as planted' if kinds == expected else 'NOT AS PLANTED'}",
        f"  billing.shadow_ledger alone {ledger:.2f} s: {days[0]} meter-days, {days[1]} complete, {days[2]} explained",
        f"per meter: {per_meter:.2f} s for a sample of {SAMPLE} meters ({sum(scanned)} meter-days): "
        f"{slow:,.1f} meters/s (median of 3)",
    ])
    if kinds != expected:
        sys.exit(1)


if __name__ == "__main__":
    main()
