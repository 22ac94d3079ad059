"""`flows token`: mint a JWT for the API."""

import click

from flows import auth
from flows.cli.common import settings


@click.command()
@click.option("--role", required=True, type=click.Choice(sorted(auth.ROLES)), help="API role.")
@click.option("--esco", default=None, help="ESCO code the token is limited to (operator, analyst, customer).")
@click.option("--expires", default="1d", show_default=True,
              help="Lifetime (30m, 12h, 7d) or a time; every token expires.")
@click.option(
    "--claim",
    "claims",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra claim (repeatable); a value with commas becomes a list, e.g. properties=id1,id2.",
)
def token(role: str, esco: str | None, expires: str, claims: tuple[str, ...]) -> None:
    """Print a JWT for ROLE, signed with the configured secret."""
    extra = {}
    for item in claims:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--claim")
        extra[key] = value.split(",") if "," in value else value
    resolved = settings()
    click.echo(auth.mint_token(resolved.jwt_secret, role, esco, auth.parse_expiry(expires), extra,
                               audience=resolved.jwt_audience))
