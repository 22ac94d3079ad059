"""The demo community's bank: four weeks of statements on its account at the bank, imported and reconciled.

- The account: "main" at Lloyds (sort code 30-96-34), where customers' bank transfers and the card
  processor's payouts land.
- Four weekly statements, each a CAMT.053 file written by flows.bank.render and imported through the one
  import path an operator uses (flows.bank.importer: the Python reader, then api.import_bank_statement, which
  runs the matching rules), oldest first, the last one ending on the day the account was opened here:
  - bank transfers from some customers with their account number as the reference, one of them mangled
    ("ref: acc-0001 011"): the account_reference rule makes each a bank_transfer payment (journal, top-up);
  - the bank's monthly fee: an operator dismisses it ("not a payment");
  - 12.00 from "J SMITH", reference "ELECTRIC": it names no account and waits in the queue;
  - the processor's payout of three card payments made through payment links the same day (gross 60.00, fees
    1.51: 1.5% + 20p each): received that day, so the rule (payments received before the payout's day) leaves
    it, and an operator matches it to them (api.match_bank_transaction_to_payout).
- The card payments arrive as the processor's payment_intent.succeeded events (billing.apply_processor_event_v1,
  as the gateway applies a verified webhook).

The statements' dates hang on the day the account was first created here and the files are written the same
way each time, so creating the demo again imports nothing (each file is already_imported) and decides nothing.
"""

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import psycopg

from flows import factories as f
from flows.payments.test_processor import event_object, intent_object

BANK_ACCOUNT = "main"
SORT_CODE, ACCOUNT_NUMBER = "309634", "41952687"
OPENING = Decimal("2500.00")
WEEKS = 4
# (day of the week's statement 0-6, plot whose account the transfer names (None: a stranger's or the bank's),
#  amount, reference): the transfers' references name the account number (_named), one of them mangled
WEEKLY: dict[int, list[tuple[int, str | None, str, str]]] = {
    0: [(1, "DM-04", "25.00", "{number}"), (3, "DM-07", "20.00", "{number}")],
    1: [(0, "DM-08", "30.00", "{number}"), (4, "DM-11", "15.00", "ref: acc-000{head} {tail}")],
    2: [(1, "DM-04", "25.00", "{number}"), (2, "DM-05", "20.00", "{number}"), (3, None, "12.00", "ELECTRIC"),
        (6, None, "-5.00", "MONTHLY ACCOUNT FEE")],
    3: [(0, "DM-07", "20.00", "{number}"), (2, "DM-08", "30.00", "{number}")],
}
STRANGER = "J SMITH"  # the transfer nobody can place: it waits in the queue
BANK = "LLOYDS BANK"
# Card payments through payment links, paid out by the processor on the last statement's day.
CARD_PAYMENTS = {"DM-12": 2000, "DM-13": 1500, "DM-15": 2500}  # pence
PAYOUT_FEE_RATE, PAYOUT_FEE_FIXED = Decimal("0.015"), Decimal("0.20")  # the processor's UK card pricing
PAYOUT_REFERENCE = "po_1DemoMeadows0001"


def create(conn: psycopg.Connection, esco: str, esco_code: str) -> None:
    """The demo's bank account, its statements imported and matched, the operator's decisions; once."""
    opened = _bank_account(conn, esco)
    homes = _homes(conn, esco)
    card = _card_payments(conn, homes)
    payout = sum((Decimal(p) / 100 - _fee(Decimal(p) / 100) for p in CARD_PAYMENTS.values()), Decimal(0))
    balance = OPENING
    for week in range(WEEKS):
        start = opened - timedelta(days=7 * (WEEKS - week) - 1)
        entries = [_entry(start, homes, *planned) for planned in WEEKLY[week]]
        if week == WEEKS - 1:
            entries.append((opened, str(payout), f"STRIPE PAYMENTS UK {PAYOUT_REFERENCE}", "STRIPE"))
        statement = f.statement(entries, balance, start, start + timedelta(days=6), sort_code=SORT_CODE,
                                account_number=ACCOUNT_NUMBER)
        f.import_statement(conn, BANK_ACCOUNT, [statement], esco_code=esco_code,
                           file_name=f"lloyds-{statement.period_end.isoformat()}.camt053.xml")
        balance = statement.closing_balance
    _decide(conn, esco, card)


