"""Test fixtures: a real PostgreSQL server, a migrated template database, a fresh
database per test cloned from it, and a real PostgREST process.

The server is started as the ``postgres`` OS user (when run as root) in a
temporary folder, or taken from ``FLOWS_TEST_DATABASE_URL`` (a disposable server:
the tests create and drop databases and set the authenticator's password).
"""

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from hypothesis import HealthCheck, settings

from flows.db import migrations
from tests.support.api import Api, start_postgrest
from tests.support.server import NOT_DURABLE, PgServer, throwaway_cluster

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

TEMPLATE_DB = "flows_template"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if url := os.environ.get("FLOWS_TEST_DATABASE_URL"):
        parts = urlsplit(url)
        yield PgServer(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password,
        )
        return
    with throwaway_cluster("test", NOT_DURABLE) as cluster:
        yield PgServer.of(cluster)


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> Iterator[str]:
    """Name of a template database with every migration applied (by yoyo)."""
    janitor = pg_server.janitor(TEMPLATE_DB, as_template=True)
    janitor.drop()
    with janitor:
        migrations.migrate(pg_server.url(TEMPLATE_DB))
        yield TEMPLATE_DB


@pytest.fixture
def make_empty_db(pg_server: PgServer) -> Iterator[Callable[[], str]]:
    """Factory of new, empty databases (for migration tests); returns URLs."""
    janitors = []

    def make() -> str:
        janitor = pg_server.janitor(f"flows_empty_{uuid.uuid4().hex[:10]}")
        janitor.init()
        janitors.append(janitor)
        return pg_server.url(janitor.dbname)

    yield make
    for janitor in janitors:
        janitor.drop()


@pytest.fixture
def empty_db_url(make_empty_db) -> str:
    return make_empty_db()


@pytest.fixture
def db_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """URL (superuser) of a fresh, migrated database for this test only."""
    name = f"flows_test_{uuid.uuid4().hex[:10]}"
    with pg_server.janitor(name, template_dbname=template_db):
        yield pg_server.url(name)


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    """Autocommit superuser connection to this test's fresh database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def api(pg_server: PgServer, template_db: str, tmp_path_factory) -> Iterator[Api]:
    """A real PostgREST process serving a database cloned from the template.

    Tests share it, so each test creates its own ESCO (see ``Api.new_esco``)
    and never counts rows it did not make.
    """
    name = f"flows_api_{uuid.uuid4().hex[:8]}"
    with pg_server.janitor(name, template_dbname=template_db):
        with start_postgrest(pg_server, name, tmp_path_factory.mktemp("postgrest")) as running:
            yield running
