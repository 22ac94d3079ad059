"""What the tenancy tests share: two sample ESCOs (A and B) in a database of
their own with its own PostgREST, and how to tell whose a row is.

A row "belongs" to an ESCO if any of its values is an id the factory created
for it (tests/support/factory.py); ids are found anywhere in a row's JSON.
"""

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.api import Api, start_postgrest
from tests.support.factory import SampleEsco, sample_esco
from tests.support.server import PgServer

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class TwoEscos:
    api: Api
    a: SampleEsco
    b: SampleEsco
    dbname: str
    authenticator_url: str  # log in as PostgREST does, then SET ROLE and set the claims


@contextmanager
def two_escos(pg_server: PgServer, template_db: str, workdir: Path, purpose: str,
              postgrest: dict[str, str] | None = None) -> Iterator[TwoEscos]:
    """A fresh database (cloned from the template) with two sample ESCOs, served by PostgREST
    (``postgrest``: extra PGRST_* settings); dropped when the block ends."""
    name = f"flows_{purpose}_{uuid.uuid4().hex[:8]}"
    with pg_server.janitor(name, template_dbname=template_db):
        with psycopg.connect(pg_server.url(name), autocommit=True) as conn:
            a, b = sample_esco(conn), sample_esco(conn)
        with start_postgrest(pg_server, name, workdir, postgrest) as api:
            yield TwoEscos(api, a, b, name, pg_server.url(name, "flows_authenticator", api.authenticator_password))


def canonical(rows) -> list[str]:
    return sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)


def values_in(value) -> set[str]:
    """Every string anywhere in a JSON value (parsed), keys excluded."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(values_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(values_in(v) for v in value))
    return set()


def ids_in(row_json: str) -> set[str]:
    return {v for v in values_in(json.loads(row_json)) if UUID.match(v)}
