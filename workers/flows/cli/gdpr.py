"""`flows gdpr`: answer a data-subject request: export, erase, consent, retention.

The database decides who may ask (the connection's role and claims; a superuser, as on the embedded stack,
may do all) and what each does; the personal-data registry says where the data lives (docs/operations.md,
"GDPR runbook").
"""

import json
import sys
from pathlib import Path

import click
import psycopg
from rich.progress import Progress

from flows.billing import documents
from flows.cli.common import database_url_option, emit, json_option, settings
from flows.db import gdpr
from flows.db.connect import connect
from flows.errors import FlowsError

customer_argument = click.argument("customer_id", type=click.UUID)


@click.group("gdpr")
def gdpr_group() -> None:
    """Data-subject requests: export everything held about a customer, erase them, consent, retention."""


@gdpr_group.command()
@customer_argument
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON document to this file (else: to standard output with --json, or a summary).")
@database_url_option
@json_option
def export(customer_id, output: Path | None, database_url: str | None, as_json: bool) -> None:
    """Everything held about CUSTOMER_ID, as one JSON document."""
    document = gdpr.export(settings(database_url).database_url, str(customer_id))
    summary = {"customer_id": document["customer_id"], "generated_at": document["generated_at"],
               "tables": {name: len(rows) for name, rows in sorted(document["tables"].items()) if rows},
               "audit_entries": len(document["audit_log"]), "consents": document["consents"]}
    if output is not None:
        text = json.dumps(document, indent=2, ensure_ascii=False)
        output.write_text(text + "\n")
        summary.update(file=str(output), bytes=len(text.encode()))
    elif as_json:
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return

    def human(data):
        click.echo(f"customer {data['customer_id']}: {sum(data['tables'].values()):,} rows in "
                   f"{len(data['tables'])} tables, {data['audit_entries']} audit entries")
        for name, rows in data["tables"].items():
            click.echo(f"  {name:36} {rows:>8,}")
        click.echo("  consents: " + ", ".join(f"{k} {'given' if v else 'not given'}"
                                              for k, v in data["consents"].items()))
        click.echo(f"wrote {data['file']} ({data['bytes']:,} bytes)" if "file" in data
                   else "write the document with -o FILE (or print it with --json)")

    emit(summary, as_json, human)


@gdpr_group.command()
@customer_argument
@click.option("--reference", default=None, help="The request's reference (a ticket number), kept with the erasure.")
@click.option("--yes", is_flag=True, help="Erase. Without it: show what the erasure would change, and change nothing.")
@database_url_option
@json_option
def erase(customer_id, reference: str | None, yes: bool, database_url: str | None, as_json: bool) -> None:
    """Erase CUSTOMER_ID: pseudonymise their identity and contact data everywhere, keep the financial records.

    Refused while money is owed, a statement is open or they are still supplied, saying why. With --yes the
    statements' PDFs are rendered again, with the pseudonym."""
    url = settings(database_url).database_url
    try:
        outcome = gdpr.erase(url, str(customer_id), reference, commit=yes)
    except gdpr.ErasureRefused as refused:
        if not as_json:
            raise
        click.echo(json.dumps({"erased": False, "message": refused.args[0], "refusals": refused.reasons}, indent=2))
        sys.exit(refused.exit_code)
    rendered = _render_again(url, as_json) if yes and not outcome.get("already_erased") else []
    result = {"erased": yes, **outcome, "rendered_again": rendered}

    def human(data):
        if data.get("already_erased"):
            click.echo(f"customer {customer_id} was erased at {data['erased_at']} (as {data['pseudonym']}): "
                       "nothing left to do")
            return
        changed = ", ".join(f"{name} {n} {what}" for name, done in data["changed"].items()
                            for what, n in done.items() if n)
        click.echo(f"{'erased' if yes else 'would erase'} customer {customer_id} as {data['pseudonym']}: "
                   f"{changed or 'no rows'}; {data['audit_entries']} audit entries pseudonymised")
        for kept in data["kept"] or []:
            until = f"until {kept['retain_until']}" if kept["retain_until"] else "(no end date)"
            click.echo(f"  kept: {kept['relation']:36} {kept['rows']:>8,} rows {until}")
        if yes:
            click.echo(f"rendered {len(data['rendered_again'])} statement(s) again with the pseudonym")
        else:
            click.echo("nothing changed: run again with --yes to erase")

    emit(result, as_json, human)


def _render_again(url: str, quiet: bool) -> list[str]:
    """Renders the statements whose PDFs the erasure deleted (every issued statement without one)."""
    with connect(url, autocommit=True) as conn:
        try:
            with Progress(transient=True, disable=quiet) as progress:
                progress.add_task("rendering statements again", total=None)
                return documents.render_pending(conn)
        except psycopg.Error as error:
            raise FlowsError(f"erased, but rendering the statements again failed: {error.diag.message_primary}",
                             hint="run `flows statement render`") from None


@gdpr_group.command()
@customer_argument
@click.option("--give/--withdraw", "given", required=True, help="Give or withdraw the consent.")
@click.option("--purpose", default="half_hourly_data", show_default=True, help="What the consent is for.")
@database_url_option
@json_option
def consent(customer_id, given: bool, purpose: str, database_url: str | None, as_json: bool) -> None:
    """Record CUSTOMER_ID's consent (or its withdrawal) for them, e.g. asked on the phone."""
    row = gdpr.record_consent(settings(database_url).database_url, str(customer_id), given, purpose)
    emit(row, as_json, lambda r: click.echo(
        f"{r['purpose']} consent of customer {customer_id}: {'given' if r['given'] else 'withdrawn'} "
        f"(recorded {r['recorded_at']:%Y-%m-%d %H:%M} by {r['recorded_by']})"))


@gdpr_group.command()
@customer_argument
@database_url_option
@json_option
def retention(customer_id, database_url: str | None, as_json: bool) -> None:
    """What is held about CUSTOMER_ID, table by table, and until when."""
    rows = gdpr.retention(settings(database_url).database_url, str(customer_id))
    if not rows:
        raise FlowsError(f"no customer {customer_id}", hint="customer ids are listed at /customers")

    def human(data):
        for row in data:
            until = str(row["retain_until"]) if row["retain_until"] else "-"
            click.echo(f"{row['relation']:36} {row['rows']:>8,}  {until:10}  {row['retention']}")

    emit(rows, as_json, human)
