"""Reconciliation end to end: the worker suite's stack (database, PostgREST, emulated meters, an in-process
worker), shared."""

from tests.worker.conftest import fleet_of, running_worker, stack  # noqa: F401  (fixtures, shared)
