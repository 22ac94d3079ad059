"""Money in, end to end, with real processes: PostgREST, the gateway (processor
webhooks), the test processor speaking Stripe's HTTP API, the payments job and
the worker in this process, emulated meters."""

import asyncio
import json
import uuid
from decimal import Decimal

import httpx
import psycopg

from flows import factories as f
from flows.emulator import MeterConfig
from flows.payments.test_processor import event_object, intent_object, sign
from tests.payments.conftest import payments_job
from tests.support.locks import watched
from tests.support.payments import WEBHOOK_SECRET, paying_homes
from tests.worker.conftest import new_esco, register, serials, wait_for


def one(conn, sql: str, *params):
    row = conn.execute(sql, params).fetchone()
    return row[0] if row and len(row) == 1 else row


def topup_of(conn, payment: str):
    return conn.execute("SELECT t.status, t.used_at, t.transaction_count, t.amount, t.waiting_reason"
                        " FROM billing.topups t WHERE t.payment_id = %s", (payment,)).fetchone()


def unbalanced(conn, esco: str) -> int:
    return one(conn, "SELECT count(*) FROM (SELECT journal_id FROM billing.journal_entries WHERE esco = %s"
                     " GROUP BY journal_id HAVING sum(amount) <> 0) AS x", esco)


async def test_a_card_payment_becomes_credit_on_the_meter(stack, fleet_of, running_worker, processor):
    """An operator asks for a payment (PostgREST); the job creates and confirms it at the processor once; the
    processor's signed webhook reaches the gateway; the payment succeeds, its top-up is credited on the meter;
    used_at and the meter's transaction count are recorded; the ledger balances; the customer sees it."""
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 501)[0], balance=Decimal("3")))
    with stack.sql() as conn:
        home = paying_homes(conn, esco, register(stack, fleet, esco))[0]
    await running_worker(stack.worker_url, jobs=[payments_job(stack, processor)])
    with stack.api.client("operator", code) as operator:
        asked = operator.post("/rpc/schedule_payment", json={"account_id": home.account, "amount": 12.5})
        assert asked.status_code == 200, asked.text
    payment = asked.json()[0]["id"]

    with stack.sql() as conn:
        await wait_for(lambda: (topup_of(conn, payment) or ("",))[0] == "completed", timeout=30)
        status, received_at, receipt, reference = conn.execute(
            "SELECT status, received_at, receipt_url, provider_reference FROM billing.payments WHERE id = %s",
            (payment,)).fetchone()
        topup = topup_of(conn, payment)
        assert (status, receipt is not None, reference.startswith("pi_")) == ("succeeded", True, True)
        assert topup[1] is not None and topup[2] == 1 and topup[3] == Decimal("12.50")
        assert unbalanced(conn, esco) == 0
        balances = conn.execute("SELECT customer_credit, credit_on_meters, received, put_on_meter"
                                " FROM api.account_balances WHERE account_id = %s", (home.account,)).fetchone()
        assert balances == (Decimal("0.00"), Decimal("12.50"), Decimal("12.50"), Decimal("12.50"))
    meter = fleet[home.serial].model
    assert meter.transaction_count == 1 and meter.balance >= Decimal("15.49")
    assert processor.created_per_payment[payment] == 1 and processor.charges_per_intent[reference] == 1

    with stack.api.client("customer", code, customer=home.customer) as customer:
        seen = customer.get("/payments", params={"select": "id,status,amount"}).json()
        assert seen == [{"id": payment, "status": "succeeded", "amount": 12.5}]
        assert [t["status"] for t in customer.get("/topups").json()] == ["completed"]
        assert customer.get("/journals").status_code in (401, 403)


