"""Cuts the first migrations (0001-0005) from the readable SQL source.

Used while those migrations had not landed yet: each is a list of source files
plus the matching `-- == Section ==` of rls/privileges.sql and rls/policies.sql.
Once they have landed they are never regenerated or edited (docs/database.md):
later changes are hand-written deltas (0006 on), and tests/test_migrations.py
checks that source and migrations still describe the same database.

usage: python3 scripts/cut_migrations.py --unlanded
"""

import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "sql"
def section(path, title):
    text = (root/path).read_text()
    parts = re.split(r'^-- == (.+?) =+\n', text, flags=re.M)
    for i in range(1, len(parts), 2):
        if parts[i].startswith(title):
            return parts[i+1].strip() + '\n'
    raise SystemExit(f'no section {title} in {path}')
def files(*names):
    return ''.join(f"\n-- ---- {n} ----\n" + (root/n).read_text() for n in names)
OWNER = "\n-- Everything below is created by, and owned by, flows_owner.\nSET LOCAL ROLE flows_owner;\n"
migrations = {
 '0001_foundation': ("Roles, the flows and api schemas, identity (JWT claims), ESCOs, health.",
    files('rls/roles.sql', 'schema/schemas.sql') + OWNER +
    files('schema/common.sql', 'schema/escos.sql', 'rls/claims.sql', 'rpc/health.sql', 'rpc/escos.sql'),
    'Foundation'),
 '0002_topology_and_meters': ("Sites, properties, feeders, service heads, circuits, meters, registers, shadows, metrics.",
    OWNER + files('schema/sites.sql', 'schema/network.sql', 'schema/tariffs.sql', 'schema/meters.sql',
                  'schema/circuits.sql', 'schema/meter_metrics.sql', 'rpc/sites.sql', 'rpc/network.sql',
                  'rpc/circuits.sql', 'rpc/meters.sql', 'rpc/register_meter.sql', 'rpc/get_meters_for_cli.sql'),
    'Topology and meters'),
 '0003_readings': ("Time-series tables (partitioned, or hypertables), readings, meter history, recording functions.",
    OWNER + files('schema/timeseries.sql', 'schema/readings.sql', 'schema/meter_history.sql', 'schema/recording.sql',
                  'rpc/readings.sql', 'rpc/meter_history.sql', 'rpc/record_meter_state.sql'),
    'Readings and meter history'),
 '0004_monitoring_and_aggregates': ("Monitoring views; circuit, property and site aggregates.",
    OWNER + files('schema/energy_parts.sql', 'rpc/monitoring.sql', 'rpc/aggregates.sql'),
    'Monitoring and aggregates'),
 '0005_commands_and_scheduling': ("Meter commands (the outbox), the workers' claim/renew/finish/fail, the scheduler.",
    OWNER + files('schema/commands.sql', 'schema/scheduling.sql', 'rpc/commands.sql'),
    'Commands and scheduling'),
}
if sys.argv[1:] != ['--unlanded']:
    sys.exit(__doc__)
for mid, (desc, body, sec) in migrations.items():
    text = f"-- {mid}: {desc}\n" + body
    text += "\n-- ---- rls/privileges.sql: " + sec + " ----\n" + section('rls/privileges.sql', sec)
    try:
        pol = section('rls/policies.sql', sec)
        text += "\n-- ---- rls/policies.sql: " + sec + " ----\n" + pol
    except SystemExit:
        pass
    (root/'migrations'/f'{mid}.sql').write_text(text)
    print(mid, len(text.splitlines()))
