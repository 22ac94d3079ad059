"""Tenancy on writes, generated from the catalog: an operator of ESCO A who
names ESCO B's rows, in every write the api offers an operator, is refused
and learns nothing, over SQL and over HTTP.

The cases are derived, not listed:
- every api relation the operator may INSERT, UPDATE or DELETE: PATCH and
  DELETE one of B's rows (filtered by its ids), POST a copy of one of A's rows
  pointing at B's ESCO, and one pointing at B's parent rows from A's ESCO;
- every api function the operator may call that takes a row id (a uuid
  argument, or an ESCO code): called with B's ids, one argument at a time
  (CALLS says how to call each one; a new function needs an entry).

An attack passes when it changes nothing in the database (every flows table
compared before and after), its answer names none of B's values the request
did not name itself, and it gets exactly the answer the same request gets
with B's ids replaced by ids that exist nowhere (so nobody can tell B's rows
exist). Each attack has a control: the same request on A's own rows (in a
transaction rolled back) must reach them, so a refusal that comes from a
broken request, or from a policy that shuts the operator out of their own
rows, fails too. test_the_matrix_notices_a_broken_policy proves the matrix
fails when a policy is dropped or widened.
"""

import functools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from flows.db.admin import set_role_password
from flows.factories import new_esco_code, new_serial
from tests.support.billing_factory import last_month_start, quarter_start
from tests.support.factory import TARIFF, SampleEsco, sample_esco
from tests.support.tenancy import UUID, canonical, ids_in, two_escos, values_in

OPERATOR = "flows_operator"
# Columns a copied row leaves to their defaults: the row's own id and timestamps.
OWN_COLUMNS = {"id", "register_id", "created_at", "updated_at"}
TELLS = "tells B's rows exist: answered"
# Attacks known to tell that B's rows exist (name -> why), pinned until fixed. Empty since 0006 put the ESCO in
# every natural key of topology rows: a unique key without it was checked before the composite foreign key, so
# an insert naming B's parent failed as a duplicate where B had such a child and as a missing parent otherwise.
EXISTENCE_ORACLES: dict[str, str] = {}
# SQLSTATE classes a refusal may carry: data exception, integrity, authorization, privilege, raised by a function,
# and PostgREST's explicit 4xx statuses (PT404: "no such row", as for an id that exists nowhere).
REFUSALS = ("22", "23", "28", "42", "P0", "PT4")


@dataclass(frozen=True)
class Ref:
    """An id of the sample ESCO by its label (SampleEsco.labelled): "meters.0", "esco", "code" ..."""
    label: str


@dataclass(frozen=True)
class Own:
    """A value of the caller's own sample ESCO that is not an id (never pointed at B): "billing.invoice_number"."""
    path: str


