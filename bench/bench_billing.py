"""Monthly billing run: set-based (api.create_billing_run) vs a per-account loop.

Two ESCOs of homes with a single-element prepay meter each, an owner-occupier
per home, a customer tariff from the price cap, and a whole month of half
hours per meter (1,000 and 10,000 accounts: 1.49 and 14.9 million half hours,
with their daily and monthly rollups, written in bulk as the benchmark's
setup), plus the meter's balance at the start and end of the month.

  set-based  api.create_billing_run for the ESCO's month: every statement with
             its lines, totals, balances and frozen details in a few statements
  loop       the production pattern, on the same data: per account, read its
             payer and tariff, names and meter, sum its half hours, read its
             balances, top-ups and 12 months of usage, round, insert the statement
             and its lines into the same tables (then rolled back)
The two must give the same net, VAT and total for every account.
Targets: set-based >= 20x the loop's accounts/s at 1,000 accounts; from 1,000
to 10,000 accounts the set-based time grows linearly or better (<= 10x).
"""

import json
import sys
import time
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from common import database, report  # noqa: E402
from flows import factories  # noqa: E402

MONTH = date(2026, 10, 1)  # a 25-hour day in it (the clocks go back on the 25th)
QUARTER = date(2026, 10, 1)
UK = ZoneInfo("Europe/London")
PENNY = Decimal("0.01")

BUILD = """
WITH e AS (INSERT INTO flows.escos (code, name) VALUES (%(code)s, %(code)s) RETURNING id),
     s AS (INSERT INTO flows.sites (esco, code, name) SELECT id, 'S', 'Site' FROM e RETURNING id, esco)
SELECT s.esco, s.id FROM s
"""
TOPOLOGY = """
INSERT INTO flows.properties (id, esco, site, plot, address)
SELECT md5(%(code)s || 'p' || g)::uuid, %(esco)s, %(site)s, 'P' || g, g || ' Bench Street'
FROM generate_series(1, %(n)s::integer) AS g;
INSERT INTO flows.service_head_registry (id, esco, name)
SELECT md5(%(code)s || 'h' || g)::uuid, %(esco)s, 'H' || g FROM generate_series(1, %(n)s::integer) AS g;
INSERT INTO flows.properties_service_head (property, service_head, esco)
SELECT md5(%(code)s || 'p' || g)::uuid, md5(%(code)s || 'h' || g)::uuid, %(esco)s
FROM generate_series(1, %(n)s::integer) AS g;
INSERT INTO flows.meter_registry (id, serial, hardware, esco, site)
SELECT md5(%(code)s || 'm' || g)::uuid, 'EML' || lpad((%(serial_base)s + g)::text, 10, '0'), 'B1.w', %(esco)s, %(site)s
FROM generate_series(1, %(n)s::integer) AS g;
INSERT INTO flows.service_head_meter (service_head, meter, esco)
SELECT md5(%(code)s || 'h' || g)::uuid, md5(%(code)s || 'm' || g)::uuid, %(esco)s
FROM generate_series(1, %(n)s::integer) AS g;
INSERT INTO flows.meter_registers (register_id, meter_id, esco, element, start_time)
SELECT md5(%(code)s || 'r' || g)::uuid, md5(%(code)s || 'm' || g)::uuid, %(esco)s, 'SINGLE', '2026-01-01'
FROM generate_series(1, %(n)s::integer) AS g;
INSERT INTO flows.meter_prepay_balance (meter_id, "timestamp", balance)
SELECT md5(%(code)s || 'm' || g)::uuid, t, 20 + g %% 17 - (t > %(from)s)::int * 5
FROM generate_series(1, %(n)s::integer) AS g,
     unnest(ARRAY[%(from)s - interval '2 hours', %(to)s - interval '1 hour']) AS t;
"""
HALF_HOURS = """
INSERT INTO flows.register_interval_hh (register_id, "timestamp", import_kwh, source)
SELECT md5(%(code)s || 'r' || g)::uuid, t, 0.05 + ((g * 7 + extract(epoch FROM t)::bigint / 1800) %% 23) * 0.02,
       'profile_log'
FROM generate_series(%(first)s::integer, %(last)s::integer) AS g,
     generate_series(%(from)s, %(to)s - interval '30 minutes', interval '30 minutes') AS t
"""
ROLLUPS = """
INSERT INTO flows.register_interval_daily (register_id, day, import_kwh, intervals, estimated)
SELECT h.register_id, flows.uk_day(h."timestamp"), sum(h.import_kwh), count(*), 0
FROM flows.register_interval_hh AS h JOIN flows.meter_registers AS r USING (register_id)
WHERE r.esco = %(esco)s GROUP BY 1, 2;
INSERT INTO flows.register_interval_monthly (register_id, month, import_kwh, intervals)
SELECT d.register_id, flows.uk_month(d.day), sum(d.import_kwh), sum(d.intervals)
FROM flows.register_interval_daily AS d JOIN flows.meter_registers AS r USING (register_id)
WHERE r.esco = %(esco)s GROUP BY 1, 2;
"""
def script(conn, sql: str, args: dict) -> None:
    """Statements separated by ';' at line ends, each with the same parameters."""
    for statement in sql.split(";\n"):
        if statement.strip():
            conn.execute(statement, args)


