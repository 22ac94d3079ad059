"""The ledger, by property: any sequence of money events (cash, bank and card
payments, refunds, gifts, positive and negative adjustments, top-ups credited
on the meter, top-ups cancelled) keeps every journal balanced, and every
balance (per customer account, and the ESCO's books) equal to the sum of the
events as computed here, independently of the SQL, from what each event is.

Each example runs in one transaction on a fresh community, checks every
deferred constraint (SET CONSTRAINTS ALL IMMEDIATE) and is rolled back.
"""

import uuid
from collections import Counter
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from flows import factories as f
from flows.payments.test_processor import event_object, intent_object

PENNY = Decimal("0.01")
pence = st.integers(1, 50_000).map(lambda p: Decimal(p) / 100)
operations = st.lists(st.one_of(
    st.tuples(st.sampled_from(["cash", "bank_transfer", "card"]), pence),
    st.tuples(st.just("refund"), st.integers(0, 20), st.integers(1, 100)),  # which payment, percent of what is left
    st.tuples(st.just("gift"), pence.filter(lambda a: a <= 1000)),
    st.tuples(st.just("adjust"), st.integers(-100_000, 100_000).filter(bool).map(lambda p: Decimal(p) / 100)),
    st.tuples(st.just("credit"), st.integers(0, 20)),  # which waiting top-up the meter takes
    st.tuples(st.just("cancel"), st.integers(0, 20)),  # which waiting top-up is cancelled
), min_size=1, max_size=25)


@pytest.fixture(scope="module")
def conn(pg_server, template_db):
    name = f"flows_ledger_{uuid.uuid4().hex[:8]}"
    with pg_server.janitor(name, template_dbname=template_db):
        with psycopg.connect(pg_server.url(name), autocommit=True) as connection:
            yield connection


def community(conn) -> str:
    """A home with a prepay meter and its owner-occupier; its supply account."""
    esco = f.add_esco(conn, f.new_esco_code("L"))
    site = f.add_site(conn, esco.id)
    home = f.add_property(conn, site, "L-1")
    head = f.add_service_head(conn, esco.id, "H")
    f.link_property_head(conn, home, head)
    f.link_head_meter(conn, head, f.add_meter(conn, esco.id, hardware="B1.w").id)
    return f.onboard_customer(conn, home, "Lee Ledger", move_in="2026-01-01T00:00:00Z").account


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_journals_balance_and_balances_are_the_sum_of_their_events(conn, ops):
    books: Counter = Counter()  # ledger account -> balance, debit positive
    payments: list[list] = []  # [id, provider, amount left to refund]
    transactions = 0
    with conn.transaction():
        account = community(conn)
        for op in ops:
            kind = op[0]
            if kind in ("cash", "bank_transfer"):
                payments.append([f.record_payment(conn, account, op[1], provider=kind), kind, op[1]])
                books["cash_at_bank"] += op[1]
                books["customer_credit"] -= op[1]
            elif kind == "card":
                intent = intent_object(int(op[1] * 100), {"account_id": account}, status="succeeded")
                assert f.apply_processor_event(conn, event_object("payment_intent.succeeded", intent)) == "applied"
                payment = conn.execute("SELECT id FROM billing.payments WHERE provider_reference = %s",
                                       (intent["id"],)).fetchone()[0]
                payments.append([str(payment), "stripe", op[1]])
                books["processor_clearing"] += op[1]
                books["customer_credit"] -= op[1]
            elif kind == "refund" and (refundable := [p for p in payments if p[2] > 0]):
                payment = refundable[op[1] % len(refundable)]
                amount = max(PENNY, (payment[2] * op[2] / 100).quantize(PENNY))
                refund = f.refund_payment(conn, payment[0], "property test", amount)
                if payment[1] == "stripe":  # the payments job records what the processor said
                    claimed = conn.execute("SELECT count(*) FROM billing.claim_refund_work_v1('prop', 100)"
                                           " WHERE id = %s", (refund,)).fetchone()[0]
                    assert claimed == 1
                    answer = {"id": f"re_{uuid.uuid4().hex}", "amount": int(amount * 100), "status": "succeeded"}
                    conn.execute("SELECT billing.record_refund_v1(%s, 'prop', %s)", (refund, Jsonb(answer)))
                payment[2] -= amount
                books["customer_credit"] += amount
                books["processor_clearing" if payment[1] == "stripe" else "cash_at_bank"] -= amount
            elif kind == "gift":
                f.create_gift(conn, account, op[1], "property test")
                books["gifts"] += op[1]
                books["customer_credit"] -= op[1]
            elif kind == "adjust":
                f.add_adjustment(conn, account, op[1], "property test")
                books["adjustments"] += op[1]
                books["customer_credit"] -= op[1]
            elif kind in ("credit", "cancel") and (waiting := conn.execute(
                    "SELECT id, command_id, amount, source FROM billing.topups WHERE account_id = %s"
                    " AND status = 'wait_token_fetch' ORDER BY created_at", (account,)).fetchall()):
                topup, command, amount, source = waiting[op[1] % len(waiting)]
                if kind == "credit":
                    transactions += 1
                    f.finish_command(conn, str(command), {"transactions_before": transactions - 1,
                                                          "transactions_after": transactions,
                                                          "balance_before": "0", "balance_after": str(amount)},
                                     {"token": f"{transactions:020d}"})
                    books["customer_credit"] += amount
                    books["credit_on_meters"] -= amount
                else:
                    conn.execute("SELECT api.cancel_topup(%s, 'property test')", (topup,))
                    if source != "payment":  # the ESCO's funding is reversed; a payment stays the account's
                        books["gifts" if source == "gift" else "adjustments"] -= amount
                        books["customer_credit"] += amount
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # every journal balances (the deferred check)
        unbalanced = conn.execute("SELECT count(*) FROM (SELECT journal_id FROM billing.journal_entries"
                                  " GROUP BY journal_id HAVING sum(amount) <> 0) AS x").fetchone()[0]
        assert unbalanced == 0
        esco = conn.execute("SELECT esco FROM billing.accounts WHERE id = %s", (account,)).fetchone()[0]
        seen = Counter({a: b for a, b in conn.execute(
            "SELECT ledger_account, sum(amount) FROM billing.journal_entries WHERE esco = %s"
            " GROUP BY ledger_account", (esco,)) if b})
        assert seen == Counter({a: b for a, b in books.items() if b}), (seen, books)
        balances = conn.execute("SELECT customer_credit, credit_on_meters FROM api.account_balances"
                                " WHERE account_id = %s", (account,)).fetchone()
        assert balances == (-books["customer_credit"], -books["credit_on_meters"])
        natural = conn.execute("SELECT coalesce(sum(CASE WHEN kind IN ('asset', 'expense') THEN balance"
                               " ELSE -balance END), 0) FROM api.esco_books WHERE esco = %s", (esco,)).fetchone()[0]
        assert natural == 0, "assets + expenses = liabilities + income"
        raise psycopg.Rollback()  # the example leaves nothing behind
