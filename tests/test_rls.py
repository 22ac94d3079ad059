"""Row-level security, generated from the catalog: for every relation in the
`api` schema and every role, two ESCOs' data exist and each role sees exactly
its share, over SQL and over HTTP.

Expected rows are derived, not listed: the superuser's view of a relation,
filtered by which ESCO's ids each row carries. A row "belongs" to ESCO B if any
of its values is an id the factory created for B. A new api view over a table
without policies shows B's rows to A's operator and fails here; a new view
the factory puts no data in fails the coverage test.
"""

import json
import secrets
from decimal import Decimal

import psycopg
import pytest

from flows import factories
from flows.db.admin import set_sql_login_claims
from tests.support.factory import SampleEsco
from tests.support.tenancy import canonical, ids_in, two_escos

# Relations whose rows belong to no ESCO (reference data shared by all).
GLOBAL = {"meter_metrics", "meter_event_log_type", "benchmark_tariffs", "ledger_accounts", "notification_rules"}
# Relations of the platform itself, for administrators only (every other role is refused them).
ADMIN_ONLY = {"workers"}
# What a customer may read; everything else must be refused to them.
CUSTOMER_RELATIONS = {
    "escos", "properties", "meter_registry", "meter_registers", "meter_shadows", "meter_shadows_tariffs",
    "register_import", "register_export", "register_interval_hh", "register_interval_daily",
    "register_interval_monthly", "meter_prepay_balance", "meter_csq", "meter_voltage", "meter_3p_voltage",
    "meter_health_history", "meter_clock_drift", "meter_tariff_history", "meter_event_log",
    "meter_event_log_type", "property_interval_hh", "property_interval_daily", "property_interval_monthly",
    "customers", "accounts", "customer_accounts", "contracts", "benchmark_tariffs", "customer_tariffs", "invoices",
    "invoice_lines", "invoice_documents", "monthly_usage", "monthly_costs", "consents", "data_retention",
    "payments", "topups", "wallets",  # their payments, top-ups and the wallet of the home they occupy
    "notification_preferences", "notification_rules",
}
# Who changed what, integrations' keys and who was erased: admins (every ESCO)
# and operators (rows whose esco column is theirs) only.
OPERATOR_RELATIONS = {"audit_log", "api_keys", "erasures"}

# role name -> (database role, which ESCO's claims it carries, how it sees)
ROLES = {
    "admin": ("flows_admin", None),
    "service": ("flows_service", None),
    "operator": ("flows_operator", "A"),
    "analyst": ("flows_analyst", "A"),
    "customer": ("flows_customer", "A"),
    "anon": ("flows_anon", None),
}


class World:
    """Two ESCOs (A, B) in a fresh database with its own PostgREST."""

    def __init__(self, api, a: SampleEsco, b: SampleEsco, authenticator_url: str, grafana_url: str):
        self.api, self.a, self.b = api, a, b
        self.authenticator_url, self.grafana_url = authenticator_url, grafana_url
        with psycopg.connect(api.db_url) as conn:
            self.relations = [r[0] for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'api'::regnamespace AND relkind IN ('r', 'v', 'm')"
                " ORDER BY relname")]
            self.all_rows = {rel: self._rows(conn, rel) for rel in self.relations}

    @staticmethod
    def _rows(conn, relation: str) -> list[str]:
        result = conn.execute(f'SELECT to_jsonb(v)::text FROM api."{relation}" AS v').fetchall()
        return canonical(json.loads(r[0], parse_float=Decimal) for r in result)

    def claims(self, role: str) -> dict:
        db_role, esco = ROLES[role]
        claims = {"role": db_role}
        if esco:
            claims["esco"] = self.a.code
        if role == "customer":
            claims["customer"] = self.a.billing.customer
        return claims

    def expected(self, role: str, relation: str) -> list[str] | None:
        """Rows ``role`` should see in ``relation``; None if it must be refused."""
        if role == "anon" or (role == "customer" and relation not in CUSTOMER_RELATIONS):
            return None
        if relation in OPERATOR_RELATIONS and role not in ("admin", "operator"):
            return None
        if relation in ADMIN_ONLY and role != "admin":
            return None
        rows = self.all_rows[relation]
        if role in ("admin", "service"):
            return rows
        if relation in OPERATOR_RELATIONS:
            return [row for row in rows if json.loads(row)["esco"] == self.a.esco]
        foreign = self.b.ids() if role in ("operator", "analyst", "grafanareader") else (
            (self.a.ids() | self.b.ids()) - self.a.customer_ids())
        return [row for row in rows if not (ids_in(row) & foreign)]


