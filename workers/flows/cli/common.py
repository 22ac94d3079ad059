"""What every Flows command shares: one-line errors with exit codes, --json output, settings."""

import json
import sys

import click

from flows.errors import FlowsError
from flows.settings import Settings


class FlowsGroup(click.Group):
    """A click group whose commands report FlowsError as one line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FlowsError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)


def emit(data, as_json: bool, human) -> None:
    """Print ``data`` as JSON when asked, else through ``human(data)``."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        human(data)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")

database_url_option = click.option(
    "--database-url",
    default=None,
    help="PostgreSQL URL (default: $FLOWS_DATABASE_URL, else the embedded stack).",
)


def settings(database_url: str | None = None) -> Settings:
    """The settings of this invocation: options first, then the environment, then the embedded stack."""
    return Settings.resolve(database_url=database_url)