def _bank_account(conn: psycopg.Connection, esco: str) -> date:
    """The account (made once: its changes are audited); the UK day it was opened here."""
    if not conn.execute("SELECT FROM billing.bank_accounts WHERE esco = %s AND name = %s",
                        (esco, BANK_ACCOUNT)).fetchone():
        f.add_bank_account(conn, esco, BANK_ACCOUNT, sort_code=SORT_CODE, account_number=ACCOUNT_NUMBER,
                           bank_name="Lloyds Bank")
    return conn.execute("SELECT flows.uk_day(created_at) FROM billing.bank_accounts WHERE esco = %s AND name = %s",
                        (esco, BANK_ACCOUNT)).fetchone()[0]


def _homes(conn: psycopg.Connection, esco: str) -> dict[str, dict]:
    """Per plot: its supply account's id and number, and the name of who pays it now."""
    return {plot: {"account": str(account), "number": number, "payer": payer}
            for plot, account, number, payer in conn.execute(
                "SELECT p.plot, a.id, a.account_number, upper(c.fullname) FROM billing.accounts a"
                " JOIN flows.properties p ON p.id = a.property"
                " JOIN billing.customers c ON c.id = billing.payer_at(a.id, now())"
                " WHERE a.esco = %s AND a.type = 'supply' AND a.status = 'open'", (esco,))}


def _entry(start: date, homes: dict[str, dict], day: int, plot: str | None, amount: str, reference: str) -> tuple:
    """(booking date, amount, reference, counterparty): a customer's transfer names their account."""
    if plot is None:
        return start + timedelta(days=day), amount, reference, STRANGER if Decimal(amount) > 0 else BANK
    return start + timedelta(days=day), amount, _named(reference, homes[plot]["number"]), homes[plot]["payer"]


def _named(reference: str, number: str) -> str:
    """The reference a payer wrote: {number} their account number, {head} and {tail} its first digit and the rest
    (mangled as payers do: "ref: acc-0001 011" for 1011)."""
    return reference.format(number=number, head=number[0], tail=number[1:])


def _fee(gross: Decimal) -> Decimal:
    """The processor's fee on one payment, to the penny by billing's one rule (half-up, docs/billing.md)."""
    return (gross * PAYOUT_FEE_RATE + PAYOUT_FEE_FIXED).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _card_payments(conn: psycopg.Connection, homes: dict[str, dict]) -> list[str]:
    """The card payments the payout pays, as the processor's webhooks bring them (each once, by its intent)."""
    payments = []
    for plot, pence in CARD_PAYMENTS.items():
        intent_id = f"pi_demo_bank_{plot.replace('-', '')}"
        if not conn.execute("SELECT FROM billing.payments WHERE provider = 'stripe' AND provider_reference = %s",
                            (intent_id,)).fetchone():
            tag = plot.replace("-", "")
            intent = intent_object(pence, {"account_id": homes[plot]["account"]}, status="succeeded",
                                   customer=f"cus_demo{tag}", payment_method=f"pm_card_visa_{tag}",
                                   description="payment link", intent_id=intent_id)
            f.apply_processor_event(conn, event_object("payment_intent.succeeded", intent))
        payments.append(str(conn.execute("SELECT id FROM billing.payments WHERE provider = 'stripe'"
                                         " AND provider_reference = %s", (intent_id,)).fetchone()[0]))
    return payments


def _decide(conn: psycopg.Connection, esco: str, card: list[str]) -> None:
    """What the operator decided: the payout matched to the card payments, the bank's fee dismissed; the
    stranger's transfer left in the queue (each decision once: an entry is decided once)."""
    for entry, amount in conn.execute(
            "SELECT t.id, t.amount FROM billing.bank_transactions t JOIN billing.bank_accounts b"
            " ON b.id = t.bank_account_id WHERE b.esco = %s AND b.name = %s AND t.status = 'unmatched'"
            " AND (t.counterparty = 'STRIPE' OR t.amount < 0)", (esco, BANK_ACCOUNT)).fetchall():
        if amount > 0:
            conn.execute("SELECT FROM api.match_bank_transaction_to_payout(%s, %s, %s)",
                         (entry, card, f"payout {PAYOUT_REFERENCE} of the three payment-link card payments"))
        else:
            conn.execute("SELECT FROM api.dismiss_bank_transaction(%s, %s)",
                         (entry, "the bank's monthly account fee: not a payment"))