NOW = datetime.now(UTC).replace(microsecond=0)
HALF_HOUR = NOW.replace(minute=NOW.minute // 30 * 30, second=0)  # moves happen at half hours
# How to call each api function an operator may call that takes a row id: arguments that succeed on the
# caller's own rows, with Ref for every id. Attacks point one Ref at a time (then all) at ESCO B.
CALLS: dict[str, dict] = {
    "send_token": {"meter_id": Ref("meters.0"), "amount": 5},
    "request_sync": {"meter_ids": [Ref("meters.0")], "metrics": ["csq"]},
    "set_future_tariff": {"tariff": {**TARIFF, "activation_datetime": (NOW + timedelta(days=30)).isoformat()},
                          "meter_ids": [Ref("meters.1")]},
    "read_profile_log": {"meter_id": Ref("meters.0"), "start_time": (NOW - timedelta(days=2)).isoformat(),
                         "end_time": (NOW - timedelta(days=1)).isoformat()},
    "set_clock": {"meter_id": Ref("meters.2")},
    "cancel_meter_command": {"id": Ref("commands.token")},
    "register_meter": {"serial": "NEW_SERIAL", "hardware": "B1.w", "esco": Ref("esco"), "site": Ref("site")},
    "get_meters_for_cli": {"esco_filter": Ref("code"), "feeder_filter": None},
    "revoke_api_key": {"id": Ref("api_key")},
    # money: customers, tariffs, statements (tests/support/billing_factory.py)
    "onboard_customer": {"property": Ref("properties.2"), "fullname": "Nia Newcomer", "role": "occupier",
                         "customer_id": Ref("billing.customer")},
    "move_in": {"account_id": Ref("billing.others.spare.account"), "customer_id": Ref("billing.customer"),
                "move_in": HALF_HOUR.isoformat()},
    "move_out": {"account_id": Ref("billing.account"), "move_out": HALF_HOUR.isoformat()},
    "set_customer_discount": {"customer_id": Ref("billing.customer"), "discount": 30,
                              "effective_from": (HALF_HOUR + timedelta(days=1)).isoformat()},
    "generate_customer_tariffs": {"esco_code": Ref("code"), "period_start": quarter_start(NOW.date()).isoformat()},
    "roll_out_customer_tariffs": {"esco_code": Ref("code"), "period_start": quarter_start(NOW.date()).isoformat()},
    "create_billing_run": {"esco_code": Ref("code"), "period_start": last_month_start(NOW.date()).isoformat()},
    "finalise_billing_run": {"run_id": Ref("billing.run")},
    "credit_invoice": {"invoice_id": Ref("billing.invoice"), "reason": "meter read wrongly"},
    "statement_document": {"invoice_id": Ref("billing.invoice")},
    "statement_pdf": {"number": Own("billing.invoice_number"), "esco_code": Ref("code")},
    # money in: payments, top-ups, gifts, solar credit, wallets (tests/support/money_factory.py)
    "record_payment": {"account_id": Ref("billing.account"), "amount": 12.5, "provider": "cash"},
    "schedule_payment": {"account_id": Ref("billing.account"), "amount": 20,
                         "payment_method_id": Ref("money.payment_method")},
    "cancel_payment": {"payment_id": Ref("money.payments.scheduled"), "reason": "asked twice"},
    "refund_payment": {"payment_id": Ref("money.payments.cash"), "reason": "overpaid", "amount": 1},
    "retry_topup": {"topup_id": Ref("money.topups.card")},
    "cancel_topup": {"topup_id": Ref("money.topups.cash"), "reason": "paid twice"},
    "create_adjustment_topup": {"account_id": Ref("billing.account"), "amount": 2, "reason": "goodwill"},
    "create_gift": {"account_id": Ref("billing.account"), "amount": 5, "reason": "welcome",
                    "scheduled_at": (NOW + timedelta(days=2)).isoformat()},
    "cancel_gift": {"gift_id": Ref("money.gifts.scheduled"), "reason": "sent by mistake"},
    "generate_solar_credits": {"esco_code": Ref("code"), "month": last_month_start(NOW.date()).isoformat()},
    "set_wallet": {"account_id": Ref("billing.account"), "target_balance": 50,
                   "payment_method_id": Ref("money.payment_method")},
    # notifications: a dead letter sent again, a pending message cancelled
    "retry_notification": {"id": Ref("notifications.dead")},
    "cancel_notification": {"id": Ref("notifications.low_balance")},
    # personal data: the owner-occupier's export and consent; the erased prospect (erasing again changes nothing)
    "customer_data_export": {"customer_id": Ref("billing.customer")},
    "record_consent": {"given": True, "customer_id": Ref("billing.customer")},
    "erase_customer": {"customer_id": Ref("prospect"), "reference": "DSR-2"},
    # bank statements and matching (tests/support/bank_factory.py)
    "import_bank_statement": {"bank_account": "main", "esco_code": Ref("code"), "statement": {
        "format": "camt053", "file_hash": "ab" * 32, "statements": [{
            "period_start": NOW.date().isoformat(), "period_end": NOW.date().isoformat(), "opening_balance": "0.00",
            "closing_balance": "10.00", "entries": [{"booking_date": NOW.date().isoformat(), "amount": "10.00",
                                                     "reference": "a gift"}]}]}},
    "rematch_bank_transactions": {"bank_account_id": Ref("bank.account")},
    "match_bank_transaction_to_account": {"transaction_id": Ref("bank.transactions.queued"),
                                          "account_id": Ref("billing.account"), "reason": "Olive's daughter"},
    "match_bank_transaction_to_payment": {"transaction_id": Ref("bank.transactions.queued"),
                                          "payment_id": Ref("bank.payments.recorded"), "reason": "recorded twice"},
    "match_bank_transaction_to_payout": {"transaction_id": Ref("bank.transactions.queued"),
                                         "payout_payment_ids": [Ref("bank.payments.card")], "reason": "a late payout"},
    "split_bank_transaction": {"transaction_id": Ref("bank.transactions.queued"),
                               "parts": [{"amount": 5, "account_id": Ref("billing.account")},
                                         {"amount": 3, "account_id": Ref("billing.account")}]},
    "dismiss_bank_transaction": {"transaction_id": Ref("bank.transactions.queued"), "reason": "not ours"},
    # reconciliation (docs/reconciliation.md)
    "reconciliation": {"esco_code": Ref("code"), "day": NOW.date().isoformat()},
    "decide_reconciliation_exception": {"esco_code": Ref("code"), "exception_key": "unexplained_deduction:x",
                                        "status": "resolved", "note": "a meter fault, refunded"},
}
# api functions taking a row id that an operator may not call at all (the platform's, for administrators):
# how an administrator calls them. The operator is refused every one, on anyone's rows, and nothing changes.
ADMIN_CALLS: dict[str, dict] = {
    "drain_worker": {"id": Ref("workers.0")},
    "record_meter_state": {"meter_id": Ref("meters.0"), "observed_at": NOW.isoformat(), "state": {"csq": 12}},
}


@dataclass(frozen=True)
class Call:
    method: str  # rpc, POST, PATCH or DELETE
    target: str  # function or relation
    body: dict = field(default_factory=dict)  # arguments, or the row's values
    filters: dict = field(default_factory=dict)  # PATCH and DELETE: column -> value

    def values(self) -> set[str]:
        return values_in(self.body) | values_in(self.filters)

    def substituted(self, mapping: dict[str, str]) -> "Call":
        return replace(self, body=substitute(self.body, mapping), filters=substitute(self.filters, mapping))


@dataclass
class Outcome:
    refused: str | None  # SQLSTATE of the refusal, or None
    rows: list  # what came back (affected or returned rows)
    text: str  # everything the caller was told

    def same_as(self, other: "Outcome") -> bool:
        return (self.refused, canonical(self.rows), self.text) == (other.refused, canonical(other.rows), other.text)


@dataclass
class Case:
    name: str
    attack: Call
    control: Call | None  # the same on A's own rows
    reached: Callable[[Outcome], bool] = lambda o: o.refused is None and len(o.rows) >= 1


def substitute(value, mapping: dict[str, str]):
    if isinstance(value, str):
        return mapping.get(value, value)
    if isinstance(value, list):
        return [substitute(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, mapping) for k, v in value.items()}
    return value


def resolve(value, esco: SampleEsco, only: str | None = None, other: SampleEsco | None = None):
    """A recipe's values with its Refs made ids of ``esco`` (or, for the argument ``only``, of ``other``)."""
    def walk(v, use):
        if isinstance(v, Ref):
            return use.labelled()[v.label]
        if isinstance(v, Own):
            return functools.reduce(getattr, v.path.split("."), esco)
        if isinstance(v, list):
            return [walk(x, use) for x in v]
        if isinstance(v, dict):
            return {k: walk(x, use) for k, x in v.items()}
        if v == "NEW_SERIAL":
            return new_serial()
        return v
    return {name: walk(v, other if other is not None and (only is None or name == only) else esco)
            for name, v in value.items()}


def has_ref(value) -> bool:
    return isinstance(value, Ref) or (isinstance(value, list) and any(has_ref(v) for v in value)) or (
        isinstance(value, dict) and any(has_ref(v) for v in value.values()))


class Matrix:
    """Every cross-ESCO write of the catalog, for A's operator against B's rows."""

    def __init__(self, superuser_url: str, a: SampleEsco, b: SampleEsco):
        self.superuser_url, self.a, self.b = superuser_url, a, b
        self.to_b = {v: b.labelled()[k] for k, v in a.labelled().items()}
        with psycopg.connect(superuser_url) as conn:
            self.tables = [r[0] for r in conn.execute(
                "SELECT format('%I.%I', relnamespace::regnamespace, relname) FROM pg_class"
                " WHERE relnamespace IN ('flows'::regnamespace, 'billing'::regnamespace, 'gdpr'::regnamespace)"
                " AND relkind IN ('r', 'p')"
                " AND NOT relispartition ORDER BY 1")]
            self.writable = {r[0]: {"INSERT": r[1], "UPDATE": r[2], "DELETE": r[3]} for r in conn.execute(
                "SELECT c.relname, has_table_privilege(%(role)s, c.oid, 'INSERT'),"
                "       has_any_column_privilege(%(role)s, c.oid, 'UPDATE'),"
                "       has_table_privilege(%(role)s, c.oid, 'DELETE')"
                " FROM pg_class c WHERE c.relnamespace = 'api'::regnamespace AND c.relkind IN ('r', 'v', 'm')"
                " ORDER BY 1", {"role": OPERATOR}) if any(r[1:])}
            self.columns = {rel: [r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
                " AND pg_column_is_updatable(attrelid, attnum, false) ORDER BY attnum", (f"api.{rel}",))]
                for rel in self.writable}
            self.updatable = {rel: {r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
                " AND has_column_privilege(%s, attrelid, attnum, 'UPDATE')", (f"api.{rel}", OPERATOR))}
                for rel in self.writable}
            self.functions = {r[0]: dict(zip(r[1], r[2], strict=True)) for r in conn.execute(
                "SELECT p.proname,"  # input arguments: name -> type
                "       ARRAY(SELECT n FROM unnest(p.proargnames, coalesce(p.proargmodes::text[],"
                "             array_fill('i'::text, ARRAY[p.pronargs]))) AS a (n, m) WHERE m IN ('i', 'b', 'v')),"
                "       ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) AS t)"
                " FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace AND p.prokind = 'f'"
                "   AND has_function_privilege(%s, p.oid, 'EXECUTE')"
                "   AND NOT EXISTS (SELECT FROM unnest(p.proargtypes) AS t JOIN pg_type y ON y.oid = t"
                "                   WHERE y.typtype = 'c')"  # computed relationships, not callable on their own
                " ORDER BY 1", (OPERATOR,))}
            self.rows = {rel: [json.loads(r[0]) for r in conn.execute(
                f'SELECT to_jsonb(v)::text FROM api."{rel}" AS v ORDER BY 1')] for rel in self.writable}
            everything = [r[0] for t in self.tables
                          for r in conn.execute(f'SELECT to_jsonb(t)::text FROM {t} AS t')]
        # What belongs to B alone: every string in B's rows that no other row carries.
        b_rows = [json.loads(r) for r in everything if ids_in(r) & b.ids() and not ids_in(r) & a.ids()]
        others = set().union(*(values_in(json.loads(r)) for r in everything if not ids_in(r) & b.ids()))
        self.b_only = {v for v in values_in(b_rows) if len(v) >= 4} - others

    def id_functions(self) -> dict[str, dict]:
        """The api functions an operator may call that take a row id: a uuid, or an ESCO code."""
        return {name: args for name, args in self.functions.items()
                if any(t.startswith("uuid") or a.startswith("esco") for a, t in args.items())}

    def own_row(self, relation: str, esco: SampleEsco) -> dict | None:
        """One of the ESCO's rows in the relation: the one that points at most other rows."""
        other = self.b if esco is self.a else self.a
        own = [row for row in self.rows[relation]
               if (ids := ids_in(json.dumps(row))) & esco.ids() and not ids & other.ids()]
        return max(own, key=lambda row: len(ids_in(json.dumps(row))), default=None)

    def cases(self) -> list[Case]:
        cases = []
        for relation, granted in self.writable.items():
            mine = self.own_row(relation, self.a)
            identity = {k: v for k, v in mine.items() if isinstance(v, str) and UUID.match(v)}
            if body := {k: v for k, v in mine.items() if k in self.updatable[relation] and k not in OWN_COLUMNS}:
                cases.append(Case(f"PATCH {relation}", Call("PATCH", relation, body, substitute(identity, self.to_b)),
                                  Call("PATCH", relation, body, identity) if granted["UPDATE"] else None,
                                  lambda o: o.refused is None and len(o.rows) == 1))
            cases.append(Case(f"DELETE {relation}", Call("DELETE", relation, filters=substitute(identity, self.to_b)),
                              Call("DELETE", relation, filters=identity) if granted["DELETE"] else None,
                              # reached: deleted, or kept because something still refers to it
                              lambda o: (o.refused is None and len(o.rows) == 1) or o.refused == "23503"))
            copy = {k: v for k, v in mine.items() if k in self.columns[relation] and k not in OWN_COLUMNS}
            inserted = lambda o: o.refused is None or o.refused in ("23505", "23P01")  # noqa: E731 (a duplicate)
            cases.append(Case(f"POST {relation} into B", Call("POST", relation, substitute(copy, self.to_b)),
                              Call("POST", relation, copy) if granted["INSERT"] else None, inserted))
            parents = [k for k, v in copy.items() if k != "esco" and substitute(v, self.to_b) != v]
            if "esco" in copy and parents:  # the caller's own ESCO, B's site (feeder, meter ...)
                own_esco = {k: v for k, v in copy.items() if k != "esco"}
                cases.append(Case(f"POST {relation} onto B's rows", Call("POST", relation,
                                                                         substitute(own_esco, self.to_b)),
                                  Call("POST", relation, own_esco) if granted["INSERT"] else None, inserted))
        for name, recipe in CALLS.items():
            ids = [arg for arg, value in recipe.items() if has_ref(value)]
            for only in ids + ([None] if len(ids) > 1 else []):
                what = f"{only}" if only else "every id"
                cases.append(Case(f"{name}({what} of B)",
                                  Call("rpc", name, resolve(recipe, self.a, only, self.b)),
                                  Call("rpc", name, resolve(recipe, self.a))))
        return cases

    def snapshot(self) -> dict[str, tuple]:
        with psycopg.connect(self.superuser_url) as conn:
            return {t: conn.execute(f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"
                                    f' FROM {t} AS x').fetchone() for t in self.tables}

    def run(self, call: Callable[[Call, bool], Outcome]) -> list[str]:
        """Every case through ``call(request, rolled_back)``; what was wrong, by case."""
        problems = {}
        before = self.snapshot()
        for case in self.cases():
            found = []
            outcome = call(case.attack, False)
            after = self.snapshot()
            if changed := [t for t in self.tables if after[t] != before[t]]:
                found.append(f"changed {changed}")
                before = after
            if outcome.refused is None and outcome.rows and case.attack.method != "rpc":
                found.append(f"reached {len(outcome.rows)} rows")
            if outcome.refused is not None and not outcome.refused.startswith(REFUSALS):
                found.append(f"refused with {outcome.refused}, not as a refusal should be")
            if leaked := [v for v in self.b_only - case.attack.values() if v in outcome.text]:
                found.append(f"told B's {leaked[:3]}")
            named = {v for v in case.attack.values() if v in self.b_only}
            unknown = {v: str(uuid.uuid4()) if UUID.match(v) else new_esco_code("U") for v in named}
            stranger = call(case.attack.substituted(unknown), False)
            back = {u: v for v, u in unknown.items()}
            stranger = Outcome(stranger.refused, substitute(stranger.rows, back), substitute_text(stranger.text, back))
            if not outcome.same_as(stranger):
                found.append(f"{TELLS} {outcome.refused} {outcome.text[:200]!r} where rows that exist nowhere get "
                             f"{stranger.refused} {stranger.text[:200]!r}")
            if case.control is not None:
                control = call(case.control, True)
                if not case.reached(control):
                    found.append(f"the same on A's own rows did not reach them: {control.refused} {control.text[:300]}")
                if self.snapshot() != before:
                    found.append("the control was not rolled back")
                    before = self.snapshot()
            if found:
                problems[case.name] = found
        return problems


