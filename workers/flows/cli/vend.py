"""`flows vend SERIAL AMOUNT`: a top-up token from the configured vending adapter."""

import asyncio
from decimal import Decimal, InvalidOperation

import click

from flows.cli.common import emit, json_option, settings
from flows.vending import get_vendor


@click.command()
@click.argument("serial")
@click.argument("amount")
@click.option("--vendor", default=None, help="Adapter name (default FLOWS_VENDOR, else the test vendor).")
@json_option
def vend(serial: str, amount: str, vendor: str | None, as_json: bool) -> None:
    """Print a token crediting AMOUNT GBP to meter SERIAL (the test vendor is not STS)."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise click.BadParameter(f"{amount!r} is not an amount in GBP", param_hint="AMOUNT") from None
    resolved = settings()
    token = asyncio.run(get_vendor(vendor or resolved.vendor, resolved.home).vend(serial, value))
    document = {
        "serial": token.serial,
        "amount": str(token.amount),
        "token": token.token,
        "sequence": token.sequence,
        "vendor": token.vendor,
    }
    emit(document, as_json, lambda doc: click.echo(doc["token"]))
