"""`flows workers list | drain`: the worker processes, for administrators.

Reads api.workers and calls api.drain_worker (sql/rpc/workers.sql), as an
administrator does over HTTP (GET /workers, POST /rpc/drain_worker), on the
database the settings name (the embedded stack's by default).
"""

import time
from datetime import UTC, datetime

import click
import psycopg
from rich.console import Console
from rich.table import Table

from flows.cli.common import FlowsGroup, database_url_option, emit, json_option, settings
from flows.db.connect import connect
from flows.errors import ConfigError, FlowsError

LISTED = ("id", "name", "host", "pid", "version", "state", "concurrency", "in_flight", "esco_codes",
          "commands_per_minute", "commands_finished", "started_at", "heartbeat_at", "drain_requested_at",
          "drain_requested_by", "stopped_at")


@click.group(cls=FlowsGroup)
def workers() -> None:
    """The worker processes: list them, drain one."""


@workers.command("list")
@database_url_option
@click.option("--all", "everything", is_flag=True, help="Also workers stopped more than an hour ago.")
@json_option
def list_workers(database_url: str | None, everything: bool, as_json: bool) -> None:
    """Workers: host, pid, version, state, concurrency, commands in flight, ESCOs served, last heartbeat,
    commands per minute."""
    rows = _query(settings(database_url).database_url, "SELECT to_jsonb(w) FROM api.workers AS w"
                                " WHERE %s OR w.stopped_at IS NULL OR w.stopped_at > now() - interval '1 hour'"
                                " ORDER BY w.state = 'stopped', w.host, w.pid", (everything,))
    emit(rows, as_json, _table)


@workers.command("drain")
@click.argument("worker")
@database_url_option
@click.option("--wait", is_flag=True, help="Wait until it has stopped.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait with --wait.")
@json_option
def drain(worker: str, database_url: str | None, wait: bool, timeout: float, as_json: bool) -> None:
    """Drain WORKER (its id, the start of its id, or its name): it claims nothing more, finishes or hands
    back what it holds (another worker resumes it), and exits."""
    url = settings(database_url).database_url
    worker_id = _resolve(url, worker)
    rows = _query(url, "SELECT to_jsonb(w) FROM api.drain_worker(%s) AS w", (worker_id,))
    if wait:
        deadline = time.monotonic() + timeout
        with Console(stderr=True).status(f"draining {rows[0]['name']}"):
            while rows[0]["state"] not in ("stopped", "lost"):
                if time.monotonic() > deadline:
                    raise FlowsError(f"worker {rows[0]['name']} is still {rows[0]['state']} after {timeout:g} s")
                time.sleep(0.5)
                rows = _query(url, "SELECT to_jsonb(w) FROM api.workers AS w WHERE w.id = %s", (worker_id,))
    emit(rows, as_json, lambda found: [click.echo(_said(w)) for w in found])


def _resolve(url: str, given: str) -> str:
    found = _query(url, "SELECT to_jsonb(w) FROM api.workers AS w WHERE w.id::text LIKE %s || '%%' OR w.name = %s",
                   (given.lower(), given))
    running = [w for w in found if w["state"] != "stopped"] or found
    if not running:
        raise ConfigError(f"no worker {given}", hint="`flows workers list` shows their ids and names")
    if len(running) > 1:
        raise ConfigError(f"{given} names {len(running)} workers", hint="give more of the id")
    return running[0]["id"]


def _query(url: str, sql: str, params: tuple) -> list[dict]:
    try:
        with connect(url) as conn:
            rows = conn.execute(sql, params).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        raise ConfigError("listing and draining workers is for administrators",
                          hint="use the embedded stack's database, or FLOWS_DATABASE_URL as flows_admin") from None
    except psycopg.Error as error:
        raise FlowsError(error.diag.message_primary or str(error), hint=error.diag.message_hint) from None
    return [{key: row[0].get(key) for key in LISTED} for row in rows]


def _ago(moment: str | None) -> str:
    if not moment:
        return ""
    seconds = (datetime.now(UTC) - datetime.fromisoformat(moment)).total_seconds()
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def _table(rows: list[dict]) -> None:
    if not rows:
        click.echo("no workers (start one with `flows worker`)")
        return
    table = Table("id", "name", "host", "pid", "version", "state", "concurrency", "in flight", "ESCOs",
                  "last heartbeat", "commands/min")
    for w in rows:
        table.add_row(w["id"][:8], w["name"], w["host"], str(w["pid"]), w["version"], w["state"],
                      str(w["concurrency"]), str(w["in_flight"]), ",".join(w["esco_codes"] or ["all"]),
                      _ago(w["heartbeat_at"]), f"{w['commands_per_minute']:g}")
    Console().print(table)


def _said(w: dict) -> str:
    return (f"{w['name']} ({w['id'][:8]}, {w['host']} pid {w['pid']}) is {w['state']}: "
            f"{w['in_flight']} commands in flight")