def substitute_text(text: str, mapping: dict[str, str]) -> str:
    for old, new in mapping.items():
        text = text.replace(old, new)
    return text


# -- the two ways in -------------------------------------------------------

class OverSql:
    """As PostgREST does it: log in as the authenticator, SET LOCAL ROLE, set the claims; one transaction a call."""

    def __init__(self, authenticator_url: str, esco_code: str, functions: dict[str, dict]):
        self.conn = psycopg.connect(authenticator_url, autocommit=True)
        self.claims = json.dumps({"role": OPERATOR, "esco": esco_code})
        self.functions = functions

    def statement(self, call: Call) -> tuple[str, list]:
        view = f'api."{call.target}"'
        if call.method == "rpc":
            types = self.functions[call.target]
            args = ", ".join(f'"{name}" => %s::{types[name]}' for name in call.body)
            params = [json.dumps(v) if types[n] in ("jsonb", "json") else v for n, v in call.body.items()]
            return f"SELECT to_jsonb(r) FROM api.\"{call.target}\"({args}) AS r", params
        columns = ", ".join(f'"{c}"' for c in call.body)
        keys = ", ".join(f'"{c}"' for c in call.filters)
        record = f"jsonb_populate_record(NULL::{view}, %s::jsonb)"
        if call.method == "POST":
            return (f"INSERT INTO {view} AS x ({columns}) SELECT {columns} FROM {record} RETURNING to_jsonb(x)",
                    [json.dumps(call.body)])
        where = f"WHERE ({keys}) = (SELECT {keys} FROM {record})"
        if call.method == "PATCH":
            return (f"UPDATE {view} AS x SET ({columns}) = (SELECT {columns} FROM {record}) {where}"
                    " RETURNING to_jsonb(x)", [json.dumps(call.body), json.dumps(call.filters)])
        return f"DELETE FROM {view} AS x {where} RETURNING to_jsonb(x)", [json.dumps(call.filters)]

    def __call__(self, call: Call, rolled_back: bool) -> Outcome:
        sql, params = self.statement(call)
        try:
            with self.conn.transaction():
                self.conn.execute(f"SET LOCAL ROLE {OPERATOR}")
                self.conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (self.claims,))
                rows = [r[0] for r in self.conn.execute(sql, params).fetchall()]
                if rolled_back:
                    raise psycopg.Rollback()
        except psycopg.Error as error:
            diag = error.diag
            return Outcome(error.sqlstate, [], " ".join(filter(None, (diag.message_primary, diag.message_detail,
                                                                      diag.message_hint))))
        return Outcome(None, rows, json.dumps(rows, default=str))

    def close(self):
        self.conn.close()


