"""`flows token`: mint a JWT for the API."""

import uuid

import click

from flows import auth
from flows.cli.common import settings
from flows.db.connect import connect
from flows.errors import ConfigError


@click.command()
@click.option("--role", required=True, type=click.Choice(sorted(auth.ROLES)), help="API role.")
@click.option("--esco", default=None,
              help="ESCO code the token is limited to (operator, analyst; a customer's is looked up if not given).")
@click.option("--customer", default=None, type=click.UUID,
              help="Customer id (role customer): they see their own accounts and statements.")
@click.option("--expires", default="1d", show_default=True,
              help="Lifetime (30m, 12h, 7d) or a time; every token expires.")
@click.option(
    "--claim",
    "claims",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra claim (repeatable); a value with commas becomes a list, e.g. properties=id1,id2.",
)
def token(role: str, esco: str | None, customer: uuid.UUID | None, expires: str, claims: tuple[str, ...]) -> None:
    """Print a JWT for ROLE, signed with the configured secret."""
    extra = {}
    for item in claims:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--claim")
        extra[key] = value.split(",") if "," in value else value
    resolved = settings()
    if customer:
        extra["customer"] = str(customer)
        esco = esco or _customer_esco(resolved.database_url, str(customer))
    click.echo(auth.mint_token(resolved.jwt_secret, role, esco, auth.parse_expiry(expires), extra,
                               audience=resolved.jwt_audience))


def _customer_esco(database_url: str, customer: str) -> str:
    """The ESCO code of a customer, from the database."""
    with connect(database_url, autocommit=True) as conn:
        code = conn.execute("SELECT billing.customer_esco_code(%s)", (customer,)).fetchone()[0]
    if code is None:
        raise ConfigError(f"no customer {customer}", hint="customer ids are in /customers")
    return code
