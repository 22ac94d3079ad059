"""Bank test data for one ESCO built by tests/support/factory.py, on the
money of money_factory.py, imported through the product's import path: the
ESCO's bank account "main" and a statement of today with Olive's bank transfer
(the account_reference rule makes it a payment), the processor's payout of
Olive's card payment (booked the day it was received, so no rule takes it: an
operator matches it, fees 0.50), bank charges (dismissed by an operator) and a
gift from someone's mum of 8.00 that names no account (left in the queue). And
what an operator could match that gift to: Olive's account, a bank transfer of
8.00 recorded by hand, or a card payment of 8.20 not yet paid out (the write
matrix's controls of match_bank_transaction_to_account, _to_payment, _to_payout)."""

from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from flows import factories as f
from flows.payments.test_processor import event_object, intent_object
from tests.support.billing_factory import BillingData
from tests.support.money_factory import MoneyData


@dataclass
class BankData:
    account: str = ""
    statement: str = ""
    transactions: dict[str, str] = field(default_factory=dict)  # transfer, payout, charges, queued
    payout: str = ""
    payment: str = ""  # the bank transfer's payment
    payments: dict[str, str] = field(default_factory=dict)  # Olive's, no entry funds yet: recorded, card

    def customer_ids(self) -> set[str]:
        return {self.payment, *self.payments.values()}


def build_bank(conn: psycopg.Connection, esco: str, code: str, billing: BillingData, money: MoneyData) -> BankData:
    data = BankData()
    data.account = f.add_bank_account(conn, esco, "main")
    today = datetime.now(UTC).date()
    number = conn.execute("SELECT account_number FROM billing.accounts WHERE id = %s", (billing.account,)).fetchone()[0]
    entries = [(today, "15.00", f"acc-{number}", "Olive Owner"), (today, "19.50", "STRIPE PAYOUT", "STRIPE"),
               (today, "-4.00", "charges", "the bank"), (today, "8.00", "gift from mum", "Mum")]
    result = f.import_statement(conn, "main", [f.statement(entries, "100.00", today, today)], esco_code=code)
    data.statement = result["statements"][0]["id"]
    for label, (_, amount, _, _) in zip(("transfer", "payout", "charges", "queued"), entries, strict=True):
        data.transactions[label] = str(conn.execute(
            "SELECT id FROM billing.bank_transactions WHERE bank_account_id = %s AND amount = %s",
            (data.account, amount)).fetchone()[0])
    data.payment = str(conn.execute("SELECT payment_id FROM billing.bank_matches WHERE transaction_id = %s",
                                    (data.transactions["transfer"],)).fetchone()[0])
    conn.execute("SELECT FROM api.match_bank_transaction_to_payout(%s, %s, 'card payout')",
                 (data.transactions["payout"], [money.payments["card"]]))
    data.payout = str(conn.execute("SELECT id FROM billing.processor_payouts WHERE bank_transaction_id = %s",
                                   (data.transactions["payout"],)).fetchone()[0])
    conn.execute("SELECT FROM api.dismiss_bank_transaction(%s, 'bank charges for November')",
                 (data.transactions["charges"],))
    data.payments["recorded"] = f.record_payment(conn, billing.account, "8.00", provider="bank_transfer",
                                                 reference=f"BT-{code}")
    intent = intent_object(820, {"account_id": billing.account}, status="succeeded", customer=f"cus_{code}",
                           payment_method=f"pm_card_visa_{code}", description="payment link")
    f.apply_processor_event(conn, event_object("payment_intent.succeeded", intent))
    data.payments["card"] = str(conn.execute("SELECT id FROM billing.payments WHERE provider_reference = %s",
                                             (intent["id"],)).fetchone()[0])
    return data
