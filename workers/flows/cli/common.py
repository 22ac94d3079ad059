"""What every Flows command shares: one-line errors with exit codes, --json output."""

import json
import sys

import click

from flows.errors import FlowsError


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