def build(conn, code: str, n: int, serial_base: int) -> str:
    esco, site = conn.execute(BUILD, {"code": code}).fetchone()
    month_from = datetime(MONTH.year, MONTH.month, 1, tzinfo=UK)
    month_to = datetime(MONTH.year, MONTH.month + 1, 1, tzinfo=UK)
    args = {"code": code, "esco": esco, "site": site, "n": n, "serial_base": serial_base, "from": month_from,
            "to": month_to, "quarter": QUARTER}
    conn.execute("SELECT flows.ensure_partitions('flows.register_interval_hh', %(from)s, %(to)s)", args)
    conn.execute("SELECT flows.ensure_partitions('flows.meter_prepay_balance', %(from)s, %(to)s)", args)
    script(conn, TOPOLOGY, args)
    for first in range(1, n + 1, 1000):
        conn.execute(HALF_HOURS, {**args, "first": first, "last": min(first + 999, n)})
    script(conn, ROLLUPS, args)
    # customers, their accounts and tariffs, as operators make them (the product's factories)
    factories.add_price_cap(conn, "eastern", QUARTER, "0.25730", "0.55380")
    factories.add_microgrid_tariff(conn, esco, QUARTER, "eastern", 25)
    homes = [str(p) for (p,) in conn.execute("SELECT id FROM flows.properties WHERE esco = %s ORDER BY plot", (esco,))]
    onboarded = factories.onboard_customers(conn, [(home, f"Customer {n}", None) for n, home in enumerate(homes, 1)],
                                            move_in="2026-01-01T00:00:00Z")
    factories.set_customer_status(conn, [o.customer for o in onboarded], "onboarding")
    factories.generate_customer_tariffs(conn, code, QUARTER)
    conn.execute("VACUUM ANALYZE")
    return esco


def set_based(conn, code: str) -> tuple[float, str]:
    started = time.perf_counter()
    run = conn.execute("SELECT id FROM api.create_billing_run(%s, %s)", (code, MONTH)).fetchone()[0]
    return time.perf_counter() - started, run


