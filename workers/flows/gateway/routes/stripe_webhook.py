"""POST /webhooks/stripe: the payment processor's events.

The signature is checked on the raw body with the ``stripe`` library (the
``Stripe-Signature`` header, the endpoint's secret FLOWS_STRIPE_WEBHOOK_SECRET,
five minutes' tolerance): a bad or missing one gets 400 and nothing is written.
A verified event is applied by one SQL call in one short transaction
(``billing.apply_processor_event_v1``, as the workers' role): the event id is
recorded once (a replay answers 200 "duplicate"), the payment moves forward
only (an event older than what is known is "stale"), unknown types are recorded
and ignored. The answer is 2xx as soon as that commits; the top-up's meter
command runs on the workers. A database failure answers 500, so the processor
delivers the event again.
"""

import json
import time

import asyncpg
import stripe
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flows.gateway import metrics, queries
from flows.log import get_logger

log = get_logger("flows.gateway.webhooks")
CLAIMS = json.dumps({"role": "flows_service", "sub": "stripe webhook"})


class ProcessorEvents:
    """Applies verified events through a small pool of its own (the feed's connections hold snapshots)."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self.pool: asyncpg.Pool | None = None

    async def apply(self, provider: str, event: str) -> asyncpg.Record:
        if self.pool is None:
            self.pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=8,
                                                  server_settings={"application_name": "flows-gateway-webhooks"})
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(queries.AS_PROCESSOR, CLAIMS)
            return await conn.fetchrow(queries.APPLY_PROCESSOR_EVENT, provider, event)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()


def routes(gateway) -> list:
    events = ProcessorEvents(gateway.config.database_url)
    gateway.resources.append(events)

    async def stripe_webhook(request: Request):
        started = time.perf_counter()
        secret = gateway.config.stripe_webhook_secret
        if not secret:
            return _answer("refused", started, 503, error="webhooks are not configured",
                           hint="set FLOWS_STRIPE_WEBHOOK_SECRET (the endpoint's signing secret)")
        body = await request.body()
        try:
            payload = body.decode("utf-8")
            stripe.WebhookSignature.verify_header(payload, request.headers.get("stripe-signature"), secret,
                                                  gateway.config.webhook_tolerance)
            event = json.loads(payload)
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as error:
            log.warning("webhook refused: bad signature", reason=str(error))
            return _answer("bad_signature", started, 400, error="the Stripe-Signature does not verify")
        try:
            row = await events.apply("stripe", payload)
        except asyncpg.PostgresError as error:
            if error.sqlstate == "22023":  # signed, but not an event: delivering it again changes nothing
                return _answer("refused", started, 400, error=str(error))
            log.error("webhook not applied", event_id=event.get("id"), error=str(error))
            return _answer("failed", started, 500, error="not applied; deliver it again")
        except (OSError, asyncpg.InterfaceError) as error:
            log.error("webhook not applied: no database", event_id=event.get("id"), error=str(error))
            return _answer("failed", started, 503, error="not applied; deliver it again")
        log.info("webhook", event_id=event.get("id"), type=event.get("type"), outcome=row["outcome"],
                 payment_id=str(row["payment_id"]) if row["payment_id"] else None)
        return _answer(row["outcome"], started, 200, received=True, outcome=row["outcome"], detail=row["detail"])

    return [Route("/webhooks/stripe", stripe_webhook, methods=["POST"])]


def _answer(counted_as: str, started: float, status: int, **body) -> JSONResponse:
    metrics.WEBHOOKS.labels(counted_as).inc()
    metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - started)
    return JSONResponse(body, status)
