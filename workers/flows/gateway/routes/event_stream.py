"""GET /events/stream?relation=NAME[&column=op.value...][&snapshot=true][&since=ID]: Server-Sent Events.

Authorization: Bearer <JWT> (the same tokens as the API). Each change of the
relation the token may see arrives as ``event: change`` with ``id:`` its
position; a reconnecting client sends Last-Event-ID and misses nothing.
docs/realtime.md has the protocol.
"""

from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from flows.gateway import filters, metrics
from flows.gateway.delivery import EXPIRED, HEARTBEAT, Session, delivered, messages
from flows.gateway.feed import SubscriptionRefused
from flows.gateway.principal import AuthError, bearer, verify
from flows.gateway.subscriptions import Message, Outbox, Subscription

RESERVED = {"relation", "since", "snapshot"}


def render(message: Message) -> str:
    if message.kind == "error":
        return f"event: error\ndata: {{{message.body}}}\n\n"
    return f"id: {message.position}\nevent: {message.kind}\ndata: {{{message.body}}}\n\n"


def problem(status: int, message: str, hint: str | None = None, **headers) -> JSONResponse:
    return JSONResponse({"message": message, "hint": hint}, status_code=status, headers=headers or None)


def routes(gateway) -> list:
    config, feed = gateway.config, gateway.feed

    async def stream(request):
        try:
            principal = verify(bearer(request.headers.get("authorization")), config.jwt_secret)
        except AuthError as error:
            return problem(401, str(error), "send Authorization: Bearer <JWT> (flows token)",
                           **{"WWW-Authenticate": "Bearer"})
        params = request.query_params
        relation = params.get("relation")
        if not relation:
            return problem(400, "relation is required", "e.g. /events/stream?relation=meter_shadows")
        since_text = request.headers.get("last-event-id") or params.get("since")
        try:
            since = int(since_text) if since_text else None
            conditions = filters.parse((k, v) for k, v in params.multi_items() if k not in RESERVED)
        except ValueError as error:
            return problem(400, str(error) if isinstance(error, filters.FilterError)
                           else f"since / Last-Event-ID must be an event id, got {since_text!r}")
        outbox = Outbox(config.queue_limit)
        subscription = Subscription.create(
            "stream", relation, conditions, principal, outbox, "sse", feed.key_columns.get(relation), since,
            params.get("snapshot", "").lower() in ("1", "true", "yes"))
        try:
            await feed.check(subscription)
        except SubscriptionRefused as error:
            return problem(400, str(error))
        session = Session(principal, principal.expires_at)
        feed.add(subscription)
        metrics.CONNECTIONS.labels("sse").inc()

        async def events():
            try:
                yield f": subscribed to {relation}\nretry: 2000\n\n"
                async for item in messages(outbox, session, config.heartbeat_interval):
                    if item is EXPIRED:
                        yield 'event: error\ndata: {"message":"token expired","code":"token_expired"}\n\n'
                        return
                    if item is HEARTBEAT:
                        yield f"id: {subscription.cursor}\nevent: heartbeat\ndata: {{}}\n\n" if (
                            subscription.joined and not outbox.messages) else ": keepalive\n\n"
                        continue
                    yield render(item)
                    delivered(item)
                    if item.kind == "error":
                        return
            finally:
                feed.remove(subscription)
                metrics.CONNECTIONS.labels("sse").dec()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return [Route("/events/stream", stream)]

