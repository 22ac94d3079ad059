"""The gateway's ASGI application: routes from the modules in ``ROUTE_MODULES``,
the feed started and stopped with the application.

To add endpoints (e.g. processor webhooks), write a module in
``flows.gateway.routes`` with ``routes(gateway) -> list[BaseRoute]`` and add
it to ``ROUTE_MODULES``; ``gateway`` gives it the configuration and the feed,
and closes what a module appends to ``gateway.resources`` (objects with an
async ``close()``) when the application stops.
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from starlette.applications import Starlette

from flows.gateway.config import GatewayConfig
from flows.gateway.feed import Feed
from flows.gateway.routes import (
    bank_statements,
    event_stream,
    live_page,
    prometheus,
    realtime_socket,
    stripe_webhook,
)
from flows.log import get_logger

ROUTE_MODULES = (realtime_socket, event_stream, live_page, prometheus, stripe_webhook, bank_statements)


@dataclass
class Gateway:
    config: GatewayConfig
    feed: Feed = field(init=False)
    resources: list = field(default_factory=list)  # closed when the application stops

    def __post_init__(self):
        self.feed = Feed(self.config)


def create_app(config: GatewayConfig) -> Starlette:
    gateway = Gateway(config)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(gateway.feed.run())
        try:
            yield
        finally:
            gateway.feed.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            for resource in gateway.resources:
                with contextlib.suppress(Exception):
                    await resource.close()

    app = Starlette(routes=[route for module in ROUTE_MODULES for route in module.routes(gateway)],
                    lifespan=lifespan)
    app.state.gateway = gateway
    return RequestLog(app)


class RequestLog:
    """One log line per request, with the path but never the query string (it may carry a token)."""

    def __init__(self, app):
        self.app = app
        self.log = get_logger("flows.gateway.http")

    def __getattr__(self, name):
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), {}

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "websocket.close":
                status["code"] = message.get("code")
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.log.info("request", method=scope.get("method", "WS"), path=scope["path"], status=status.get("code"),
                          seconds=round(time.perf_counter() - started, 4))
