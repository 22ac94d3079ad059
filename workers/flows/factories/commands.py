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


def _ids(cursor: psycopg.Cursor) -> list[str]:
    return [str(row[0]) for row in cursor.fetchall()]
