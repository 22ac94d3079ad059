"""``flows gateway``: the one ASGI service for what PostgREST cannot do.

Realtime (WebSocket ``/realtime`` and SSE ``/events/stream``), the live page
(``/live``) and Prometheus metrics (``/metrics``) today; processor webhooks
join as one more module in ``flows.gateway.routes`` (see ``app.py``). It
authenticates like PostgREST: the same JWT secret, and it reads rows as the
token's role and claims, so row-level security decides what each client sees.
"""