async def test_the_same_event_five_times_and_out_of_order_credits_once(stack, fleet_of, running_worker, gateway):
    """A signed payment_intent.succeeded delivered five times at once, then the older processing event: one
    payment, one top-up, one credit; the replays answer 2xx (duplicate), the older event is stale."""
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 511)[0], balance=Decimal("3")))
    with stack.sql() as conn:
        home = paying_homes(conn, esco, register(stack, fleet, esco))[0]
    await running_worker(stack.worker_url)
    intent = intent_object(2000, {"account_id": home.account}, status="processing", description="payment link")
    processing = event_object("payment_intent.processing", intent, created=1_790_000_000)
    succeeded = event_object("payment_intent.succeeded", {**intent, "status": "succeeded"}, created=1_790_000_060)

    async with httpx.AsyncClient(base_url=gateway.url) as http:
        async def deliver(event):
            body = json.dumps(event)
            return await http.post("/webhooks/stripe", content=body,
                                   headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET)})

        answers = await asyncio.gather(*(deliver(succeeded) for _ in range(5)))
        late = [await deliver(processing), await deliver(succeeded)]
    assert all(a.status_code == 200 for a in [*answers, *late]), [a.text for a in answers]
    outcomes = sorted(a.json()["outcome"] for a in answers)
    assert outcomes == ["applied"] + ["duplicate"] * 4, outcomes
    assert [a.json()["outcome"] for a in late] == ["stale", "duplicate"]

    with stack.sql() as conn:
        payments = conn.execute("SELECT id, status, amount FROM billing.payments WHERE account_id = %s",
                                (home.account,)).fetchall()
        assert [(p[1], p[2]) for p in payments] == [("succeeded", Decimal("20.00"))]
        await wait_for(lambda: topup_of(conn, payments[0][0])[0] == "completed", timeout=20)
        assert one(conn, "SELECT count(*) FROM billing.topups WHERE account_id = %s", home.account) == 1
        assert unbalanced(conn, esco) == 0
        assert one(conn, "SELECT count(*) FROM billing.processor_events WHERE payment_id = %s", payments[0][0]) == 2
    assert fleet[home.serial].model.transaction_count == 1


async def test_a_bad_signature_is_refused_and_writes_nothing(stack, gateway):
    """Signed with another secret, unsigned, a body changed after signing, a signature too old: 400 each, and
    not even the event is recorded (a well-signed one would be, if only as unmatched)."""
    account = str(uuid.uuid4())
    with stack.sql() as conn:
        before = one(conn, "SELECT (SELECT count(*) FROM billing.processor_events)"
                           " + (SELECT count(*) FROM billing.payments)")
    event = event_object("payment_intent.succeeded",
                         intent_object(1000, {"account_id": account}, status="succeeded"))
    body = json.dumps(event)
    with httpx.Client(base_url=gateway.url) as http:
        wrong_secret = http.post("/webhooks/stripe", content=body,
                                 headers={"Stripe-Signature": sign(body, "whsec_someone_else")})
        unsigned = http.post("/webhooks/stripe", content=body)
        tampered = http.post("/webhooks/stripe", content=body.replace("1000", "9000"),
                             headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET)})
        stale = http.post("/webhooks/stripe", content=body,
                          headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET, timestamp=1_700_000_000)})
    assert [r.status_code for r in (wrong_secret, unsigned, tampered, stale)] == [400, 400, 400, 400]
    with stack.sql() as conn:
        assert one(conn, "SELECT (SELECT count(*) FROM billing.processor_events)"
                         " + (SELECT count(*) FROM billing.payments)") == before
    assert "flows_gateway_webhooks_total{outcome=\"bad_signature\"} 4.0" in httpx.get(f"{gateway.url}/metrics").text
    with httpx.Client(base_url=gateway.url) as http:
        signed = http.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET)})
    assert (signed.status_code, signed.json()["outcome"]) == (200, "unmatched")


