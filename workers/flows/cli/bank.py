"""`flows bank import | accounts | queue`: bank statements in, and what waits to be matched."""

from pathlib import Path

import click

from flows.bank import importer
from flows.bank.statement import FORMATS
from flows.cli.common import database_url_option, emit, json_option, settings
from flows.db.connect import connect


@click.group()
def bank() -> None:
    """Bank statements: import the bank's files, see the accounts and the queue of unmatched entries."""


@bank.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--bank-account", required=True, help="The bank account's name (flows bank accounts).")
@click.option("--esco", default=None, help="ESCO code, when several ESCOs have an account of that name.")
@click.option("--format", "fmt", type=click.Choice(["auto", *FORMATS]), default="auto", show_default=True,
              help="The file's format (auto: from its content).")
@database_url_option
@json_option
def import_(file: Path, bank_account: str, esco: str | None, fmt: str, database_url: str | None,
            as_json: bool) -> None:
    """Import FILE (CAMT.053, OFX, MT940 or CSV) into a bank account and match what it can.
    All or nothing: a statement that does not add up is refused, naming the entry."""
    with connect(settings(database_url).database_url, autocommit=True) as conn:
        result = importer.import_file(conn, bank_account, file.read_bytes(), fmt=fmt, file_name=file.name, esco=esco)

    def human(r):
        if r["outcome"] == "already_imported":
            click.echo(f"{file.name} was imported into {r['bank_account']} before: nothing added")
            return
        for s in r["statements"]:
            click.echo(f"statement {s['period_start']} to {s['period_end']}: {s['entries']} entries, "
                       f"{s['added']} new, {s['duplicates']} seen before (balance check: {s['balance_check']})")
        click.echo(f"matched {r['bank_transfers']} bank transfer(s) and {r['payouts']} processor payout(s); "
                   f"{r['queued']} entr{'y waits' if r['queued'] == 1 else 'ies wait'} in the queue")

    emit(result, as_json, human)


@bank.command("accounts")
@database_url_option
@json_option
def accounts(database_url: str | None, as_json: bool) -> None:
    """The bank accounts statements can be imported into."""
    with connect(settings(database_url).database_url, autocommit=True) as conn:
        rows = importer.accounts(conn)

    def human(data):
        for a in data:
            where = a["iban"] or f"{a['sort_code']} {a['account_number']}"
            click.echo(f"{a['name']:20} {where:24} {a['bank_name'] or '':20} csv mapping: "
                       f"{'yes' if a['csv_mapping'] else 'no'}")

    emit(rows, as_json, human)


@bank.command("queue")
@click.option("--bank-account", default=None, help="Only this bank account's entries.")
@database_url_option
@json_option
def queue(bank_account: str | None, database_url: str | None, as_json: bool) -> None:
    """Bank entries no rule matched, and why (work them with the API: match, split, dismiss)."""
    with connect(settings(database_url).database_url, autocommit=True) as conn:
        rows = importer.queue(conn, bank_account)

    def human(data):
        if not data:
            click.echo("the queue is empty")
        for q in data:
            click.echo(f"{q['id']}  {q['booking_date']}  {q['amount']:>10}  {(q['bank_reference'] or '')[:18]:18}  "
                       f"{(q['counterparty'] or '')[:20]:20}  {q['queue_reason']}")

    emit(rows, as_json, human)
