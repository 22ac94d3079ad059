"""`flows gateway`: the ASGI service for WebSocket and SSE, and the payment processor's webhooks."""

import click

from flows.cli.common import database_url_option, settings


@click.command()
@database_url_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8090, show_default=True, envvar="FLOWS_GATEWAY_PORT", help="Port to listen on.")
@click.option("--queue-limit", default=500, show_default=True,
              help="Messages waiting per connection before a slow client is told to resync.")
@click.option("--retention", default=3600.0, show_default=True,
              help="Seconds of changes kept for clients that resume (older: resync).")
@click.option("--prune-interval", default=300.0, show_default=True,
              help="Seconds between prunes of the change log (0: never, e.g. when pg_cron prunes).")
@click.option("--poll", default=1.0, show_default=True, help="Seconds between feed steps when no doorbell rings.")
@click.option("--batch-window", default=0.02, show_default=True,
              help="Seconds a doorbell waits for more commits, so they are read and fanned out in one step.")
@click.option("--step-interval", default=0.1, show_default=True,
              help="Least seconds between feed steps: under a stream of commits, each step's reads serve more changes.")
def gateway(database_url: str | None, host: str, port: int, queue_limit: int, retention: float,
            prune_interval: float, poll: float, batch_window: float, step_interval: float) -> None:
    """Serve /realtime (WebSocket), /events/stream (SSE), /live, /metrics and POST /webhooks/stripe.

    Log in as flows_authenticator (FLOWS_DATABASE_URL), like PostgREST, with the
    same JWT secret (FLOWS_JWT_SECRET); processor webhooks are verified with
    FLOWS_STRIPE_WEBHOOK_SECRET.
    """
    import uvicorn

    from flows.gateway.app import create_app
    from flows.gateway.config import GatewayConfig

    resolved = settings(database_url)
    config = GatewayConfig(database_url=resolved.database_url, jwt_secret=resolved.jwt_secret, host=host, port=port,
                           queue_limit=queue_limit, retention_seconds=retention, prune_interval=prune_interval,
                           poll_interval=poll, batch_window=batch_window, step_interval=step_interval,
                           stripe_webhook_secret=resolved.stripe_webhook_secret)
    click.echo(f"gateway on http://{host}:{port} (live page /live, metrics /metrics)", err=True)
    uvicorn.run(create_app(config), host=host, port=port, access_log=False, log_level="warning",
                ws_ping_interval=20, ws_ping_timeout=20, timeout_graceful_shutdown=1)
