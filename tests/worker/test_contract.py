"""The worker's typed contract with the database agrees with the database:
meter-state fields, the outcome's keys, one reader per metric, and versioned
functions for everything a running worker calls."""

import dataclasses
import inspect
import re

from flows.worker import queries
from flows.worker.outcome import Events, HalfHours, MeterIdentity, MeterState, Outcome
from flows.worker.workflows import METRIC_READERS, WORKFLOWS


def test_meter_state_fields_are_the_sql_type(db):
    columns = [name for (name,) in db.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'flows.meter_state'::regclass AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum")]
    assert [f.name for f in dataclasses.fields(MeterState)] == columns


def test_every_outcome_key_is_read_by_finish(db):
    body = db.execute("SELECT prosrc FROM pg_proc WHERE oid ="
                      " 'flows.finish_meter_command_v1(uuid, text, integer, jsonb)'::regprocedure").fetchone()[0]
    for part in (Outcome, HalfHours, Events, MeterIdentity):
        for f in dataclasses.fields(part):
            assert f"'{f.name}'" in body, f"finish_meter_command_v1 does not read {part.__name__}.{f.name}"


def test_one_reader_per_metric(db):
    metrics = {name for (name,) in db.execute("SELECT name FROM flows.meter_metrics")}
    assert set(METRIC_READERS) == metrics
    kinds = db.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                       " WHERE conname = 'meter_commands_kind_valid'").fetchone()[0]
    assert set(WORKFLOWS) == set(re.findall(r"'(\w+)'", kinds))


def test_what_a_worker_calls_is_versioned_and_granted(db):
    called = set(re.findall(r"flows\.(\w+)\(", inspect.getsource(queries)))
    assert len(called) >= 9, called
    unversioned = {name for name in called if not re.search(r"_v\d+$", name)}
    assert not unversioned, f"workers call unversioned functions: {unversioned}"
    for name in called:
        granted = db.execute("SELECT bool_and(has_function_privilege('flows_worker', p.oid, 'EXECUTE'))"
                             " FROM pg_proc p WHERE p.pronamespace = 'flows'::regnamespace AND p.proname = %s",
                             (name,)).fetchone()[0]
        assert granted, f"flows.{name} is missing, or flows_worker may not call it"
