"""Monthly billing run: set-based (api.create_billing_run) vs a per-account loop.

Two ESCOs of homes with a single-element prepay meter each, an owner-occupier
per home, a customer tariff from the price cap, and a whole month of half
hours per meter (1,000 and 10,000 accounts: 1.49 and 14.9 million half hours,
with their daily and monthly rollups, written in bulk as the benchmark's
setup), plus the meter's balance at the start and end of the month.

  set-based  api.create_billing_run for the ESCO's month: every draft statement holding its lines, with
             totals, balances and top-ups, in one INSERT (what a statement prints besides, its details,
             and its lines as rows are written when it is issued: the benchmark also times finalising
             the 1,000)
  loop       the production pattern, on the same data: per account, read its payer, tariff, home and meter,
             sum its half hours, read the meter's tariff, its balances and top-ups, round, insert the
             draft holding its lines into the same table (then rolled back)
The two must write the very same rows: every column of every statement and line but ids and times.
Each is measured three times, alternately, and the medians compared (the machine is noisy).
Targets: set-based >= 20x the loop's accounts/s at 1,000 accounts; from 1,000
to 10,000 accounts the set-based time grows linearly or better (<= 10x).
"""

import statistics
import sys
import time
from datetime import UTC, date, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import Path
from uuid import uuid4
from zoneinfo import ZoneInfo

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from common import database, report  # noqa: E402
from flows import factories  # noqa: E402

