"""`flows test-processor`: serve the local stand-in for the payment processor's API (NOT Stripe)."""

from pathlib import Path

import click

from flows.cli.common import settings


@click.command("test-processor")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8091, show_default=True, envvar="FLOWS_PROCESSOR_PORT", help="Port to listen on.")
@click.option("--webhook-url", default=None,
              help="Where events are delivered (the gateway's POST /webhooks/stripe); none: not delivered.")
@click.option("--settle-after", default=2.0, show_default=True,
              help="Seconds a Direct Debit stays processing before it succeeds.")
@click.option("--state", "state_file", type=click.Path(path_type=Path), default=None,
              help="Keep payments and refunds in this file across restarts.")
def test_processor(host: str, port: int, webhook_url: str | None, settle_after: float, state_file: Path | None) -> None:
    """A local stand-in for the part of Stripe's API Flows uses, for tests and demos: it moves no money.

    Point the payments job at it with FLOWS_STRIPE_API_BASE=http://HOST:PORT (any key sk_...); its webhooks are
    signed with FLOWS_STRIPE_WEBHOOK_SECRET (else the embedded stack's). docs/payments.md.
    """
    import uvicorn

    from flows.payments.test_processor import TestProcessor

    secret = settings(None).stripe_webhook_secret if webhook_url else None
    if webhook_url and not secret:
        raise click.UsageError("webhooks need a signing secret: set FLOWS_STRIPE_WEBHOOK_SECRET")
    processor = TestProcessor(webhook_url=webhook_url, webhook_secret=secret, settle_after=settle_after,
                              state_file=state_file)
    click.echo(f"test processor (NOT Stripe) on http://{host}:{port}; webhooks to {webhook_url or 'nowhere'}", err=True)
    uvicorn.run(processor.app, host=host, port=port, access_log=False, log_level="warning")
