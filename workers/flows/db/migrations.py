"""Schema migrations: yoyo-migrations runs the files in ``sql/migrations``.

Each migration is ``NNNN_name.sql`` with its ``NNNN_name.rollback.sql``; the
sqitch plan in ``sql/sqitch`` deploys the very same files (its deploy/revert
scripts include them), so both tools apply one source.
"""

from dataclasses import dataclass
from datetime import datetime

import psycopg
from yoyo import get_backend, read_migrations
from yoyo.exceptions import LockTimeout

from flows.db.connect import describe, first_line
from flows.errors import FlowsError, Unreachable
from flows.paths import MIGRATIONS_DIR


@dataclass(frozen=True)
class MigrationState:
    id: str
    applied_at: datetime | None

    @property
    def applied(self) -> bool:
        return self.applied_at is not None


def _yoyo_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _backend(url: str):
    try:
        return get_backend(_yoyo_url(url))
    except psycopg.OperationalError as error:
        raise Unreachable(f"cannot connect to the database at {describe(url)}: {first_line(error)}") from None


def _migrations():
    return read_migrations(str(MIGRATIONS_DIR))


def _locked(backend):
    try:
        return backend.lock(timeout=60)
    except LockTimeout:
        raise FlowsError("another migration holds the lock; try again when it has finished") from None


def migrate(url: str) -> list[str]:
    """Apply every pending migration; returns the ids applied."""
    backend = _backend(url)
    migrations = _migrations()
    with _locked(backend):
        pending = backend.to_apply(migrations)
        _apply(backend, pending)
        return [m.id for m in pending]


def _apply(backend, pending) -> None:
    """Apply migrations one by one (each in its own transaction), naming the one that fails."""
    for migration in pending:
        try:
            backend.apply_migrations(pending[pending.index(migration) : pending.index(migration) + 1])
        except psycopg.Error as error:
            raise FlowsError(f"migration {migration.id} failed: {first_line(error)}") from None


def rollback(url: str, steps: int = 1) -> list[str]:
    """Roll back the last ``steps`` applied migrations (0 = all)."""
    backend = _backend(url)
    migrations = _migrations()
    with _locked(backend):
        applied = backend.to_rollback(migrations)
        chosen = applied if steps == 0 else applied[:steps]
        try:
            backend.rollback_migrations(chosen)
        except psycopg.Error as error:
            raise FlowsError(f"rollback failed: {first_line(error)}") from None
        return [m.id for m in chosen]


def status(url: str) -> list[MigrationState]:
    backend = _backend(url)
    applied = {}
    if "_yoyo_migration" in backend.list_tables():
        cursor = backend.execute("SELECT migration_id, applied_at_utc FROM _yoyo_migration")
        applied = dict(cursor.fetchall())
    return [MigrationState(m.id, applied.get(m.id)) for m in _migrations()]


def migrate_to(url: str, target: str) -> list[str]:
    """Apply pending migrations up to and including ``target``."""
    backend = _backend(url)
    migrations = _migrations()
    ids = [m.id for m in migrations]
    if target not in ids:
        raise FlowsError(f"no migration named {target}", hint=f"known: {', '.join(ids)}")
    wanted = migrations[: ids.index(target) + 1]
    with _locked(backend):
        pending = backend.to_apply(wanted)
        _apply(backend, pending)
        return [m.id for m in pending]
