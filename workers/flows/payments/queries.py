"""The payments job's boundary with the database: the named SQL functions it
calls (sql/schema/billing/payments.sql, money_pass.sql), here and nowhere
else. Like the worker's (flows.worker.queries), each ends in a version, and
whatever the driver raises leaves as ``QueryFailed`` (``Fenced`` when the
payment's lease moved on)."""

from datetime import timedelta

from flows.payments.processor import DuePayment, DueRefund
from flows.worker.queries import PooledQueries, _driver_errors

CHANNEL = "billing_processor_work"


class PaymentQueries(PooledQueries):
    async def money_pass(self, retry_base: timedelta, horizon: timedelta) -> dict:
        with _driver_errors():
            return await self.pool.fetchval("SELECT billing.run_money_pass_v1($1, $2)", retry_base, horizon)

    async def claim_payments(self, limit: int, lease: timedelta, stale: timedelta) -> list[DuePayment]:
        with _driver_errors():
            rows = await self.pool.fetch("SELECT * FROM billing.claim_payment_work_v1($1, $2, $3, $4)",
                                         self.worker, limit, lease, stale)
        return [DuePayment(id=r["id"], esco_code=r["esco_code"], account_id=r["account_id"],
                           account_number=r["account_number"], status=r["status"], amount=r["amount"],
                           provider_reference=r["provider_reference"], attempt=r["attempt"],
                           description=r["description"], processor_customer=r["processor_customer"],
                           processor_method=r["processor_method"]) for r in rows]

    async def record_intent(self, payment: DuePayment, intent: dict, release: bool) -> str:
        with _driver_errors():
            return await self.pool.fetchval("SELECT billing.record_payment_intent_v1($1, $2, $3, $4)",
                                            payment.id, self.worker, intent, release)

    async def fail_payment(self, payment: DuePayment, error: str, final: bool, backoff: timedelta) -> str:
        with _driver_errors():
            return await self.pool.fetchval("SELECT billing.fail_payment_work_v1($1, $2, $3, $4, $5)",
                                            payment.id, self.worker, error, final, backoff)

    async def claim_refunds(self, limit: int, lease: timedelta) -> list[DueRefund]:
        with _driver_errors():
            rows = await self.pool.fetch("SELECT * FROM billing.claim_refund_work_v1($1, $2, $3)",
                                         self.worker, limit, lease)
        return [DueRefund(id=r["id"], payment_reference=r["payment_reference"], amount=r["amount"], reason=r["reason"],
                          provider_reference=r["provider_reference"], attempt=r["attempt"]) for r in rows]

    async def record_refund(self, refund: DueRefund, obj: dict) -> str:
        with _driver_errors():
            return await self.pool.fetchval("SELECT billing.record_refund_v1($1, $2, $3)",
                                            refund.id, self.worker, obj)

    async def fail_refund(self, refund: DueRefund, error: str, final: bool, backoff: timedelta) -> str:
        with _driver_errors():
            return await self.pool.fetchval("SELECT billing.fail_refund_work_v1($1, $2, $3, $4, $5)",
                                            refund.id, self.worker, error, final, backoff)
