"""GET /realtime: WebSocket, several subscriptions on one connection.

The token comes as the first message ({"type": "auth", "token": ...}) or as
the ``token`` query parameter (kept out of the logs); a later auth message
with a fresh token of the same role and claims extends the session. Then:
{"type": "subscribe", "id": NAME, "relation": ..., "filter": {"meter_id": "eq.X"},
"since": ID, "snapshot": true} and {"type": "unsubscribe", "id": NAME}.
The socket closes with code 4401 when the token expires. docs/realtime.md.
"""

import asyncio
import contextlib
import json
from urllib.parse import parse_qsl

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from flows.gateway import filters, metrics
from flows.gateway.delivery import EXPIRED, HEARTBEAT, Session, delivered, messages
from flows.gateway.feed import SubscriptionRefused
from flows.gateway.principal import AuthError, verify
from flows.gateway.subscriptions import Message, Outbox, Subscription

TOKEN_EXPIRED = 4401
UNAUTHORIZED = 4403


def render(message: Message) -> str:
    return f'{{"type":"{message.kind}","subscription":{json.dumps(message.subscription.name)},{message.body}}}'


def routes(gateway) -> list:
    config, feed = gateway.config, gateway.feed

    async def realtime(websocket: WebSocket):
        await websocket.accept()
        try:
            session = Session(*_first_principal(await _token(websocket, config.auth_timeout), config.jwt_secret))
        except (AuthError, TimeoutError) as error:
            reason = "no token within the time allowed" if isinstance(error, TimeoutError) else str(error)
            await websocket.send_json({"type": "error", "message": reason})
            await websocket.close(TOKEN_EXPIRED if reason == "token expired" else UNAUTHORIZED, reason[:120])
            return
        except WebSocketDisconnect:
            return
        outbox = Outbox(config.queue_limit)
        subscriptions: dict[str, Subscription] = {}
        metrics.CONNECTIONS.labels("websocket").inc()
        await websocket.send_json({"type": "ready", "role": session.principal.role,
                                   "expires_at": session.expires_at, "position": feed.position})
        writer = asyncio.create_task(_write(websocket, outbox, session, config.heartbeat_interval))
        try:
            while True:
                receiving = asyncio.create_task(websocket.receive_text())
                done, _ = await asyncio.wait({receiving, writer}, return_when=asyncio.FIRST_COMPLETED)
                if writer in done:
                    receiving.cancel()
                    return
                try:
                    request = json.loads(receiving.result())
                    if not isinstance(request, dict):
                        raise ValueError("a message is a JSON object")
                except ValueError as error:
                    await _reply(outbox, {"type": "error", "message": f"cannot read the message: {error}"})
                    continue
                await _handle(request, websocket, session, outbox, subscriptions, gateway)
        except WebSocketDisconnect:
            pass
        finally:
            writer.cancel()
            for subscription in subscriptions.values():
                feed.remove(subscription)
            metrics.CONNECTIONS.labels("websocket").dec()

    return [WebSocketRoute("/realtime", realtime)]


async def _token(websocket: WebSocket, timeout: float) -> str | None:
    if token := websocket.query_params.get("token"):
        return token
    first = json.loads(await asyncio.wait_for(websocket.receive_text(), timeout))
    return first.get("token") if isinstance(first, dict) and first.get("type") == "auth" else None


def _first_principal(token, secret):
    principal = verify(token, secret)
    return principal, principal.expires_at


async def _reply(outbox: Outbox, reply: dict) -> None:
    """Replies go through the outbox, so they keep their order with the changes."""
    outbox.put_control(Message("reply", None, 0, json.dumps(reply)[1:-1]))


async def _handle(request: dict, websocket, session: Session, outbox: Outbox, subscriptions: dict, gateway) -> None:
    kind, name = request.get("type"), str(request.get("id", ""))
    feed = gateway.feed
    if kind == "auth":
        try:
            principal = verify(request.get("token"), gateway.config.jwt_secret)
        except AuthError as error:
            await _reply(outbox, {"type": "error", "message": str(error)})
            return
        if principal.audience != session.principal.audience:
            await _reply(outbox, {"type": "error", "message": "a new token must have the same role and claims; "
                                                               "open a new connection for another identity"})
            return
        session.expires_at = principal.expires_at
        await _reply(outbox, {"type": "ready", "role": principal.role, "expires_at": principal.expires_at})
    elif kind == "subscribe":
        if not name or name in subscriptions:
            await _reply(outbox, {"type": "error", "id": name, "message": "subscribe needs an id not in use"})
            return
        try:
            subscription = _subscription(request, name, session, outbox, feed)
            await feed.check(subscription)
        except (ValueError, TypeError, SubscriptionRefused) as error:
            await _reply(outbox, {"type": "error", "id": name, "message": str(error)})
            return
        subscriptions[name] = subscription
        await _reply(outbox, {"type": "subscribed", "id": name, "relation": subscription.relation})
        feed.add(subscription)
    elif kind == "unsubscribe" and name in subscriptions:
        feed.remove(subscriptions.pop(name))
        await _reply(outbox, {"type": "unsubscribed", "id": name})
    elif kind == "ping":
        await _reply(outbox, {"type": "pong"})
    else:
        await _reply(outbox, {"type": "error", "message": f"unknown message type {kind!r} (or unknown id {name!r})"})


def _subscription(request: dict, name: str, session: Session, outbox: Outbox, feed) -> Subscription:
    relation = str(request.get("relation") or "")
    if not relation:
        raise ValueError("relation is required")
    raw = request.get("filter") or {}
    pairs = parse_qsl(raw, keep_blank_values=True) if isinstance(raw, str) else [
        (str(k), str(v)) for k, v in (raw.items() if isinstance(raw, dict) else raw)]
    since = request.get("since")
    return Subscription.create(name, relation, filters.parse(pairs), session.principal, outbox, "websocket",
                               feed.key_columns.get(relation), int(since) if since is not None else None,
                               bool(request.get("snapshot")))


async def _write(websocket: WebSocket, outbox: Outbox, session: Session, heartbeat: float) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        async for item in messages(outbox, session, heartbeat):
            if item is EXPIRED:
                await websocket.send_json({"type": "error", "message": "token expired"})
                await websocket.close(TOKEN_EXPIRED, "token expired")
                return
            if item is HEARTBEAT:
                await websocket.send_text('{"type":"heartbeat"}')
                continue
            if item.kind == "reply":
                await websocket.send_text("{" + item.body + "}")
                continue
            await websocket.send_text(render(item))
            delivered(item)
