"""`flows reconcile`: one UK day of an ESCO's three-way reconciliation (docs/reconciliation.md)."""

from datetime import date

import click
from rich.console import Console
from rich.table import Table

from flows.cli.common import database_url_option, emit, json_option, settings
from flows.db.connect import connect

MATCHED = (
    ("payments", "payments_matched", "succeeded payments with their completed top-up"),
    ("topups", "topups_matched", "completed top-ups with credit on the meter"),
    ("meters_ledgered", "meter_days_explained", "meters whose balance the shadow ledger explains"),
)


@click.command()
@click.option("--esco", "esco_code", required=True, help="ESCO code, e.g. DEMO.")
@click.option("--day", type=click.DateTime(["%Y-%m-%d"]), required=True, help="The UK day (YYYY-MM-DD).")
@database_url_option
@json_option
def reconcile(esco_code: str, day, database_url: str | None, as_json: bool) -> None:
    """Print a day's reconciliation: what matched, and each exception with its kind, meter, account, amount and
    reason (api.reconciliation)."""
    with connect(settings(database_url).database_url, autocommit=True) as conn:
        picture = conn.execute("SELECT api.reconciliation(%s, %s)", (esco_code, day.date())).fetchone()[0]
    emit(picture, as_json, show)


def show(picture: dict) -> None:
    console = Console()
    summary = picture["summary"]
    console.print(f"[bold]{picture['esco']}[/bold] {date.fromisoformat(picture['day']):%A %d %B %Y} (UK day)")
    matched = Table("matched", "of", "", box=None, show_header=False)
    for total, ok, label in MATCHED:
        matched.add_row(str(summary[ok]), str(summary[total]), label)
    matched.add_row(str(summary["credit_events"]), "", "credit events (48) logged by meters")
    if summary["meter_days_incomplete"]:
        matched.add_row(str(summary["meter_days_incomplete"]), "", "meters not judged: half hours missing")
    console.print(matched)
    exceptions = picture["exceptions"]
    if not exceptions:
        console.print("no exceptions")
        return
    table = Table(title=f"{len(exceptions)} exception(s)")
    for name in ("kind", "meter", "account", "amount", "status"):
        table.add_column(name, no_wrap=True, justify="right" if name == "amount" else "left")
    table.add_column("reason")
    for x in exceptions:
        table.add_row(x["kind"], x["meter"] or "", x["account"] or "", f"{x['amount']:.2f}", x["status"], x["reason"])
    console.print(table)
