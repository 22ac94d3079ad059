"""The audit trail per statement (flows.audit's per_statement, for tables written in bulk) records what the trail per
row records: the same operations on two tables audited each way leave the same audit rows.

Property: any sequence of inserts, updates (some changing only ignored columns, some rows the condition leaves out)
and deletes, several rows a statement, gives equal audit rows (relation aside), in the same order per row.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TABLE = """CREATE TABLE public.audited_{name} (
    id integer PRIMARY KEY, esco uuid, kind text NOT NULL, value text, updated_at integer NOT NULL DEFAULT 0)"""
ESCOS = ["00000000-0000-4000-8000-00000000a001", "00000000-0000-4000-8000-00000000a002", None]

ids = st.lists(st.integers(1, 12), min_size=1, max_size=6, unique=True)
operations = st.lists(st.one_of(
    st.tuples(st.just("insert"), ids, st.sampled_from(["manual", "scheduler"]), st.sampled_from(ESCOS)),
    st.tuples(st.just("update"), ids, st.sampled_from(["value", "updated_at", "kind"])),
    st.tuples(st.just("delete"), ids)), min_size=1, max_size=10)


def apply(db, table: str, operation) -> None:
    kind, keys = operation[0], operation[1]
    if kind == "insert":
        db.execute(f"INSERT INTO public.{table} (id, esco, kind, value) SELECT k, %s, %s, 'v' || k"
                   " FROM unnest(%s::integer[]) AS k ON CONFLICT (id) DO NOTHING", (operation[3], operation[2], keys))
    elif kind == "update":
        change = {"value": "value = value || '+'", "updated_at": "updated_at = updated_at + 1",
                  "kind": "kind = CASE kind WHEN 'manual' THEN 'scheduler' ELSE 'manual' END"}[operation[2]]
        db.execute(f"UPDATE public.{table} SET {change} WHERE id = ANY (%s)", (keys,))
    else:
        db.execute(f"DELETE FROM public.{table} WHERE id = ANY (%s)", (keys,))


TRAIL = """SELECT esco, operation, row_key, before, after, actor_role, db_user FROM flows.audit_log
WHERE relation = %s ORDER BY row_key ->> 'id', id"""


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40, deadline=None)
@given(sequence=operations)
def test_per_statement_and_per_row_trails_are_the_same(db, sequence):
    with db.transaction(force_rollback=True):
        for name, per_statement in (("rows", False), ("statements", True)):
            db.execute(TABLE.format(name=name))
            db.execute("CALL flows.audit(%s, ignored_columns => '{updated_at}', only_rows => %s, per_statement => %s)",
                       (f"public.audited_{name}", "{row}.kind <> 'scheduler'", per_statement))
        for operation in sequence:
            for name in ("rows", "statements"):
                apply(db, f"audited_{name}", operation)
        per_row = db.execute(TRAIL, ("public.audited_rows",)).fetchall()
        per_statement = db.execute(TRAIL, ("public.audited_statements",)).fetchall()
        assert per_statement == per_row, sequence