MONTH = date(2026, 10, 1)  # a 25-hour day in it (the clocks go back on the 25th)
QUARTER = date(2026, 10, 1)
UK = ZoneInfo("Europe/London")
PENNY = Decimal("0.01")
VAT_INCLUDED = Decimal("1.05")  # prices include 5% VAT (billing.net_of_vat)
ROUNDS = 3
# What a run wrote, but ids and times: each statement with its lines (the lines' amounts in order), by account.
STATEMENTS = """
SELECT i.account_id, i.customer_id, i.kind, i.status, i.period_start, i.period_end, i.period_from, i.period_to, i.kwh,
       i.days, i.net, i.vat_rate, i.vat, i.total, i.prepay, i.opening_balance, i.closing_balance, i.topups_count,
       i.topups_value, i.corrects, i.details::text,
       array_agg(ROW(l.position, l.kind, l.description, l.register_id, l.element, l.nature, l.customer_tariff_id,
                     l.period_from, l.period_to, l.quantity, l.unit, l.rate, l.amount_exact, l.amount, l.half_hours,
                     l.expected_half_hours, l.estimated_half_hours, l.meter_rate)::text ORDER BY l.position)
FROM billing.invoices AS i JOIN billing.all_invoice_lines AS l ON l.invoice_id = i.id
WHERE i.run_id = %s
GROUP BY i.id
"""

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
    """The production pattern: one account at a time, a handful of queries each, writing the same draft
    statements and lines into the same tables as the set-based run (a draft run, rolled back afterwards so the
    set-based run can bill the month). Returns the time and what it wrote, to compare column by column."""
    started = time.perf_counter()
    month_from = datetime(MONTH.year, MONTH.month, 1, tzinfo=UK)
    month_to = datetime(MONTH.year, MONTH.month + 1, 1, tzinfo=UK)
    month_end = date(MONTH.year, MONTH.month + 1, 1)
    days = Decimal((month_to.date() - month_from.date()).days)
    expected = int((month_to.astimezone(UTC) - month_from.astimezone(UTC)).total_seconds()) // 1800  # (25 h day)
    with conn.transaction(force_rollback=True):
        run = conn.execute("INSERT INTO billing.billing_runs (esco, period_start, period_end, requested_by)"
                           " VALUES (%s, %s, %s, 'loop') RETURNING id", (esco, MONTH, month_end)).fetchone()[0]
        accounts = conn.execute("SELECT id, meter_id FROM billing.accounts WHERE esco = %s ORDER BY account_number",
                                (esco,)).fetchall()
        for account, meter in accounts:
            # who pays, at which rates, the home's VAT class, the meter's mode, a voided statement this replaces
            customer, tariff, unit_rate, standing, home_type, prepay, replaces = conn.execute(
                "SELECT ca.customer_id, t.id, t.unit_rate, t.standing_charge, p.type, m.prepay_enabled,"
                " (SELECT v.id FROM billing.invoices v WHERE v.account_id = a.id AND v.customer_id = ca.customer_id"
                "  AND v.period_start = %s AND v.kind = 'statement' AND v.status = 'void'"
                "  ORDER BY v.issued_at DESC LIMIT 1)"
                " FROM billing.accounts a JOIN billing.customer_accounts ca ON ca.account_id = a.id"
                " JOIN billing.customer_tariffs t ON t.customer_id = ca.customer_id AND t.effective_from <= %s"
                " AND t.effective_to >= %s JOIN flows.properties p ON p.id = a.property"
                " JOIN flows.meter_registry m ON m.id = a.meter_id WHERE a.id = %s AND ca.role = 'occupier'",
                (MONTH, month_from, month_to, account)).fetchone()
            register, element, nature, kwh, half_hours, estimated = conn.execute(
                "SELECT r.register_id, r.element, r.nature, coalesce(sum(h.import_kwh), 0), count(h.*),"
                " count(*) FILTER (WHERE h.source = 'reads') FROM flows.meter_registers r"
                " LEFT JOIN flows.register_interval_hh h ON h.register_id = r.register_id AND h.timestamp >= %s"
                " AND h.timestamp < %s WHERE r.meter_id = %s AND r.nature <> 'solar'"
                " GROUP BY r.register_id, r.element, r.nature", (month_from, month_to, meter)).fetchone()
            meter_tariff = conn.execute(  # what the meter charged: its active tariff as last read
                "SELECT tariff FROM flows.meter_tariff_history WHERE meter_id = %s AND kind = 'active'"
                " AND timestamp < %s ORDER BY timestamp DESC LIMIT 1", (meter, month_to)).fetchone()
            opening = conn.execute("SELECT balance FROM flows.meter_prepay_balance WHERE meter_id = %s"
                                   " AND timestamp <= %s ORDER BY timestamp DESC LIMIT 1", (meter, month_from)
                                   ).fetchone()
            closing = conn.execute("SELECT balance FROM flows.meter_prepay_balance WHERE meter_id = %s"
                                   " AND timestamp <= %s ORDER BY timestamp DESC LIMIT 1", (meter, month_to)).fetchone()
            topups = conn.execute("SELECT count(*), coalesce(sum(amount), 0) FROM billing.topups"
                                  " WHERE meter_id = %s AND status = 'completed' AND used_at >= %s AND used_at < %s",
                                  (meter, month_from, month_to)).fetchone()
            energy, standing_gross = kwh * unit_rate, days * standing
            net = ((energy + standing_gross) / VAT_INCLUDED).quantize(PENNY, ROUND_HALF_UP)
            vat_rate = Decimal("0.20") if home_type == "commercial" and kwh / days > 33 else Decimal("0.05")
            vat = (net * vat_rate).quantize(PENNY, ROUND_HALF_UP)
            energy_amount, standing_amount = shares(net, [energy / VAT_INCLUDED, standing_gross / VAT_INCLUDED])
            rates = meter_tariff and meter_tariff[0]
            invoice = uuid4()
            conn.execute(  # the draft holding its two lines
                "INSERT INTO billing.invoices (id, esco, run_id, account_id, customer_id, period_start, period_end,"
                " period_from, period_to, kwh, days, net, vat_rate, vat, total, prepay, opening_balance,"
                " closing_balance, topups_count, topups_value, corrects, lines)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, ARRAY["
                " ROW(gen_random_uuid(), %s, %s, 1, 'energy', %s, %s, %s, %s, %s, %s, %s, %s, 'kWh', %s,"
                "     billing.net_of_vat(%s), %s, %s, %s, %s, %s),"
                " ROW(gen_random_uuid(), %s, %s, 2, 'standing_charge', 'Standing charge', NULL, NULL, NULL, %s, %s,"
                "     %s, %s, 'day', %s, billing.net_of_vat(%s), %s, NULL, NULL, NULL, %s)]::billing.invoice_lines[])",
                (invoice, esco, run, account, customer, MONTH, month_end, month_from, month_to, kwh, days, net,
                 vat_rate, vat, net + vat, prepay, opening and prepay and opening[0], closing and prepay and closing[0],
                 topups[0], topups[1], replaces,
                 esco, invoice, description(nature, element), register, element, nature, tariff, month_from,
                 month_to, kwh, unit_rate, energy, energy_amount, half_hours, expected, estimated,
                 rates and rates.get("unit_rate_element_b" if element == "B" else "unit_rate_element_a"),
                 esco, invoice, tariff, month_from, month_to, days, standing, standing_gross, standing_amount,
                 rates and rates.get("standing_charge")))
        elapsed = time.perf_counter() - started
        written = statements(conn, run)
    return elapsed, written