class OverHttp:
    """Through PostgREST with the operator's token; controls ask for the transaction to be rolled back."""

    def __init__(self, client: httpx.Client):
        self.http = client

    def __call__(self, call: Call, rolled_back: bool) -> Outcome:
        prefer = "return=representation" + (", tx=rollback" if rolled_back else "")
        params = {k: f"eq.{v}" for k, v in call.filters.items()}
        if call.method == "rpc":
            response = self.http.post(f"/rpc/{call.target}", json=call.body, headers={"Prefer": prefer})
        else:
            response = self.http.request(call.method, f"/{call.target}", params=params,
                                         json=call.body if call.method != "DELETE" else None,
                                         headers={"Prefer": prefer})
        if rolled_back and response.is_success and "tx=rollback" not in response.headers.get("Preference-Applied", ""):
            raise AssertionError(f"PostgREST did not roll back the control: {response.headers}")
        body = response.json() if response.content else []
        if response.status_code >= 400:
            refused = body.get("code") if response.status_code < 500 else f"HTTP {response.status_code}"
            return Outcome(refused, [], response.text)
        rows = body if isinstance(body, list) else [body]
        return Outcome(None, rows, response.text)


# -- the tests ---------------------------------------------------------------

def unexpected(problems: dict[str, list[str]]) -> list[str]:
    """The problems, less the pinned existence oracles (which must still be there)."""
    found = [f"{name}: " + "; ".join(f for f in findings if not (name in EXISTENCE_ORACLES and f.startswith(TELLS)))
             for name, findings in problems.items()]
    found = [line for line in found if not line.endswith(": ")]
    if fixed := [n for n in EXISTENCE_ORACLES if not any(f.startswith(TELLS) for f in problems.get(n, []))]:
        found.append(f"no longer tell B's rows exist, remove them from EXISTENCE_ORACLES: {fixed}")
    return found


