"""The `flows` command: the embedded stack, database, tokens and workers."""

import click

from flows import __version__
from flows.cli import db, stack, token
from flows.cli.api_keys import api_key
from flows.cli.bank import bank
from flows.cli.common import FlowsGroup
from flows.cli.emulator import emulator
from flows.cli.gateway import gateway
from flows.cli.gdpr import gdpr_group
from flows.cli.mail import mail
from flows.cli.reconcile import reconcile
from flows.cli.statement import statement
from flows.cli.test_processor import test_processor
from flows.cli.vend import vend
from flows.cli.worker import worker
from flows.cli.workers import workers
from flows.log import configure as configure_logging


@click.group(cls=FlowsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flows")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default INFO).")
def cli(log_level: str | None) -> None:
    """Flows: meter data platform for prepayment electricity meters."""
    configure_logging(log_level)


cli.add_command(stack.up)
cli.add_command(stack.down)
cli.add_command(stack.status)
cli.add_command(db.db)
cli.add_command(token.token)
cli.add_command(emulator)
cli.add_command(vend)
cli.add_command(worker)
cli.add_command(api_key)
cli.add_command(statement)
cli.add_command(reconcile)
cli.add_command(gateway)
cli.add_command(test_processor)
cli.add_command(workers)
cli.add_command(mail)
cli.add_command(gdpr_group)
cli.add_command(bank)
