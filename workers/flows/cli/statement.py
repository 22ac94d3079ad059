"""`flows statement`: statement PDFs (render the issued ones, fetch one by number)."""

import sys
from pathlib import Path

import click
from rich.progress import Progress

from flows.billing import documents
from flows.cli.common import database_url_option, emit, json_option, settings
from flows.db.connect import connect


@click.group()
def statement() -> None:
    """Statement documents (PDF) of issued statements."""


@statement.command()
@click.argument("number", type=int)
@click.option("--esco", default=None, help="ESCO code (statement numbers are per ESCO).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the PDF ('-' for standard output).")
@database_url_option
def pdf(number: int, esco: str | None, output: Path, database_url: str | None) -> None:
    """Write the PDF of statement NUMBER."""
    with connect(settings(database_url).database_url, autocommit=True) as conn:
        content = documents.statement_pdf(conn, number, esco)
    if str(output) == "-":
        sys.stdout.buffer.write(content)
    else:
        output.write_bytes(content)
        click.echo(f"wrote {output} ({len(content):,} bytes)", err=True)


@statement.command()
@click.option("--limit", default=1000, show_default=True, help="At most this many statements.")
@database_url_option
@json_option
def render(limit: int, database_url: str | None, as_json: bool) -> None:
    """Render and store the PDF of every issued statement that has none yet."""
    with connect(settings(database_url).database_url, autocommit=True) as conn:
        pending = [str(r[0]) for r in conn.execute("SELECT billing.invoices_to_render(%s)", (limit,))]
        with Progress(transient=True, disable=as_json) as progress:
            task = progress.add_task("rendering statements", total=len(pending))
            for invoice_id in pending:
                documents.render_invoice(conn, invoice_id)
                progress.advance(task)
    emit({"rendered": len(pending), "invoices": pending}, as_json,
         lambda data: click.echo(f"rendered {data['rendered']} statement(s)"))