@pytest.fixture(scope="module")
def world(pg_server, template_db, tmp_path_factory):
    # PostgREST may roll a request back when asked (Prefer: tx=rollback): the controls leave nothing behind.
    with two_escos(pg_server, template_db, tmp_path_factory.mktemp("rls-writes"), "rls_writes",
                   {"PGRST_DB_TX_END": "commit-allow-override"}) as two:
        yield two, Matrix(two.api.db_url, two.a, two.b)


def test_every_write_is_in_the_matrix(world):
    """Every id-taking function has a way to call it, every writable relation has rows of A and B,
    and the matrix has an attack and a control for each."""
    _, matrix = world
    functions = matrix.id_functions()
    assert set(CALLS) == set(functions), (f"api functions taking row ids without an entry in CALLS: "
                                          f"{set(functions) - set(CALLS)}; entries for no such function: "
                                          f"{set(CALLS) - set(functions)}")
    for name, recipe in CALLS.items():
        ids = {a for a, t in functions[name].items() if t.startswith("uuid") or a.startswith("esco")}
        assert ids <= {a for a, v in recipe.items() if has_ref(v)}, f"CALLS[{name!r}] gives no Ref for {ids}"
    assert {"sites", "properties", "meter_registry", "circuit_register", "escos"} <= set(matrix.writable)
    thin = [r for r in matrix.writable if not matrix.own_row(r, matrix.a) or not matrix.own_row(r, matrix.b)]
    assert not thin, f"no rows of both ESCOs in api.{thin}: add data in tests/support/factory.py"
    cases = matrix.cases()
    for relation in matrix.writable:
        assert {f"PATCH {relation}", f"DELETE {relation}", f"POST {relation} into B"} <= {c.name for c in cases}
    assert all(c.control for c in cases if c.attack.method == "rpc")
    assert matrix.b.ids() | {matrix.b.code} <= matrix.b_only, "B's ids and code are what must never be told"


