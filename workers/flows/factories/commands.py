"""Meter operations, requested through the api functions operators call
(they check the meters and create the commands workers run). As a superuser
or admin with no claims, requested_by is the database user."""

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal

import psycopg


def send_token(conn: psycopg.Connection, meter_id: str, amount: Decimal | int | str | None = None, *,
               token: str | None = None, source: str = "payment", idempotency_key: str | None = None) -> str:
    """api.send_token: a top-up of ``amount`` GBP (a token is vended) or the given 20-digit token."""
    return _ids(conn.execute("SELECT id FROM api.send_token(%s, amount => %s, token => %s, source => %s,"
                             " idempotency_key => %s)", (meter_id, amount, token, source, idempotency_key)))[0]


def set_future_tariff(conn: psycopg.Connection, tariff: Mapping, meter_ids: Sequence[str] | None = None,
                      whole_esco: bool = False) -> list[str]:
    """api.set_future_tariff: one command per meter (a rollout when more than one)."""
    return _ids(conn.execute("SELECT id FROM api.set_future_tariff(%s::jsonb, %s::uuid[], %s)",
                             (json.dumps(dict(tariff), default=str), None if meter_ids is None else list(meter_ids),
                              whole_esco)))


def request_sync(conn: psycopg.Connection, meter_ids: Sequence[str] | None = None,
                 metrics: Sequence[str] | None = None) -> list[str]:
    """api.request_sync: read the metrics (default all enabled) of the meters (default every active one)."""
    return _ids(conn.execute("SELECT id FROM api.request_sync(%s::uuid[], %s::text[])",
                             (None if meter_ids is None else list(meter_ids),
                              None if metrics is None else list(metrics))))


def fail_command(conn: psycopg.Connection, command: str, error: str, *, worker: str = "factory") -> str:
    """A pending command tried and failed for good as a worker records it (held by ``worker``, then
    flows.fail_meter_command_v1, not retryable); ``error`` as the worker says it ("ErrorClass: message").
    Returns the command's status."""
    return conn.execute("SELECT flows.fail_meter_command_v1(%s, %s, %s, %s, false)",
                        (command, worker, _hold(conn, command, worker), error)).fetchone()[0]


def finish_command(conn: psycopg.Connection, command: str, result: dict, progress: dict | None = None, *,
                   worker: str = "factory") -> None:
    """A pending command done as a worker records it: held by ``worker``, its ``progress`` noted (e.g. a send_token's
    token), then flows.finish_meter_command_v1 with ``result`` (e.g. a credit's transactions_after)."""
    attempt = _hold(conn, command, worker)
    if progress:
        conn.execute("SELECT flows.note_meter_command_progress_v1(%s, %s, %s, %s::jsonb)",
                     (command, worker, attempt, json.dumps(progress, default=str)))
    conn.execute("SELECT flows.finish_meter_command_v1(%s, %s, %s, %s::jsonb)",
                 (command, worker, attempt, json.dumps({"result": result}, default=str)))


def _hold(conn: psycopg.Connection, command: str, worker: str) -> int:
    """Claims one pending command for ``worker`` as flows.claim_meter_commands_v1 would (that one, whatever else
    is due); its attempt."""
    return conn.execute("UPDATE flows.meter_commands SET status = 'running', attempts = attempts + 1,"
                        " lease_owner = %s, lease_expires_at = now() + interval '1 minute',"
                        " started_at = coalesce(started_at, now()) WHERE id = %s AND status = 'pending'"
                        " RETURNING attempts", (worker, command)).fetchone()[0]


def _ids(cursor: psycopg.Cursor) -> list[str]:
    return [str(row[0]) for row in cursor.fetchall()]
