"""Hypothesis properties of the money math, run in PostgreSQL where it lives.

- billing.round_half_up is half-up (away from zero) to any places, like Decimal's ROUND_HALF_UP;
- rates are the cap x (1 - discount), half-up to 5 decimals;
and for whole billing runs over random half-hourly data and tariffs:
- the lines add up to the net, each within a penny of its exact amount;
- VAT is within half a penny of 5% of the net, and total = net + VAT;
- running again gives identical figures;
- splitting the month at any half hour (a tariff change to the same rates)
  changes neither the kWh nor the money.
"""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows import factories as f

MONTH = "2025-10-01"  # the clocks go back on 26 October: a 25-hour day
MONTH_FROM = datetime(2025, 10, 1, tzinfo=ZoneInfo("Europe/London")).astimezone(UTC)
MONTH_TO = datetime(2025, 11, 1, tzinfo=ZoneInfo("Europe/London")).astimezone(UTC)
HALF_HOURS = int((MONTH_TO - MONTH_FROM).total_seconds() // 1800)


@pytest.fixture(scope="module")
def conn(pg_server, template_db):
    name = f"flows_props_{uuid.uuid4().hex[:8]}"
    with pg_server.janitor(name, template_dbname=template_db):
        with psycopg.connect(pg_server.url(name), autocommit=True) as connection:
            f.add_price_cap(connection, "london", "2025-10-01", "0.24862", "0.60992")
            yield connection


amounts = st.decimals(min_value=Decimal("-100000"), max_value=Decimal("100000"), places=6, allow_nan=False)


@given(values=st.lists(amounts, min_size=1, max_size=50), places=st.integers(0, 5))
def test_round_half_up_is_decimal_round_half_up(conn, values, places):
    got = conn.execute("SELECT array_agg(billing.round_half_up(v, %s) ORDER BY n) FROM unnest(%s::numeric[])"
                       " WITH ORDINALITY AS x (v, n)", (places, values)).fetchone()[0]
    quantum = Decimal(1).scaleb(-places)
    assert got == [v.quantize(quantum, ROUND_HALF_UP) for v in values]


@given(cap=st.decimals(min_value=Decimal("0.00001"), max_value=Decimal("1"), places=5),
       discount=st.decimals(min_value=Decimal(0), max_value=Decimal(100), places=2))
def test_rates_are_the_cap_less_the_discount_half_up(conn, cap, discount):
    got = conn.execute("SELECT billing.discounted_rate(%s, %s)", (cap, discount)).fetchone()[0]
    assert got == (cap * (1 - discount / 100)).quantize(Decimal("0.00001"), ROUND_HALF_UP)


def _community(conn, kwh: list[Decimal], discount: Decimal, elements: list[str]) -> tuple[str, str]:
    """A new ESCO with one home, its meter's month of half hours, and its owner-occupier; returns (code, customer)."""
    esco = f.add_esco(conn, f.new_esco_code("P"), "Props")
    code = esco.code
    site = f.add_site(conn, esco.id)
    prop = f.add_property(conn, site, "P")
    head = f.add_service_head(conn, esco.id, "H")
    f.link_property_head(conn, prop, head)
    meter = f.add_meter(conn, esco.id, hardware="C1.w" if len(elements) == 2 else "B1.w", elements=elements,
                        registers_from="2025-09-01T00:00:00Z")
    f.link_head_meter(conn, head, meter.id)
    meter = meter.id
    ids, times, values = [], [], []
    for register, in conn.execute("SELECT register_id FROM flows.meter_registers WHERE meter_id = %s ORDER BY element",
                                  (meter,)).fetchall():
        for k in range(HALF_HOURS):
            ids.append(register)
            times.append(MONTH_FROM + timedelta(minutes=30 * k))
            values.append(kwh[k % len(kwh)])
    conn.execute("SELECT flows.record_interval_hh(%s::uuid[], %s::timestamptz[], %s::numeric[], NULL, 'profile_log')",
                 (ids, times, values))
    f.add_microgrid_tariff(conn, esco.id, "2025-10-01", "london", discount)
    customer = f.onboard_customer(conn, prop, "Prop Erty", move_in="2025-09-01T00:00:00Z").customer
    f.set_customer_status(conn, customer, "onboarding")
    f.generate_customer_tariffs(conn, code, "2025-10-01")
    return code, customer


def _run(conn, code: str) -> tuple[dict, list[dict]]:
    run = conn.execute("SELECT id FROM api.create_billing_run(%s, %s)", (code, MONTH)).fetchone()[0]
    invoice = conn.execute("SELECT to_jsonb(i) FROM api.invoices AS i WHERE run_id = %s", (run,)).fetchone()[0]
    lines = [r[0] for r in conn.execute("SELECT to_jsonb(l) - 'id' FROM api.invoice_lines AS l WHERE invoice_id = %s"
                                        " ORDER BY position", (invoice["id"],))]
    return invoice, lines


kwh_values = st.lists(st.decimals(min_value=Decimal(0), max_value=Decimal("3.5"), places=3), min_size=1, max_size=60)


@settings(max_examples=25, deadline=None)
@given(kwh=kwh_values, discount=st.decimals(min_value=Decimal(0), max_value=Decimal(60), places=2),
       elements=st.sampled_from([["SINGLE"], ["A", "B"]]), split=st.integers(1, HALF_HOURS - 1))
def test_a_statement_adds_up_reruns_identically_and_splits_exactly(conn, kwh, discount, elements, split):
    code, customer = _community(conn, kwh, discount, elements)
    invoice, lines = _run(conn, code)
    d = {k: Decimal(str(v)) for k, v in invoice.items() if k in ("net", "vat", "total", "kwh")}
    assert sum(Decimal(str(line["amount"])) for line in lines) == d["net"]
    for line in lines:
        assert abs(Decimal(str(line["amount"])) - Decimal(str(line["amount_exact"]))) < Decimal("0.01")
    assert abs(d["vat"] - d["net"] * Decimal("0.05")) <= Decimal("0.005")
    assert d["total"] == d["net"] + d["vat"]

    again, again_lines = _run(conn, code)
    assert (again["net"], again["vat"], again["total"], again["details"]) == (
        invoice["net"], invoice["vat"], invoice["total"], invoice["details"])
    assert [{k: v for k, v in line.items() if k != "invoice_id"} for line in again_lines] == \
           [{k: v for k, v in line.items() if k != "invoice_id"} for line in lines]

    # split the month at a random half hour: the same discount from then on
    at = MONTH_FROM + timedelta(minutes=30 * split)
    f.set_customer_discount(conn, customer, discount, at)
    split_invoice, split_lines = _run(conn, code)
    assert len(split_lines) == 2 * len(lines)
    assert Decimal(str(split_invoice["kwh"])) == d["kwh"]
    def energy_money(of):
        return sum(Decimal(str(x["quantity"])) * Decimal(str(x["rate"])) for x in of if x["kind"] == "energy")
    assert energy_money(split_lines) == energy_money(lines), "the energy money does not change"
    # the standing charge's days are rounded per line (5 decimals): at most a 1e-5 day apart
    assert abs(Decimal(str(split_invoice["days"])) - Decimal(str(invoice["days"]))) <= Decimal("0.00001")
    assert abs(Decimal(str(split_invoice["net"])) - d["net"]) <= Decimal("0.01")