def loop(conn, esco: str) -> tuple[float, dict]:
    """The production pattern: one account at a time, a handful of queries each, writing the same statements
    into the same tables (a draft run, rolled back afterwards so the set-based run can bill the month)."""
    started = time.perf_counter()
    totals = {}
    month_from = datetime(MONTH.year, MONTH.month, 1, tzinfo=UK)
    month_to = datetime(MONTH.year, MONTH.month + 1, 1, tzinfo=UK)
    days = Decimal((month_to.date() - month_from.date()).days)
    with conn.transaction(force_rollback=True):
        run = conn.execute("INSERT INTO billing.billing_runs (esco, period_start, period_end, requested_by)"
                           " VALUES (%s, %s, %s, 'loop') RETURNING id",
                           (esco, MONTH, date(MONTH.year, MONTH.month + 1, 1))).fetchone()[0]
        accounts = conn.execute("SELECT id, meter_id FROM billing.accounts WHERE esco = %s ORDER BY account_number",
                                (esco,)).fetchall()
        for account, meter in accounts:
            customer, tariff, unit_rate, standing = conn.execute(
                "SELECT ca.customer_id, t.id, t.unit_rate, t.standing_charge FROM billing.customer_accounts ca"
                " JOIN billing.customer_tariffs t ON t.customer_id = ca.customer_id AND t.effective_from <= %s"
                " AND t.effective_to >= %s WHERE ca.account_id = %s AND ca.role = 'occupier'",
                (month_from, month_to, account)).fetchone()
            names = conn.execute(
                "SELECT c.fullname, a.account_number, p.plot, p.address, m.serial FROM billing.customers c,"
                " billing.accounts a JOIN flows.properties p ON p.id = a.property JOIN flows.meter_registry m"
                " ON m.id = a.meter_id WHERE c.id = %s AND a.id = %s", (customer, account)).fetchone()
            register, kwh, half_hours = conn.execute(
                "SELECT r.register_id, coalesce(sum(h.import_kwh), 0), count(h.*) FROM flows.meter_registers r"
                " LEFT JOIN flows.register_interval_hh h ON h.register_id = r.register_id AND h.timestamp >= %s"
                " AND h.timestamp < %s WHERE r.meter_id = %s GROUP BY r.register_id", (month_from, month_to, meter)
            ).fetchone()
            opening = conn.execute("SELECT balance FROM flows.meter_prepay_balance WHERE meter_id = %s"
                                   " AND timestamp <= %s ORDER BY timestamp DESC LIMIT 1", (meter, month_from)
                                   ).fetchone()
            closing = conn.execute("SELECT balance FROM flows.meter_prepay_balance WHERE meter_id = %s"
                                   " AND timestamp <= %s ORDER BY timestamp DESC LIMIT 1", (meter, month_to)).fetchone()
            topups = conn.execute("SELECT count(*), coalesce(sum(amount), 0) FROM billing.topups"
                                  " WHERE meter_id = %s AND status = 'completed' AND used_at >= %s AND used_at < %s",
                                  (meter, month_from, month_to)).fetchone()
            year = conn.execute("SELECT coalesce(sum(import_kwh), 0) FROM flows.register_interval_monthly"
                                " WHERE register_id = %s AND month > %s::date - 365 AND month <= %s",
                                (register, MONTH, MONTH)).fetchone()[0]
            energy, standing_gross = kwh * unit_rate, days * standing
            net = ((energy + standing_gross) / Decimal("1.05")).quantize(PENNY, ROUND_HALF_UP)
            vat = (net * Decimal("0.05")).quantize(PENNY, ROUND_HALF_UP)
            energy_net = (energy / Decimal("1.05")).quantize(PENNY, ROUND_HALF_UP)
            details = json.dumps({"customer": {"fullname": names[0]}, "account_number": names[1],
                                  "supply_address": f"{names[2]}, {names[3]}", "meter": {"serial": names[4]},
                                  "kwh_12_months": str(year)})
            invoice = conn.execute(
                "INSERT INTO billing.invoices (esco, run_id, account_id, customer_id, period_start, period_end,"
                " period_from, period_to, kwh, days, net, vat_rate, vat, total, prepay, opening_balance,"
                " closing_balance, topups_count, topups_value, details)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0.05, %s, %s, true, %s, %s, %s, %s, %s)"
                " RETURNING id",
                (esco, run, account, customer, MONTH, date(MONTH.year, MONTH.month + 1, 1), month_from, month_to,
                 kwh, days, net, vat, net + vat, opening and opening[0], closing and closing[0], topups[0], topups[1],
                 details)).fetchone()[0]
            conn.execute(
                "INSERT INTO billing.invoice_lines (esco, invoice_id, position, kind, description, register_id,"
                " customer_tariff_id, period_from, period_to, quantity, unit, rate, amount_exact, amount, half_hours)"
                " VALUES (%s, %s, 1, 'energy', 'Electricity', %s, %s, %s, %s, %s, 'kWh', %s, %s, %s, %s),"
                " (%s, %s, 2, 'standing_charge', 'Standing charge', NULL, %s, %s, %s, %s, 'day', %s, %s, %s, NULL)",
                (esco, invoice, register, tariff, month_from, month_to, kwh, unit_rate, energy / Decimal("1.05"),
                 energy_net, half_hours, esco, invoice, tariff, month_from, month_to, days, standing,
                 standing_gross / Decimal("1.05"), net - energy_net))
            totals[str(account)] = (net, vat, net + vat)
        elapsed = time.perf_counter() - started
    return elapsed, totals


def set_totals(conn, run: str) -> dict:
    return {str(a): (n, v, t) for a, n, v, t in conn.execute(
        "SELECT account_id, net, vat, total FROM billing.invoices WHERE run_id = %s", (run,))}


def main() -> None:
    with database() as url, psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        small = build(conn, "B1K", 1_000, 9_100_000_000)
        build(conn, "B10K", 10_000, 9_200_000_000)
        setup = time.perf_counter() - started
        loop_seconds, loop_totals = loop(conn, small)
        small_seconds, run = set_based(conn, "B1K")
        assert set_totals(conn, run) == loop_totals, "the set-based run and the loop disagree"
        big_seconds, big_run = set_based(conn, "B10K")
        made = conn.execute("SELECT count(*) FROM billing.invoices WHERE run_id = %s", (big_run,)).fetchone()[0]
        assert made == 10_000, made
    growth = big_seconds / small_seconds
    lines = [
        f"set-based, 1,000 accounts   {small_seconds:7.2f} s  {1_000 / small_seconds:9,.0f} accounts/s",
        f"loop, 1,000 accounts        {loop_seconds:7.2f} s  {1_000 / loop_seconds:9,.0f} accounts/s"
        "  (same net, VAT and total for every account)",
        f"set-based, 10,000 accounts  {big_seconds:7.2f} s  {10_000 / big_seconds:9,.0f} accounts/s",
        f"growth from 1,000 to 10,000 accounts: {growth:.1f}x the time for 10x the accounts "
        f"({'linear or better' if growth <= 10 else 'WORSE than linear'})",
        f"(setup: 16.4 million half hours and their rollups in {setup:.0f} s)",
    ]
    report("billing: a month's statements, set-based vs per-account loop", loop_seconds / small_seconds, 20, lines)
    if growth > 10:
        sys.exit(1)


if __name__ == "__main__":
    main()
