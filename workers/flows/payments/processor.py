"""The payment processor adapter: how the payments job talks to a card and
Direct Debit processor.

The job (flows.payments.job) decides what to do from the database; an adapter
only makes the calls and hands back the processor's own objects (a Stripe
PaymentIntent or Refund, as a dict) for SQL to apply
(billing.record_payment_intent_v1, billing.record_refund_v1). One
implementation ships: Stripe on the official library (flows.payments.stripe);
tests run it against the local test processor (flows.payments.test_processor),
which speaks the same HTTP API.

Errors say what the job should do next: ``Declined`` is final (the processor
refused the payment: a card declined, a mandate cancelled), ``Unavailable``
is worth trying again later (the processor did not answer, or answered 5xx).
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol
from uuid import UUID

from flows.errors import FlowsError


@dataclass(frozen=True)
class DuePayment:
    """A claimed payment, with what the processor needs to take it (billing.claim_payment_work_v1)."""

    id: UUID
    esco_code: str
    account_id: UUID
    account_number: str
    status: str
    amount: Decimal  # GBP
    provider_reference: str | None
    attempt: int
    description: str | None
    processor_customer: str | None
    processor_method: str | None

    @property
    def pence(self) -> int:
        return int(self.amount * 100)


@dataclass(frozen=True)
class DueRefund:
    """A claimed refund (billing.claim_refund_work_v1)."""

    id: UUID
    payment_reference: str
    amount: Decimal
    reason: str
    provider_reference: str | None
    attempt: int

    @property
    def pence(self) -> int:
        return int(self.amount * 100)


class Declined(FlowsError):
    """The processor refused: final. ``intent`` is its PaymentIntent as it now stands, when it sent one;
    ``code`` the processor's reason (e.g. card_declined)."""

    def __init__(self, message: str, intent: dict | None = None, code: str | None = None):
        super().__init__(message)
        self.intent, self.code = intent, code


class Unavailable(FlowsError):
    """No usable answer from the processor (unreachable, timed out, 5xx, rate limited): try again later."""


class PaymentProcessor(Protocol):
    name: str

    async def create_payment(self, payment: DuePayment) -> dict:
        """Creates the payment at the processor, unconfirmed (nothing is charged yet), with the payment id as
        idempotency key and in its metadata. Returns the processor's object (its id first of all)."""

    async def find_payment(self, payment_id: UUID) -> dict | None:
        """The payment the processor holds for this payment id (by its metadata), if any."""

    async def confirm_payment(self, reference: str, payment_id: UUID) -> dict:
        """Charges a created payment (off session: the customer is not there). A payment confirmed before is
        not charged again: its current state comes back. Raises Declined when the processor refuses."""

    async def retrieve_payment(self, reference: str) -> dict:
        """The payment as the processor holds it now."""

    async def create_refund(self, refund: DueRefund) -> dict:
        """Refunds (part of) a payment, with the refund id as idempotency key and in its metadata."""

    async def find_refund(self, payment_reference: str, refund_id: UUID) -> dict | None:
        """The refund the processor holds for this refund id, if any."""

    async def close(self) -> None: ...
