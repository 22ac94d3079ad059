"""`flows up`, `flows down`, `flows status`: the embedded stack."""

import click

from flows.cli.common import emit, json_option
from flows.stack import topology
from flows.stack.stack import DEMO_ESCO, Stack, open_stack


@click.command()
@click.option("--demo/--no-demo", default=True, show_default=True,
              help="The demo community: an ESCO, its topology and 20 emulated meters.")
@click.option("--monitoring/--no-monitoring", default=None,
              help="Also run the PostgreSQL exporter and Prometheus (default: as last time).")
@click.option("--topology", "topology_name", type=click.Choice(topology.TOPOLOGIES), default=None,
              help="single, or scaled: PgBouncer, a streaming replica, two API instances behind nginx and a "
                   "read-only one (default: as last time).")
def up(demo: bool, monitoring: bool | None, topology_name: str | None) -> None:
    """Start the embedded stack (creating it the first time): PostgreSQL, PostgREST, workers."""
    stack = open_stack()
    stack.up(with_demo=demo, say=lambda line: click.echo(f"  {line}"), with_monitoring=monitoring,
             topology_name=topology_name)
    config = stack.config
    click.echo("")
    click.echo(f"Flows is up.   data: {config.home}")
    api = f"http://127.0.0.1:{config.proxy_port}" if config.topology == "scaled" else config.api_url
    if config.topology == "scaled":
        click.echo(f"  API      {api}   (nginx: postgrest and postgrest-2, through PgBouncer)")
        click.echo(f"  Reads    http://127.0.0.1:{config.readonly_proxy_port}   (read-only, on the replica)")
    else:
        click.echo(f"  API      {config.api_url}   (OpenAPI at /)")
    click.echo(f"  Database {stack.admin_url}")
    click.echo(f"  Metrics  http://127.0.0.1:{config.metrics_port}/metrics   (the worker)")
    click.echo(f"  Gateway  {config.gateway_url}   (WebSocket /realtime, SSE /events/stream, metrics /metrics,"
               f" POST /webhooks/stripe)")
    click.echo(f"  Payments {config.processor_url}   (the test processor, a stand-in for Stripe: moves no money)")
    click.echo(f"  Mail     smtp://127.0.0.1:{config.mail_port}   (caught: flows mail list; texts: flows mail texts)")
    if config.monitoring:
        click.echo(f"  Prometheus http://127.0.0.1:{config.prometheus_port}   "
                   f"(exporter http://127.0.0.1:{config.exporter_port}/metrics)")
    if demo:
        click.echo(f"\nDemo operator token for ESCO {DEMO_ESCO} (valid 7 days):")
        click.echo(f"  export TOKEN={stack.demo_token()}")
        click.echo(f'  curl -H "Authorization: Bearer $TOKEN" "{api}/meter_registry?select=id,serial,name"')
        click.echo(f'  curl -H "Authorization: Bearer $TOKEN" "{api}/meter_shadows?select=balance,health,'
                   f'meter_registry(serial)"   # live within a minute')
        click.echo(f'  curl -N -H "Authorization: Bearer $TOKEN" '
                   f'"{config.gateway_url}/events/stream?relation=meter_shadows"   # changes as they commit')
        click.echo(f"  Live page: {config.gateway_url}/live#token=$TOKEN")
    click.echo("\nStop with `flows down`; `flows status` shows what runs.")


@click.command()
def down() -> None:
    """Stop the embedded stack (data is kept)."""
    stack = Stack.current()
    if stack is None:
        click.echo("no embedded stack here")
        return
    stack.down(say=click.echo)
    click.echo("Flows is down.")


@click.command()
@json_option
def status(as_json: bool) -> None:
    """Show what runs in the embedded stack and where its files are."""
    stack = Stack.current()
    if stack is None:
        emit({"home": None}, as_json, lambda _: click.echo("no embedded stack (run `flows up`)"))
        return

    def human(report):
        click.echo(f"home        {report['home']}")
        for name, entry in report.items():
            if name == "home":
                continue
            state = "running" if entry["running"] else "stopped"
            where = entry.get("url", entry.get("meters", ""))
            pid = f"pid {entry['pid']}" if entry["pid"] else ""
            click.echo(f"{name:11} {state:8} {pid:10} {where}")
            click.echo(f"{'':11} log {entry['log']}")

    emit(stack.status(), as_json, human)
