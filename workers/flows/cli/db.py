"""`flows db`: migrations and database administration."""

import os

import click

from flows.cli.common import database_url_option as url_option
from flows.cli.common import emit, json_option, settings
from flows.db import admin, migrations
from flows.errors import ConfigError


@click.group()
def db() -> None:
    """Database schema: migrate, roll back, status."""


@db.command()
@url_option
def migrate(**kwargs) -> None:
    """Apply every pending migration."""
    url = settings(kwargs.get("database_url")).database_url
    applied = migrations.migrate(url)
    for migration_id in applied:
        click.echo(f"applied {migration_id}")
    if not applied:
        click.echo("database is up to date")
    admin.reload_api_schema(url)


@db.command()
@url_option
@click.option("--steps", default=1, show_default=True, help="How many migrations to roll back.")
@click.option("--all", "everything", is_flag=True, help="Roll back every migration.")
def rollback(steps: int, everything: bool, **kwargs) -> None:
    """Roll back the most recent migration(s)."""
    if steps < 1 and not everything:
        raise click.BadParameter("must be at least 1", param_hint="--steps")
    url = settings(kwargs.get("database_url")).database_url
    rolled_back = migrations.rollback(url, 0 if everything else steps)
    for migration_id in rolled_back:
        click.echo(f"rolled back {migration_id}")
    if not rolled_back:
        click.echo("nothing to roll back")


@db.command()
@url_option
@json_option
def status(as_json: bool, **kwargs) -> None:
    """List migrations and whether each is applied."""
    states = migrations.status(settings(kwargs.get("database_url")).database_url)

    def human(rows):
        for row in rows:
            mark = f"applied {row['applied_at']:%Y-%m-%d %H:%M}Z" if row["applied_at"] else "pending"
            click.echo(f"{row['id']:40} {mark}")

    emit([{"id": s.id, "applied_at": s.applied_at} for s in states], as_json, human)


@db.command("set-password")
@url_option
@click.argument("role")
@click.option(
    "--from-env",
    "env_var",
    required=True,
    help="Name of the environment variable holding the password (never a command-line argument).",
)
def set_password(role: str, env_var: str, **kwargs) -> None:
    """Set the login password of ROLE (flows_authenticator, grafanareader)."""
    password = os.environ.get(env_var)
    if not password:
        raise ConfigError(f"environment variable {env_var} is empty or not set")
    admin.set_role_password(settings(kwargs.get("database_url")).database_url, role, password)
    click.echo(f"password of {role} set")


@db.command("sql-login")
@url_option
@click.argument("role")
@click.option("--esco", required=True, help="ESCO code whose rows the login may read.")
def sql_login(role: str, esco: str, **kwargs) -> None:
    """Limit a SQL login (e.g. grafanareader) to one ESCO's rows.

    SQL logins cannot present a JWT; their claims come from flows.sql_login_claims.
    """
    admin.set_sql_login_claims(settings(kwargs.get("database_url")).database_url, role, {"esco": esco})
    click.echo(f"{role} now reads ESCO {esco}")
