"""The test processor — NOT Stripe, and it moves no money.

A local stand-in for the part of Stripe's HTTP API Flows uses, so the payments
job (through the official ``stripe`` library, pointed here), the gateway's
webhook endpoint, the tests, the benchmark and the embedded stack run the
whole card and Direct Debit path without the internet. It speaks Stripe's wire
format: form-encoded requests with ``Authorization: Bearer sk_...`` and
``Idempotency-Key`` (a repeated key replays the first answer for 24 hours of
the processor's clock, and a key reused with other parameters is refused), JSON
objects and errors as Stripe shapes them, and webhooks signed with Stripe's
``Stripe-Signature`` scheme (``t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with the endpoint's secret>``), delivered again with a backoff
until the endpoint answers 2xx, concurrently and so in no guaranteed order.

The subset:
    POST /v1/payment_intents                  create (confirm=true confirms at once)
    GET  /v1/payment_intents/{id}             retrieve
    POST /v1/payment_intents/{id}/confirm     charge it (off session)
    GET  /v1/payment_intents/search           query=metadata['payment_id']:'...'
    POST /v1/refunds, GET /v1/refunds         refund (part of) a succeeded payment; list by payment_intent
Payment methods behave as their names say (Stripe's test names where it has them):
    pm_card_visa (any pm_card_...)     succeeds at once: payment_intent.succeeded, charge.succeeded
    pm_card_chargeDeclined             declined (402 card_error): payment_intent.payment_failed
    pm_bacs_debit (any ...bacs...)     a Direct Debit: processing, then succeeded after ``settle_after`` seconds
    pm_bacs_debit_fail (any ...fail)   processing, then payment_failed
For tests (not Stripe): GET /_test/summary (what was created and charged, per payment), POST
/_test/clock?advance=SECONDS (idempotency keys expire), POST /_test/webhooks?paused=true|false, GET /_test/events.

Run it with ``flows test-processor`` (the embedded stack does); docs/payments.md.
"""

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flows.log import get_logger

IDEMPOTENCY_WINDOW = 24 * 3600.0  # seconds a key is remembered, as at Stripe
API_VERSION = "2026-10-28.endive"
log = get_logger("flows.payments.test_processor")


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header for ``payload``: t=<time>,v1=<HMAC-SHA256 of "<time>.<payload>">."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def form(body: bytes) -> dict:
    """Stripe's form encoding (``metadata[payment_id]=...``, ``expand[0]=...``) as nested dicts."""
    decoded: dict = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        target = decoded
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return decoded


def truthy(value) -> bool:
    return str(value).lower() in ("true", "1")


def intent_object(amount_pence: int, metadata: dict, *, status: str = "requires_confirmation",
                  customer: str | None = None, payment_method: str | None = None, description: str | None = None,
                  intent_id: str | None = None, created: float | None = None) -> dict:
    """A PaymentIntent as Stripe shapes it."""
    return {
        "id": intent_id or new_id("pi"), "object": "payment_intent", "amount": amount_pence,
        "amount_received": amount_pence if status == "succeeded" else 0, "currency": "gbp", "customer": customer,
        "payment_method": payment_method, "description": description, "metadata": metadata, "status": status,
        "created": int(created or time.time()), "latest_charge": None, "last_payment_error": None, "livemode": False,
        "confirmation_method": "automatic", "capture_method": "automatic",
    }


def event_object(kind: str, obj: dict, created: float | None = None) -> dict:
    """An event as Stripe sends it to a webhook endpoint: ``data.object`` is the object as it stood."""
    return {"id": new_id("evt"), "object": "event", "api_version": API_VERSION, "created": int(created or time.time()),
            "type": kind, "livemode": False, "pending_webhooks": 1, "data": {"object": copy.deepcopy(obj)},
            "request": {"id": new_id("req"), "idempotency_key": None}}


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.body = status, {"error": {"type": kind, "message": message, "code": code, **extra}}


@dataclass
class Remembered:
    fingerprint: str
    status: int
    body: dict
    at: float


@dataclass
class Delivery:
    event: dict
    attempts: int = 0
    delivered_at: float | None = None
    last_status: str = ""


