"""Cuts the first migrations (0001-0005) from the readable SQL source.

Used while those migrations had not landed yet: each is a list of source files
plus the matching `-- == Section ==` of rls/privileges.sql and rls/policies.sql.
Once they have landed they are never regenerated or edited (docs/database.md):
later changes are hand-written deltas (0006 on), and tests/test_migrations.py
checks that source and migrations still describe the same database.

usage: python3 scripts/cut_migrations.py --unlanded
"""

import re
import sys
from pathlib import Path

SQL = Path(__file__).resolve().parent.parent / "sql"
OWNER = "\n-- Everything below is created by, and owned by, flows_owner.\nSET LOCAL ROLE flows_owner;\n"

# name: (description, body, section of privileges.sql / policies.sql)
MIGRATIONS = {
    "0001_foundation": (
        "Roles, the flows and api schemas, identity (JWT claims), ESCOs, health.",
        ["rls/roles.sql", "schema/schemas.sql", OWNER, "schema/common.sql", "schema/escos.sql", "rls/claims.sql",
         "rpc/health.sql", "rpc/escos.sql"],
        "Foundation",
    ),
    "0002_topology_and_meters": (
        "Sites, properties, feeders, service heads, circuits, meters, registers, shadows, metrics.",
        [OWNER, "schema/sites.sql", "schema/network.sql", "schema/tariffs.sql", "schema/meters.sql",
         "schema/circuits.sql", "schema/meter_metrics.sql", "rpc/sites.sql", "rpc/network.sql", "rpc/circuits.sql",
         "rpc/meters.sql", "rpc/register_meter.sql", "rpc/get_meters_for_cli.sql"],
        "Topology and meters",
    ),
    "0003_readings": (
        "Time-series tables (partitioned, or hypertables), readings, meter history, recording functions.",
        [OWNER, "schema/timeseries.sql", "schema/readings.sql", "schema/meter_history.sql", "schema/recording.sql",
         "rpc/readings.sql", "rpc/meter_history.sql", "rpc/record_meter_state.sql"],
        "Readings and meter history",
    ),
    "0004_monitoring_and_aggregates": (
        "Monitoring views; circuit, property and site aggregates.",
        [OWNER, "schema/energy_parts.sql", "rpc/monitoring.sql", "rpc/aggregates.sql"],
        "Monitoring and aggregates",
    ),
    "0005_commands_and_scheduling": (
        "Meter commands (the outbox), the workers' claim/renew/finish/fail, the scheduler.",
        [OWNER, "schema/commands.sql", "schema/scheduling.sql", "rpc/commands.sql"],
        "Commands and scheduling",
    ),
}


def section(path: str, title: str) -> str | None:
    parts = re.split(r"^-- == (.+?) =+\n", (SQL / path).read_text(), flags=re.M)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name.startswith(title):
            return body.strip() + "\n"
    return None


def migration(name: str, description: str, pieces: list[str], title: str) -> str:
    text = f"-- {name}: {description}\n"
    for piece in pieces:
        text += piece if piece == OWNER else f"\n-- ---- {piece} ----\n" + (SQL / piece).read_text()
    for path in ("rls/privileges.sql", "rls/policies.sql"):
        body = section(path, title)
        if body is None and path.endswith("privileges.sql"):
            sys.exit(f"no section {title} in {path}")
        if body is not None:
            text += f"\n-- ---- {path}: {title} ----\n" + body
    return text


def main() -> None:
    if sys.argv[1:] != ["--unlanded"]:
        sys.exit(__doc__)
    for name, (description, pieces, title) in MIGRATIONS.items():
        text = migration(name, description, pieces, title)
        (SQL / "migrations" / f"{name}.sql").write_text(text)
        print(name, len(text.splitlines()))


if __name__ == "__main__":
    main()
