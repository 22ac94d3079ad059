"""The demo community's money in: how its customers pay, and credit reaching the meters through the platform.

- Payment methods: a card for most customers, a Direct Debit mandate for a few (at the embedded stack's test
  processor: references only, no money moves).
- Wallets: every home's supply meter; auto top-up on for DM-01 and DM-09 (below 10 GBP: back to 30), a monthly
  payment for DM-02 and a weekly one for DM-10 (created a week ahead by the payments job).
- Top-ups through the platform: a card payment for DM-01 (the payments job submits it to the test processor,
  whose webhook to the gateway makes the top-up), a Direct Debit for DM-02 (processing first, then credited), a
  cash payment for DM-03, and a sign-up gift for Gina Ford in DM-06.
- Solar credit: panels on the hall's roof (4 kWp), shared by DM-01 to DM-04; a rate of 8,000 pence per kWp per
  year; solar contracts for DM-01, DM-02 and DM-04 (DM-03 has none: its share is shown as not paid); last
  month's credits paid as top-ups.

Each happens once, however often the demo is created.
"""

from datetime import date, datetime, timedelta

import psycopg

from flows import factories as f

CARD, DIRECT_DEBIT = "pm_card_visa", "pm_bacs_debit"
DIRECT_DEBIT_HOMES = {"DM-02", "DM-10", "DM-14"}
AUTO_TOP_UP = {"DM-01", "DM-09"}
REGULAR = {"DM-02": ("monthly", 40, 1), "DM-10": ("weekly", 12, 5)}  # timing, amount, payment day
SOLAR_SHARES = {"DM-01": "0.25", "DM-02": "0.25", "DM-03": "0.25", "DM-04": "0.25"}
SOLAR_CONTRACTS = {"DM-01", "DM-02", "DM-04"}


def create(conn: psycopg.Connection, esco: str, esco_code: str, month: date) -> None:
    """The demo's payments, wallets, gift and solar credit; ``month`` is last month (its solar credit)."""
    homes = _homes(conn, esco)
    for plot, home in homes.items():
        debit = plot in DIRECT_DEBIT_HOMES
        method = f.add_payment_method(conn, home["payer"], kind="direct_debit" if debit else "card",
                                      processor_method=f"{DIRECT_DEBIT if debit else CARD}_{plot.replace('-', '')}",
                                      processor_customer=f"cus_demo{plot.replace('-', '')}")
        if home["prepay"]:
            timing, amount, day = REGULAR.get(plot, ("none", None, None))
            f.set_wallet(conn, home["account"], target_balance=30, minimum_balance=10,
                         auto_top_up=plot in AUTO_TOP_UP, payment_timing=timing, regular_amount=amount,
                         payment_day=day, payment_method=method)
    if not conn.execute("SELECT EXISTS (SELECT FROM billing.payments WHERE esco = %s)", (esco,)).fetchone()[0]:
        soon = datetime.now().astimezone() + timedelta(minutes=1)  # behind the meters' first syncs
        f.schedule_payment(conn, homes["DM-01"]["account"], 20, scheduled_at=soon, description="card top-up")
        f.schedule_payment(conn, homes["DM-02"]["account"], 25, scheduled_at=soon, description="Direct Debit top-up")
        f.record_payment(conn, homes["DM-03"]["account"], 15, reference="DEMO-TILL-0001",
                         description="paid at the community hall")
        f.create_gift(conn, homes["DM-06"]["account"], 10, "sign-up bonus: welcome to Demo Meadows")
    _solar(conn, esco, esco_code, homes, month)


def _homes(conn: psycopg.Connection, esco: str) -> dict[str, dict]:
    """Per plot: its supply account, who pays it now, and whether its meter takes tokens."""
    return {plot: {"account": str(account), "payer": str(payer), "prepay": prepay}
            for plot, account, payer, prepay in conn.execute(
                "SELECT p.plot, a.id, billing.payer_at(a.id, now()), m.prepay_enabled AND NOT flows.is_three_phase(m)"
                " FROM billing.accounts a JOIN flows.properties p ON p.id = a.property"
                " JOIN flows.meter_registry m ON m.id = a.meter_id"
                " WHERE a.esco = %s AND a.type = 'supply' AND a.status = 'open'", (esco,))}


def _solar(conn: psycopg.Connection, esco: str, esco_code: str, homes: dict[str, dict], month: date) -> None:
    hall = conn.execute("SELECT id FROM flows.properties WHERE esco = %s AND plot = 'Hall'", (esco,)).fetchone()[0]
    f.add_solar_rate(conn, esco, month - timedelta(days=365), 8000)
    roof = f.add_solar_installation(conn, str(hall), "MCS-DEMO-0001", 4, month - timedelta(days=180))
    for plot, ratio in SOLAR_SHARES.items():
        home = conn.execute("SELECT property FROM billing.accounts WHERE id = %s", (homes[plot]["account"],)).fetchone()
        f.allocate_solar(conn, roof, str(home[0]), ratio)
    for plot in SOLAR_CONTRACTS:
        f.add_contract(conn, homes[plot]["payer"], type="solar", terms_version="solar-2026",
                       signed_at=month - timedelta(days=60), effective_date=month - timedelta(days=60))
    f.generate_solar_credits(conn, esco_code, month)
