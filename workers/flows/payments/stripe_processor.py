"""The Stripe implementation of the payment processor adapter, on the official
``stripe`` library (async calls through its HTTPX client).

Payments are PaymentIntents, created unconfirmed with the payment id as
idempotency key and metadata ``payment_id`` (also ``account_id``,
``account_number`` and the ESCO), then confirmed off session with the payment
method the customer saved (a card, or a Bacs Direct Debit mandate): the charge
happens at confirmation, and only a PaymentIntent whose id Flows has stored is
ever confirmed. ``api_base`` points the library at another address with the
same API (the test processor, flows.payments.test_processor).
"""

from uuid import UUID

import stripe

from flows.payments.processor import Declined, DuePayment, DueRefund, Unavailable

# A confirmation Stripe refuses because the PaymentIntent moved on (confirmed before, succeeded, cancelled).
UNEXPECTED_STATE = "payment_intent_unexpected_state"


class StripeProcessor:
    name = "stripe"

    def __init__(self, api_key: str, api_base: str | None = None, timeout: float = 30.0):
        self.http = stripe.HTTPXClient(timeout=timeout)
        self.client = stripe.StripeClient(api_key, base_addresses={"api": api_base} if api_base else None,
                                          http_client=self.http, max_network_retries=0)

    async def create_payment(self, payment: DuePayment) -> dict:
        params = {
            "amount": payment.pence, "currency": "gbp", "confirm": False,
            "customer": payment.processor_customer, "payment_method": payment.processor_method,
            "description": payment.description or f"Account {payment.account_number}",
            "metadata": {"payment_id": str(payment.id), "account_id": str(payment.account_id),
                         "account_number": payment.account_number, "esco": payment.esco_code},
        }
        return await self._call(self.client.v1.payment_intents.create_async(
            params, {"idempotency_key": str(payment.id)}))

    async def find_payment(self, payment_id: UUID) -> dict | None:
        found = await self._call(self.client.v1.payment_intents.search_async(
            {"query": f"metadata['payment_id']:'{payment_id}'"}))
        return found["data"][0] if found["data"] else None

    async def confirm_payment(self, reference: str, payment_id: UUID) -> dict:
        try:
            return await self._call(self.client.v1.payment_intents.confirm_async(
                reference, {"off_session": True}, {"idempotency_key": f"{payment_id}:confirm"}))
        except Declined as declined:
            if declined.code == UNEXPECTED_STATE:  # confirmed before: never charged again, say where it stands
                return await self.retrieve_payment(reference)
            raise

    async def retrieve_payment(self, reference: str) -> dict:
        return await self._call(self.client.v1.payment_intents.retrieve_async(reference))

    async def create_refund(self, refund: DueRefund) -> dict:
        return await self._call(self.client.v1.refunds.create_async(
            {"payment_intent": refund.payment_reference, "amount": refund.pence,
             "metadata": {"refund_id": str(refund.id)}},
            {"idempotency_key": str(refund.id)}))

    async def find_refund(self, payment_reference: str, refund_id: UUID) -> dict | None:
        found = await self._call(self.client.v1.refunds.list_async(
            {"payment_intent": payment_reference, "limit": 100}))
        return next((r for r in found["data"] if r.get("metadata", {}).get("refund_id") == str(refund_id)), None)

    async def close(self) -> None:
        await self.http.close_async()

    @staticmethod
    async def _call(call) -> dict:
        """The answer as a plain dict. The processor refusing the request (a card declined, an invalid
        request) is Declined; no answer, a 5xx, a rate limit or a rejected key is Unavailable."""
        try:
            return (await call).to_dict()
        except (stripe.CardError, stripe.InvalidRequestError) as error:
            raise Declined(error.user_message or str(error), _intent_of(error), code=error.code) from error
        except stripe.StripeError as error:
            raise Unavailable(f"the processor did not do it ({type(error).__name__}): {error}") from error


def _intent_of(error: stripe.StripeError) -> dict | None:
    """The PaymentIntent a refusal carries (Stripe puts it in the error)."""
    intent = getattr(error.error, "payment_intent", None) if error.error is not None else None
    return intent.to_dict() if intent is not None else None
