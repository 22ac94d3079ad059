"""GET /metrics (Prometheus) and GET /health."""

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flows.gateway.metrics import REGISTRY


def routes(gateway) -> list:
    async def metrics(request):
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    async def health(request):
        feed = gateway.feed
        up = feed.connected.is_set()
        return JSONResponse({"feed": "connected" if up else "reconnecting", "position": feed.position,
                             "subscriptions": len(feed.subscriptions)}, status_code=200 if up else 503)

    return [Route("/metrics", metrics), Route("/health", health)]