async def test_an_offline_meter_keeps_its_top_up_waiting_until_it_answers(stack, fleet_of, running_worker):
    """A cash payment for a meter that does not answer: the top-up waits, saying why (not failed, not pushed
    blindly); once a sync reaches the meter, it is credited, once."""
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 521)[0], balance=Decimal("3")))
    with stack.sql() as conn:
        home = paying_homes(conn, esco, register(stack, fleet, esco))[0]
    meter = fleet[home.serial]
    await meter.set_offline()
    await running_worker(stack.worker_url, jobs=[payments_job(stack, None)])
    with stack.api.client("operator", code) as operator:
        paid = operator.post("/rpc/record_payment", json={"account_id": home.account, "amount": 8,
                                                          "provider": "cash", "reference": "till 4"})
        assert paid.status_code == 200, paid.text
        payment = paid.json()[0]["id"]

        def waiting():
            rows = operator.get("/topups", params={"payment_id": f"eq.{payment}"}).json()
            return rows and rows[0]["waiting_for"] == "meter" and rows[0]
        topup = await wait_for(waiting, timeout=30)
        assert topup["status"] == "wait_token_push" and topup["token"]  # vended before the meter was tried
        assert "has not answered" in topup["waiting_reason"] and "ConnectionRefused" in topup["waiting_reason"]
        with stack.sql() as conn:
            rounds = one(conn, "SELECT rounds FROM billing.topups WHERE id = %s", topup["id"])
        await meter.set_offline(False)
        synced = operator.post("/rpc/request_sync", json={"meter_ids": [home.meter], "metrics": ["csq"]})
        assert synced.status_code == 200, synced.text

        def credited():
            rows = operator.get("/topups", params={"id": f"eq.{topup['id']}"}).json()
            return rows[0]["status"] == "completed" and rows[0]
        done = await wait_for(credited, timeout=30)
    assert done["rounds"] == rounds + 1 and done["transaction_count"] == 1
    assert done["token"] == topup["token"], "the same token, never a second one"
    assert meter.model.transaction_count == 1


async def test_a_declined_card_fails_the_payment_and_tops_up_nothing(stack, fleet_of, running_worker, processor):
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 531)[0]))
    with stack.sql() as conn:
        home = paying_homes(conn, esco, register(stack, fleet, esco), card="pm_card_chargeDeclined")[0]
        payment = f.schedule_payment(conn, home.account, 30)
    await running_worker(stack.worker_url, jobs=[payments_job(stack, processor)])
    with stack.sql() as conn:
        status, reason = await wait_for(lambda: (row := conn.execute(
            "SELECT status, failure_reason FROM billing.payments WHERE id = %s", (payment,)).fetchone())[0]
            == "failed" and row, timeout=20)
        assert "declined" in reason
        assert one(conn, "SELECT count(*) FROM billing.topups WHERE payment_id = %s", payment) == 0
    assert processor.created_per_payment[payment] == 1 and sum(processor.charges_per_intent.values()) == 0


async def test_a_direct_debit_is_processing_then_credited(stack, fleet_of, running_worker, processor):
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 541)[0]))
    with stack.sql() as conn:
        home = paying_homes(conn, esco, register(stack, fleet, esco), card="pm_bacs_debit")[0]
        payment = f.schedule_payment(conn, home.account, 25)
    await running_worker(stack.worker_url, jobs=[payments_job(stack, processor)])
    with stack.sql() as conn:
        await wait_for(lambda: one(conn, "SELECT status FROM billing.payments WHERE id = %s", payment)
                       == "processing", timeout=20)
        assert topup_of(conn, payment) is None, "no credit before the money arrives"
        await wait_for(lambda: (topup_of(conn, payment) or ("",))[0] == "completed", timeout=30)
    assert fleet[home.serial].model.transaction_count == 1


async def test_a_payment_created_before_a_crash_is_found_not_made_again_after_its_key_expired(
        stack, fleet_of, running_worker, processor):
    """August 2026, never again: a job created the payment at the processor and died before storing its id;
    a day passes (the processor forgets the idempotency key). The next attempt finds it by its payment_id and
    confirms that one: one PaymentIntent, one charge."""
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 551)[0]))
    with stack.sql() as conn:
        home = paying_homes(conn, esco, register(stack, fleet, esco))[0]
        payment = f.schedule_payment(conn, home.account, 40)
        # the dead job's attempt: claimed (submitted_at recorded), created at the processor, never recorded
        claimed = conn.execute("SELECT * FROM billing.claim_payment_work_v1('dead-job', 10, interval '1 second')"
                               " WHERE id = %s", (payment,)).fetchone()
        assert claimed is not None
    from flows.payments.processor import DuePayment
    from flows.payments.stripe_processor import StripeProcessor
    from tests.support.payments import API_KEY

    adapter = StripeProcessor(API_KEY, processor.url)
    first = await adapter.create_payment(DuePayment(
        payment, code, home.account, "0000", "pending", Decimal("40.00"), None, 1, None, claimed[10], claimed[11]))
    await adapter.close()
    async with httpx.AsyncClient() as http:  # a day later: the processor has forgotten the idempotency key
        assert (await http.post(f"{processor.url}/_test/clock", params={"advance": 25 * 3600})).status_code == 200
    await running_worker(stack.worker_url, jobs=[payments_job(stack, processor)])
    with stack.sql() as conn:
        await wait_for(lambda: (topup_of(conn, payment) or ("",))[0] == "completed", timeout=30)
        reference = one(conn, "SELECT provider_reference FROM billing.payments WHERE id = %s", payment)
    assert reference == first["id"]
    assert processor.created_per_payment[payment] == 1 and processor.charges_per_intent == {reference: 1}


