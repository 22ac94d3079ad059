"""The worker's typed contract with the database agrees with the database:
meter-state fields, the outcome's keys, one reader per metric, and versioned
functions for everything a running worker calls."""

import dataclasses
import inspect
import re
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from flows.worker import queries
from flows.worker.outcome import Events, HalfHours, MeterIdentity, MeterState, Outcome
from flows.worker.queries import Fenced, Queries, QueryFailed
from flows.worker.workflows import METRIC_READERS, NOT_RUN_BY_WORKERS, WORKFLOWS


def test_meter_state_fields_are_the_sql_type(db):
    columns = [name for (name,) in db.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'flows.meter_state'::regclass AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum")]
    assert [f.name for f in dataclasses.fields(MeterState)] == columns


def test_every_outcome_key_is_read_by_finish(db):
    body = db.execute(
        "SELECT string_agg(prosrc, ' ') FROM pg_proc WHERE oid IN ("
        " 'flows.finish_meter_commands_v1(text, jsonb)'::regprocedure,"
        " 'flows.record_command_outcomes(uuid[], jsonb[], boolean)'::regprocedure)").fetchone()[0]
    for part in (Outcome, HalfHours, Events, MeterIdentity):
        for f in dataclasses.fields(part):
            assert f"'{f.name}'" in body, f"finishing does not read {part.__name__}.{f.name}"


def test_one_reader_per_metric(db):
    metrics = {name for (name,) in db.execute("SELECT name FROM flows.meter_metrics")}
    assert set(METRIC_READERS) == metrics
    kinds = db.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                       " WHERE conname = 'meter_commands_kind_valid'").fetchone()[0]
    assert set(WORKFLOWS) | NOT_RUN_BY_WORKERS == set(re.findall(r"'(\w+)'", kinds))
    assert not set(WORKFLOWS) & NOT_RUN_BY_WORKERS


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


async def test_the_query_boundary_lets_out_one_error(db, db_url):
    """Named functions answer through Queries; whatever the driver raises comes out as QueryFailed
    (Fenced when the fence refused), with the driver's error as its cause."""
    with pytest.raises(QueryFailed) as unreachable:
        await Queries.connect("postgresql://flows@127.0.0.1:1/flows", "w", 1)
    assert isinstance(unreachable.value.__cause__, OSError)

    esco = db.execute("INSERT INTO flows.escos (code, name) VALUES ('EDGE', 'e') RETURNING id").fetchone()[0]
    meter = db.execute("SELECT api.register_meter(serial => 'EML6000000001', ip_address => '127.0.0.1',"
                       " emop_port => 9500, esco => %s) ->> 'id'", (esco,)).fetchone()[0]
    db.execute("SELECT api.request_sync(ARRAY[%s]::uuid[], ARRAY['csq'])", (meter,))
    worker = await Queries.connect(db_url, "edge-worker", 2)
    try:
        assert await worker.queue_depth() == {"pending": 1, "running": 0}
        assert await worker.last_event_time(uuid.UUID(meter)) is None
        [command] = await worker.claim(10, timedelta(minutes=1))
        assert (command.serial, command.three_phase) == ("EML6000000001", False)
        assert await worker.queue_depth() == {"pending": 0, "running": 1}
        stale = dataclasses.replace(command, attempt=command.attempt + 1)
        with pytest.raises(Fenced) as fenced:
            await worker.note_progress(stale, {"x": 1})
        assert fenced.value.sqlstate == "FL409" and isinstance(fenced.value.__cause__, asyncpg.PostgresError)
        bad = MeterState(meter_id=command.meter_id, observed_at=datetime.now(UTC), csq=40)
        with pytest.raises(QueryFailed) as refused:
            await worker.finish([(command, Outcome(states=[bad]))])
        assert not isinstance(refused.value, Fenced) and refused.value.sqlstate == "22023"
        assert "csq must be 0 to 31" in str(refused.value)
        assert await worker.finish([(stale, Outcome())]) == {command.id}, "a batch returns what it did not finish"
        assert await worker.finish([(command, Outcome(states=[], result={"ok": True}))]) == set()
        assert await worker.queue_depth() == {"pending": 0, "running": 0}
    finally:
        await worker.close()


def _subclasses(cls: type) -> set[type]:
    return {cls} | {c for sub in cls.__subclasses__() for c in _subclasses(sub)}


def test_top_ups_read_the_workers_failures_by_their_class(db):
    """billing.token_failure_kind reads a failed round's last error ("ErrorClass: message", daemon.describe):
    every kind of meter that does not answer is 'unreachable' (the top-up waits for the meter), a token the
    meter refused is 'refused' (a new token next round), anything else 'other' (tried again)."""
    from flows.emop.errors import MeterUnreachable, Nak
    from flows.worker.daemon import describe
    from flows.worker.workflows import TokenRefused, WorkflowRefused

    def kind(error: BaseException) -> str:
        return db.execute("SELECT billing.token_failure_kind(%s)", (describe(error),)).fetchone()[0]

    unreachable = _subclasses(MeterUnreachable)
    assert len(unreachable) >= 5
    assert {c.__name__: kind(c("no answer")) for c in unreachable} == {c.__name__: "unreachable" for c in unreachable}
    body = db.execute("SELECT pg_get_functiondef('billing.token_failure_kind(text)'::regprocedure)").fetchone()[0]
    named = set(re.search(r"\^\(([\w|]+)\): ", body).group(1).split("|"))
    assert named == {c.__name__ for c in unreachable}, "a new kind of unreachable meter is not known to top-ups"
    assert kind(TokenRefused("the meter rejected the token (NAK 6)")) == "refused"
    for other in (WorkflowRefused("gave up after 5 attempts"), Nak(6), QueryFailed(OSError("down")),
                  RuntimeError("abandoned: the worker's lease ran out")):
        assert kind(other) == "other", other