def draft_statement(conn, esco: SampleEsco) -> None:
    """A draft in the ESCO, whose lines a draft holds (api.invoice_lines reads them from the draft): the
    tenant's statement credited and the month billed again. (Not the customer's: customers see no drafts.)"""
    invoice, month = conn.execute(
        "SELECT i.id, i.period_start FROM billing.invoices AS i JOIN billing.customers AS c ON c.id = i.customer_id"
        " WHERE i.esco = %s AND c.fullname = 'Tina Tenant' AND i.status = 'final'", (esco.esco,)).fetchone()
    factories.credit_invoice(conn, str(invoice), "billed again for the RLS test")
    run = factories.create_billing_run(conn, esco.code, month)
    assert conn.execute("SELECT count(*) FROM api.invoice_lines AS l JOIN billing.invoices AS i"
                        " ON i.id = l.invoice_id WHERE i.run_id = %s", (run,)).fetchone()[0] > 0


@pytest.fixture(scope="module")
def world(pg_server, template_db, tmp_path_factory):
    with two_escos(pg_server, template_db, tmp_path_factory.mktemp("rls"), "rls") as two:
        grafana_password = secrets.token_urlsafe(12)
        with psycopg.connect(two.api.db_url, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE grafanareader PASSWORD '{grafana_password}'")
            for esco in (two.a, two.b):
                draft_statement(conn, esco)
        set_sql_login_claims(two.api.db_url, "grafanareader", {"esco": two.a.code})
        yield World(two.api, two.a, two.b, authenticator_url=two.authenticator_url,
                    grafana_url=pg_server.url(two.dbname, "grafanareader", grafana_password))


def test_every_relation_has_rows_of_both_escos(world):
    """Without data of both ESCOs in a relation, its RLS is not tested."""
    thin = []
    for relation in world.relations:
        if relation in GLOBAL:
            assert world.all_rows[relation], f"api.{relation} is empty"
            continue
        owners = [ids_in(row) for row in world.all_rows[relation]]
        if not any(ids & world.a.ids() for ids in owners) or not any(ids & world.b.ids() for ids in owners):
            thin.append(relation)
        if relation in CUSTOMER_RELATIONS and not world.expected("customer", relation):
            thin.append(f"{relation} (nothing for the customer)")
    assert not thin, f"no rows of both ESCOs in api.{thin}: add data in tests/support/factory.py"


def _compare(world, role, relation, seen) -> str | None:
    expected = world.expected(role, relation)
    if expected is None:
        return None if seen is None else f"{relation}: should be refused, saw {len(seen)} rows"
    if seen is None:
        return f"{relation}: refused, should see {len(expected)} rows"
    if seen != expected:
        leaked = sorted(set(seen) - set(expected))
        missing = sorted(set(expected) - set(seen))
        return f"{relation}: {len(leaked)} rows too many {leaked[:1]}, {len(missing)} missing {missing[:1]}"
    return None


@pytest.mark.parametrize("role", [*ROLES, "grafanareader"])
def test_rls_over_sql(world, role):
    """As PostgREST does it: log in as the authenticator, SET ROLE, set the claims.
    grafanareader logs in itself; its claims come from flows.sql_login_claims."""
    problems = []
    url = world.grafana_url if role == "grafanareader" else world.authenticator_url
    with psycopg.connect(url, autocommit=True) as conn:
        if role != "grafanareader":
            conn.execute(f"SET ROLE {ROLES[role][0]}")
            conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps(world.claims(role)),))
        else:
            # a SQL login cannot widen its own claims by setting the PostgREST setting
            conn.execute("SELECT set_config('request.jwt.claims', %s, false)",
                         (json.dumps({"esco": world.b.code}),))
        for relation in world.relations:
            try:
                seen = World._rows(conn, relation)
            except psycopg.errors.InsufficientPrivilege:
                seen = None
            if problem := _compare(world, "analyst" if role == "grafanareader" else role, relation, seen):
                problems.append(problem)
    assert not problems, f"{role} over SQL:\n" + "\n".join(problems)


@pytest.mark.parametrize("role", list(ROLES))
def test_rls_over_http(world, role):
    problems = []
    claims = world.claims(role)
    client = world.api.client() if role == "anon" else world.api.client(
        claims["role"], claims.get("esco"), **{k: v for k, v in claims.items() if k not in ("role", "esco")})
    with client as http:
        for relation in world.relations:
            response = http.get(f"/{relation}")
            if response.status_code in (401, 403):
                assert response.json()["code"] == "42501", response.text
                seen = None
            else:
                assert response.status_code == 200, f"{relation}: {response.status_code} {response.text}"
                seen = canonical(json.loads(response.text, parse_float=Decimal))
            if problem := _compare(world, role, relation, seen):
                problems.append(problem)
    assert not problems, f"{role} over HTTP:\n" + "\n".join(problems)


def test_unknown_esco_claim_is_refused_not_empty(world):
    with world.api.client("operator", "NOSUCHESCO") as http:
        response = http.get("/meter_registry")
    assert response.status_code == 403
    assert "unknown ESCO" in response.json()["message"] and "NOSUCHESCO" in response.json()["message"]


def test_every_flows_table_has_row_level_security(world):
    with psycopg.connect(world.api.db_url) as conn:
        missing = [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'flows'::regnamespace"
            " AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND NOT c.relrowsecurity")]
    assert not missing, f"flows tables without row-level security: {missing}"