@dataclass
class TestProcessor:
    """The processor's state and its HTTP app (``.app``); deliver webhooks to ``webhook_url``."""

    __test__ = False  # a product class, not a pytest test class

    webhook_url: str | None = None
    webhook_secret: str | None = None
    settle_after: float = 2.0  # seconds a Direct Debit stays processing
    retry_delay: float = 0.5  # first webhook retry; doubles, up to max_retry_delay
    max_retry_delay: float = 30.0
    concurrency: int = 64  # webhooks in flight at once
    state_file: Path | None = None
    intents: dict[str, dict] = field(default_factory=dict)
    refunds: dict[str, dict] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    remembered: dict[str, Remembered] = field(default_factory=dict)
    created_per_payment: Counter = field(default_factory=Counter)  # metadata payment_id -> PaymentIntents made
    charges_per_intent: Counter = field(default_factory=Counter)  # PaymentIntent -> times it was charged
    clock_offset: float = 0.0
    paused: bool = False

    def __post_init__(self):
        self._queue: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []
        self._http: httpx.AsyncClient | None = None
        if self.state_file and self.state_file.exists():
            saved = json.loads(self.state_file.read_text())
            self.intents, self.refunds = saved["intents"], saved["refunds"]
            self.created_per_payment = Counter(saved["created_per_payment"])
            self.charges_per_intent = Counter(saved["charges_per_intent"])
        self.app = Starlette(routes=[
            Route("/v1/payment_intents", self._create_intent, methods=["POST"]),
            Route("/v1/payment_intents/search", self._search_intents, methods=["GET"]),
            Route("/v1/payment_intents/{id}", self._retrieve_intent, methods=["GET"]),
            Route("/v1/payment_intents/{id}/confirm", self._confirm_intent, methods=["POST"]),
            Route("/v1/refunds", self._create_refund, methods=["POST"]),
            Route("/v1/refunds", self._list_refunds, methods=["GET"]),
            Route("/_test/summary", self._summary, methods=["GET"]),
            Route("/_test/clock", self._advance_clock, methods=["POST"]),
            Route("/_test/webhooks", self._pause, methods=["POST"]),
            Route("/_test/events", self._list_events, methods=["GET"]),
        ], lifespan=self._lifespan)

    # -- life -------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._http = httpx.AsyncClient(timeout=10)
        self._tasks = [asyncio.create_task(self._deliver_forever()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        self._save()

    def now(self) -> float:
        """The processor's clock (tests move it forward to expire idempotency keys)."""
        return time.time() + self.clock_offset

    # -- the API ------------------------------------------------------------------------
    async def _create_intent(self, request: Request):
        return await self._answer(request, lambda params: self.create_intent(params))

    async def _confirm_intent(self, request: Request):
        return await self._answer(request, lambda params: self.confirm_intent(request.path_params["id"], params))

    async def _retrieve_intent(self, request: Request):
        return await self._answer(request, lambda _: (200, self._intent(request.path_params["id"])), remember=False)

    async def _search_intents(self, request: Request):
        def search(_):
            wanted = dict(re.findall(r"metadata\['([^']+)'\]:'([^']*)'", request.query_params.get("query", "")))
            if not wanted:
                raise ApiError(400, "invalid_request_error", "query must be metadata['key']:'value'", param="query")
            found = [i for i in self.intents.values()
                     if all(i["metadata"].get(k) == v for k, v in wanted.items())]
            return 200, {"object": "search_result", "data": found, "has_more": False, "next_page": None,
                         "url": "/v1/payment_intents/search"}
        return await self._answer(request, search, remember=False)

    async def _create_refund(self, request: Request):
        return await self._answer(request, lambda params: self.create_refund(params))

    async def _list_refunds(self, request: Request):
        def listed(_):
            intent = request.query_params.get("payment_intent")
            return 200, {"object": "list", "url": "/v1/refunds", "has_more": False,
                         "data": [r for r in self.refunds.values() if intent in (None, r["payment_intent"])]}
        return await self._answer(request, listed, remember=False)

    async def _answer(self, request: Request, handle, remember: bool = True) -> JSONResponse:
        """Authentication, the form, Idempotency-Key (replay for 24 h; other parameters: refused), errors."""
        if not request.headers.get("authorization", "").startswith("Bearer sk_"):
            return JSONResponse(ApiError(401, "invalid_request_error", "Invalid API Key provided").body, 401)
        raw = await request.body()
        key = request.headers.get("idempotency-key") if remember else None
        fingerprint = hashlib.sha256(request.url.path.encode() + b"?" + raw).hexdigest()
        if key is not None:
            seen = self.remembered.get(key)
            if seen is not None and self.now() - seen.at < IDEMPOTENCY_WINDOW:
                if seen.fingerprint != fingerprint:
                    error = ApiError(400, "idempotency_error", "Keys for idempotent requests can only be used with "
                                     "the same parameters they were first used with.")
                    return JSONResponse(error.body, 400)
                return JSONResponse(seen.body, seen.status, headers={"Idempotent-Replayed": "true"})
        try:
            status, body = handle(form(raw))
        except ApiError as error:
            status, body = error.status, error.body
        if key is not None and status != 401:
            self.remembered[key] = Remembered(fingerprint, status, copy.deepcopy(body), self.now())
        self._save()
        return JSONResponse(body, status)

    # -- payment intents ---------------------------------------------------------------
    def create_intent(self, params: dict) -> tuple[int, dict]:
        try:
            amount = int(params.get("amount", ""))
        except ValueError:
            raise ApiError(400, "invalid_request_error", "Missing required param: amount.", param="amount") from None
        if amount < 1 or params.get("currency", "").lower() != "gbp":
            raise ApiError(400, "invalid_request_error", "amount must be positive and currency gbp", param="amount")
        intent = intent_object(
            amount, params.get("metadata", {}), customer=params.get("customer"),
            payment_method=params.get("payment_method"), description=params.get("description"), created=self.now(),
            status="requires_confirmation" if params.get("payment_method") else "requires_payment_method")
        self.intents[intent["id"]] = intent
        self.created_per_payment[intent["metadata"].get("payment_id", "")] += 1
        self._emit("payment_intent.created", intent)
        if truthy(params.get("confirm")):
            return self.confirm_intent(intent["id"], params)
        return 200, copy.deepcopy(intent)

    def confirm_intent(self, intent_id: str, params: dict) -> tuple[int, dict]:
        intent = self._intent(intent_id)
        if params.get("payment_method"):
            intent["payment_method"] = params["payment_method"]
        if intent["status"] not in ("requires_confirmation", "requires_payment_method") or not intent["payment_method"]:
            raise ApiError(400, "invalid_request_error",
                           f"This PaymentIntent's status is {intent['status']}: it cannot be confirmed.",
                           code="payment_intent_unexpected_state", payment_intent=copy.deepcopy(intent))
        method = intent["payment_method"]
        if "Declined" in method:
            intent.update(status="requires_payment_method", last_payment_error={
                "type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                "message": "Your card was declined."})
            self._emit("payment_intent.payment_failed", intent)
            raise ApiError(402, "card_error", "Your card was declined.", code="card_declined",
                           decline_code="generic_decline", payment_intent=copy.deepcopy(intent))
        self.charges_per_intent[intent_id] += 1
        if "bacs" in method:  # a Direct Debit takes days: processing, then settled (or failed)
            intent.update(status="processing", last_payment_error=None)
            self._emit("payment_intent.processing", intent)
            succeeds = "fail" not in method
            asyncio.get_running_loop().call_later(self.settle_after, self.settle, intent_id, succeeds)
        else:
            self._succeed(intent)
        return 200, copy.deepcopy(intent)

    def settle(self, intent_id: str, succeeded: bool = True) -> None:
        intent = self.intents[intent_id]
        if intent["status"] != "processing":
            return
        if succeeded:
            self._succeed(intent)
        else:
            intent.update(status="requires_payment_method", last_payment_error={
                "type": "card_error", "code": "debit_not_authorized", "message": "The Direct Debit was refused."})
            self._emit("payment_intent.payment_failed", intent)
        self._save()

    def _succeed(self, intent: dict) -> None:
        charge = {"id": new_id("ch"), "object": "charge", "amount": intent["amount"], "currency": "gbp",
                  "payment_intent": intent["id"], "status": "succeeded", "paid": True,
                  "receipt_url": f"https://pay.example/receipts/{intent['id']}", "created": int(self.now())}
        intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=charge["id"],
                      last_payment_error=None)
        self._emit("charge.succeeded", charge)
        self._emit("payment_intent.succeeded", intent)

    def _intent(self, intent_id: str) -> dict:
        if intent_id not in self.intents:
            raise ApiError(404, "invalid_request_error", f"No such payment_intent: '{intent_id}'",
                           code="resource_missing", param="intent")
        return self.intents[intent_id]

    # -- refunds --------------------------------------------------------------------------
    def create_refund(self, params: dict) -> tuple[int, dict]:
        intent = self._intent(params.get("payment_intent", ""))
        refunded = sum(r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent["id"])
        amount = int(params.get("amount") or intent["amount"] - refunded)
        if intent["status"] != "succeeded" or amount < 1 or amount > intent["amount"] - refunded:
            raise ApiError(400, "invalid_request_error", f"Refund amount ({amount}) is greater than unrefunded "
                           f"amount on charge ({intent['amount'] - refunded})", code="amount_too_large")
        refund = {"id": new_id("re"), "object": "refund", "amount": amount, "currency": "gbp",
                  "payment_intent": intent["id"], "charge": intent["latest_charge"], "status": "succeeded",
                  "metadata": params.get("metadata", {}), "created": int(self.now())}
        self.refunds[refund["id"]] = refund
        self._emit("refund.created", refund)
        return 200, copy.deepcopy(refund)

    # -- events and their delivery ------------------------------------------------------
    def _emit(self, kind: str, obj: dict) -> dict:
        event = event_object(kind, obj, self.now())
        self.events.append(event)
        if self.webhook_url and self._queue is not None:
            self.deliveries[event["id"]] = Delivery(event)
            self._queue.put_nowait(event["id"])
        return event

    async def _deliver_forever(self) -> None:
        while True:
            event_id = await self._queue.get()
            delivery = self.deliveries[event_id]
            while self.paused:
                await asyncio.sleep(0.1)
            payload = json.dumps(delivery.event)
            delivery.attempts += 1
            try:
                response = await self._http.post(self.webhook_url, content=payload, headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": sign(payload, self.webhook_secret)})
                delivery.last_status = str(response.status_code)
                ok = response.is_success
            except httpx.HTTPError as error:
                delivery.last_status, ok = type(error).__name__, False
            if ok:
                delivery.delivered_at = time.time()
                continue
            delay = min(self.max_retry_delay, self.retry_delay * 2 ** min(delivery.attempts - 1, 10))
            asyncio.get_running_loop().call_later(delay, self._queue.put_nowait, event_id)

    def undelivered(self) -> int:
        return sum(1 for d in self.deliveries.values() if d.delivered_at is None)

    # -- for tests ------------------------------------------------------------------------
    def summary(self) -> dict:
        return {"payment_intents": len(self.intents), "created_per_payment": dict(self.created_per_payment),
                "charges_per_intent": dict(self.charges_per_intent), "refunds": len(self.refunds),
                "events": len(self.events), "undelivered": self.undelivered(),
                "delivery_attempts": sum(d.attempts for d in self.deliveries.values())}

    async def _summary(self, request: Request):
        return JSONResponse(self.summary())

    async def _advance_clock(self, request: Request):
        self.clock_offset += float(request.query_params.get("advance", "0"))
        return JSONResponse({"clock": self.now()})

    async def _pause(self, request: Request):
        self.paused = truthy(request.query_params.get("paused", "true"))
        return JSONResponse({"paused": self.paused})

    async def _list_events(self, request: Request):
        return JSONResponse({"data": self.events[-int(request.query_params.get("limit", "100")):]})

    def _save(self) -> None:
        if self.state_file is None:
            return
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps({"intents": self.intents, "refunds": self.refunds,
                                         "created_per_payment": self.created_per_payment,
                                         "charges_per_intent": self.charges_per_intent}))
        temporary.replace(self.state_file)