def test_cross_esco_writes_over_sql(world):
    two, matrix = world
    caller = OverSql(two.authenticator_url, two.a.code, matrix.functions)
    try:
        problems = unexpected(matrix.run(caller))
    finally:
        caller.close()
    assert not problems, "A's operator over SQL:\n" + "\n".join(problems)


def test_cross_esco_writes_over_http(world):
    two, matrix = world
    with two.api.client("operator", two.a.code) as http:
        problems = unexpected(matrix.run(OverHttp(http)))
    assert not problems, "A's operator over HTTP:\n" + "\n".join(problems)


def test_administrators_functions_are_refused_to_operators(world):
    two, matrix = world
    with psycopg.connect(two.api.db_url) as conn:
        admin_only = {r[0] for r in conn.execute(
            "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace"
            " AND NOT has_function_privilege(%s, p.oid, 'EXECUTE') AND 'uuid'::regtype = ANY (p.proargtypes::oid[])",
            (OPERATOR,))}
    assert admin_only == set(ADMIN_CALLS), "an api function operators may not call needs an entry in ADMIN_CALLS"
    before = matrix.snapshot()
    with two.api.client("operator", two.a.code) as operator, two.api.client("admin") as admin:
        for name, recipe in ADMIN_CALLS.items():
            for esco in (two.a, two.b):
                refused = operator.post(f"/rpc/{name}", json=resolve(recipe, esco))
                assert refused.status_code in (401, 403) and refused.json()["code"] == "42501", refused.text
            control = admin.post(f"/rpc/{name}", json=resolve(recipe, two.a), headers={"Prefer": "tx=rollback"})
            assert control.status_code == 200 and control.json(), control.text
    assert matrix.snapshot() == before


