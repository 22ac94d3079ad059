"""`flows api-key create | list | revoke`: long-lived, revocable credentials for integrations."""

import click
import psycopg

from flows import auth
from flows.cli.common import database_url_option, emit, json_option, settings
from flows.db import api_keys
from flows.errors import ConfigError


@click.group("api-key")
def api_key() -> None:
    """API keys: tokens for integrations, scoped to one ESCO, revocable at once."""


@api_key.command()
@database_url_option
@json_option
@click.option("--esco", required=True, help="ESCO code the key is limited to.")
@click.option("--name", required=True, help="What the key is for, e.g. portal-backend (unique per ESCO).")
@click.option("--role", type=click.Choice(api_keys.KEY_ROLES), default="operator", show_default=True,
              help="operator reads and writes the ESCO's data; analyst only reads.")
@click.option("--expires", default="365d", show_default=True, help="Lifetime (90d, 52w) or a time.")
def create(esco: str, name: str, role: str, expires: str, as_json: bool, database_url: str | None) -> None:
    """Issue a key; prints its id and its token (shown once, never stored)."""
    resolved = settings(database_url)
    try:
        issued = api_keys.create(resolved.database_url, resolved.jwt_secret, esco, name, role,
                                 auth.parse_expiry(expires), audience=resolved.jwt_audience)
    except psycopg.errors.UniqueViolation:
        raise ConfigError(f"ESCO {esco} already has a live key named {name}",
                          hint="revoke it first, or choose another name") from None
    except psycopg.errors.InvalidParameterValue as error:
        raise ConfigError(error.diag.message_primary or str(error)) from None

    def human(key):
        click.echo(f"API key {key['id']} ({key['name']}, {key['role']} of {key['esco']}, "
                   f"expires {key['expires_at']:%Y-%m-%d})")
        click.echo("Token (shown once; revoke with `flows api-key revoke ID`):")
        click.echo(key["token"])

    emit(vars(issued), as_json, human)


@api_key.command("list")
@database_url_option
@json_option
@click.option("--esco", default=None, help="Only this ESCO's keys.")
def list_keys(esco: str | None, as_json: bool, database_url: str | None) -> None:
    """List keys with their status (live, revoked, expired)."""

    def human(rows):
        for row in rows:
            click.echo(f"{row['id']}  {row['esco']:10} {row['name']:24} {row['role']:15} {row['status']:8} "
                       f"expires {row['expires_at']:%Y-%m-%d}")

    emit(api_keys.listing(settings(database_url).database_url, esco), as_json, human)


@api_key.command()
@database_url_option
@json_option
@click.argument("key_id")
def revoke(key_id: str, as_json: bool, database_url: str | None) -> None:
    """Revoke a key: every API request with it is refused from now on."""
    try:
        row = api_keys.revoke(settings(database_url).database_url, key_id)
    except psycopg.Error as error:
        if error.sqlstate not in ("PT404", "22P02"):  # none live with that id; not an id at all
            raise
        raise ConfigError(f"no live API key {key_id}", hint="see `flows api-key list`") from None
    emit(row, as_json, lambda r: click.echo(f"revoked API key {r['id']} ({r['name']})"))