async def test_a_refund_goes_back_through_the_processor(stack, fleet_of, running_worker, processor):
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 561)[0]))
    with stack.sql() as conn:
        home = paying_homes(conn, esco, register(stack, fleet, esco))[0]
        payment = f.schedule_payment(conn, home.account, 15)
    await running_worker(stack.worker_url, jobs=[payments_job(stack, processor)])
    with stack.sql() as conn:
        await wait_for(lambda: one(conn, "SELECT status FROM billing.payments WHERE id = %s", payment)
                       == "succeeded", timeout=20)
        # (refunded once credited, as an operator would: the payment's own work is over)
        await wait_for(lambda: (topup_of(conn, payment) or ("",))[0] == "completed", timeout=30)
    with stack.api.client("operator", code) as operator:
        refund, waiting = await watched(lambda: operator.post(
            "/rpc/refund_payment", json={"payment_id": payment, "reason": "moved away", "amount": 5}), stack)
        assert refund.status_code == 200, f"{refund.text}\nsessions after 10 s:\n{waiting}"
    with stack.sql() as conn:
        await wait_for(lambda: one(conn, "SELECT status FROM billing.refunds WHERE payment_id = %s", payment)
                       == "succeeded", timeout=20)
        assert one(conn, "SELECT refunded_amount FROM billing.payments WHERE id = %s", payment) == Decimal("5.00")
        assert unbalanced(conn, esco) == 0
    assert len(processor.refunds) == 1


async def test_auto_top_up_pays_once_and_fills_the_meter(stack, fleet_of, running_worker, processor):
    """A wallet with auto top-up: the meter's balance falls below the minimum -> one payment for the difference
    to the target, credited; no second payment on the way."""
    esco, code = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 571)[0], balance=Decimal("4")))
    with stack.sql() as conn:
        home = paying_homes(conn, esco, register(stack, fleet, esco))[0]
    with stack.api.client("customer", code, customer=home.customer) as customer:
        wallet = customer.post("/rpc/set_wallet", json={"account_id": home.account, "target_balance": 30,
                                                        "minimum_balance": 10, "auto_top_up": True})
        assert wallet.status_code == 200, wallet.text
        too_low = customer.post("/rpc/set_wallet", json={"account_id": home.account, "target_balance": 300})
        assert too_low.status_code == 400 and "target_balance" in too_low.json()["message"]
    await running_worker(stack.worker_url, jobs=[payments_job(stack, processor)])
    with psycopg.connect(stack.api.db_url, autocommit=True) as conn:
        f.request_sync(conn, [home.meter], ["prepay_balance"])
        await wait_for(lambda: one(conn, "SELECT count(*) FROM billing.topups t JOIN billing.payments p"
                                         " ON p.id = t.payment_id WHERE p.origin = 'auto_top_up'"
                                         " AND t.account_id = %s AND t.status = 'completed'", home.account) == 1,
                       timeout=40)
        amount = one(conn, "SELECT amount FROM billing.payments WHERE account_id = %s AND origin = 'auto_top_up'",
                     home.account)
        assert Decimal("25.90") <= amount <= Decimal("26.00"), amount
        f.request_sync(conn, [home.meter], ["prepay_balance"])
        f.run_money_pass(conn)
        assert one(conn, "SELECT count(*) FROM billing.payments WHERE account_id = %s", home.account) == 1
    assert fleet[home.serial].model.balance >= Decimal("29.9")