BROKEN_POLICIES = {
    # the operator's only way to their meters: dropped, they reach none (every control on meters fails)
    "dropped": ("DROP POLICY meter_registry_own_esco ON flows.meter_registry",
                ["PATCH meter_registry", "send_token(meter_id of B)"]),
    # a policy that forgets the ESCO: B's commands can be cancelled, B's sites changed
    "widened commands": ("ALTER POLICY meter_commands_own_esco ON flows.meter_commands USING (true)",
                         ["cancel_meter_command(id of B)"]),
    "widened sites": ("ALTER POLICY sites_own_esco ON flows.sites USING (true)",
                      ["PATCH sites", "DELETE sites"]),
}


@pytest.mark.parametrize("broken", list(BROKEN_POLICIES))
def test_the_matrix_notices_a_broken_policy(pg_server, template_db, broken):
    """The same matrix over SQL, in a database of its own where one policy is dropped or widened."""
    statement, noticed = BROKEN_POLICIES[broken]
    name = f"flows_broken_{uuid.uuid4().hex[:8]}"
    with pg_server.janitor(name, template_dbname=template_db):
        url = pg_server.url(name)
        with psycopg.connect(url, autocommit=True) as conn:
            a, b = sample_esco(conn), sample_esco(conn)
            conn.execute(statement)
        password = uuid.uuid4().hex
        set_role_password(url, "flows_authenticator", password)
        matrix = Matrix(url, a, b)
        caller = OverSql(pg_server.url(name, "flows_authenticator", password), a.code, matrix.functions)
        try:
            problems = matrix.run(caller)
        finally:
            caller.close()
    assert set(noticed) <= set(problems), f"with {statement!r} the matrix found only:\n" + "\n".join(
        f"{name}: {found}" for name, found in problems.items())