def description(nature: str, element: str) -> str:
    return ("Heat" if nature == "heat" else "Electricity") + ("" if element == "SINGLE" else f" (element {element})")


def shares(net: Decimal, exact: list[Decimal]) -> list[Decimal]:
    """The statement's rounded net shared out to its lines by largest remainder, in the run's order."""
    floors = [(e * 100).to_integral_value(ROUND_FLOOR) for e in exact]
    left = int(net * 100 - sum(floors))
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] * 100 - floors[i]), i))
    return [(floors[i] + (1 if order.index(i) < left else 0)) / 100 for i in range(len(exact))]


def statements(conn, run: str) -> dict:
    """What a run wrote, every column but ids and times, by account: its statement and its lines."""
    rows = conn.execute(STATEMENTS, (run,)).fetchall()
    return {str(r[0]): r[1:] for r in rows}


def finalise(conn, run: str) -> float:
    started = time.perf_counter()
    conn.execute("SELECT status FROM api.finalise_billing_run(%s)", (run,))
    return time.perf_counter() - started


def main() -> None:
    with database() as url, psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        small = build(conn, "B1K", 1_000, 9_100_000_000)
        build(conn, "B10K", 10_000, 9_200_000_000)
        setup = time.perf_counter() - started
        # Each side ROUNDS times, alternately (the machine is noisy): the loop's runs and all but the last
        # set-based one rolled back; every run writes the very same rows. The 10,000 too, ROUNDS times.
        loop_times, set_times = [], []
        for last in [False] * (ROUNDS - 1) + [True]:
            seconds, loop_rows = loop(conn, small)
            loop_times.append(seconds)
            with conn.transaction(force_rollback=not last):
                seconds, run = set_based(conn, "B1K")
                set_times.append(seconds)
                set_rows = statements(conn, run)
            assert len(set_rows) == 1_000 and set_rows == loop_rows, "the set-based run and the loop disagree"
        loop_seconds, small_seconds = statistics.median(loop_times), statistics.median(set_times)
        started = time.perf_counter()  # an operator reviewing the run: its drafts whole, details computed
        listed = conn.execute("SELECT * FROM api.invoices WHERE run_id = %s", (run,)).fetchall()
        list_seconds = time.perf_counter() - started
        assert len(listed) == 1_000 and all(row[-2] for row in listed), "drafts without details"
        finalise_seconds = finalise(conn, run)
        big_times = []
        for last in [False] * (ROUNDS - 1) + [True]:
            with conn.transaction(force_rollback=not last):
                seconds, big_run = set_based(conn, "B10K")
                big_times.append(seconds)
                made = conn.execute("SELECT count(*) FROM billing.invoices WHERE run_id = %s", (big_run,)).fetchone()[0]
                assert made == 10_000, made
        big_seconds = statistics.median(big_times)
    growth = big_seconds / small_seconds
    runs = lambda times: ", ".join(f"{t:.3f}" for t in times)  # noqa: E731
    lines = [
        f"set-based, 1,000 accounts   {small_seconds:7.3f} s  {1_000 / small_seconds:9,.0f} accounts/s"
        f"  (median of {ROUNDS}: {runs(set_times)} s)",
        f"loop, 1,000 accounts        {loop_seconds:7.3f} s  {1_000 / loop_seconds:9,.0f} accounts/s"
        f"  (median of {ROUNDS}: {runs(loop_times)} s; the same statements and lines, every column)",
        f"set-based, 10,000 accounts  {big_seconds:7.3f} s  {10_000 / big_seconds:9,.0f} accounts/s"
        f"  (median of {ROUNDS}: {runs(big_times)} s)",
        f"growth from 1,000 to 10,000 accounts: {growth:.1f}x the time for 10x the accounts "
        f"({'linear or better' if growth <= 10 else 'WORSE than linear'})",
        f"(listing the 1,000 drafts through /invoices, with what each would print: {list_seconds:.2f} s)",
        f"(finalising the 1,000: numbers, frozen documents, lines written, ledger postings in {finalise_seconds:.2f} s;"
        f" setup: 16.4 million half hours and their rollups in {setup:.0f} s)",
    ]
    report("billing: a month's statements, set-based vs per-account loop", loop_seconds / small_seconds, 20, lines)
    if growth > 10:
        sys.exit(1)


if __name__ == "__main__":
    main()
