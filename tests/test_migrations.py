"""Migrations: yoyo, sqitch and the readable source agree; apply/rollback/apply works;
landed migrations never change."""

import difflib
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flows.db import migrations
from flows.paths import MIGRATIONS_DIR, SQITCH_DIR
from tests.support.schema import load_source, schema_dump, sqitch

# Migrations that have landed on main, by content. They are deployed: changing one would leave every
# database that applied it different from a fresh one. Never edit or regenerate them; a schema change is
# a new migration (docs/database.md, "Writing a migration").
LANDED = {
    "0001_foundation.sql": "749803faa2e073dac7735ea305ade79bc9576e7458cb1d5deeeccc47739450de",
    "0001_foundation.rollback.sql": "e9575ba2e5aa67631cc484b4791fc9b5d84e57eaecd42e8d7b1e9bd1c849d1cb",
    "0002_topology_and_meters.sql": "ec27b2c74775434e686b953835e6a0306c7bd39e732a1e2c4a0ce4f81da21128",
    "0002_topology_and_meters.rollback.sql": "a798b5a6d6749293c97dc0330d2ae5b71c475ffbbf1e76f0c9ce2123ca2dc2c1",
    "0003_readings.sql": "ff9a8aac43206b767f88bdf21675881869e0c70b5034726369efa79c5a317b25",
    "0003_readings.rollback.sql": "a43fe6270c0c3f68118ede6fc6c4679a71923303e48e978f077b1357dd996cdc",
    "0004_monitoring_and_aggregates.sql": "98fed45c12ed73de62993211a1c8bd69f018dbc3ce0c76a126d3a0502fe200e5",
    "0004_monitoring_and_aggregates.rollback.sql": "64cfefa31ed3db5ff4f06a50e8a146370ddd6123472afd707fabb405ffb6bebc",
    "0005_commands_and_scheduling.sql": "79b9fc3c35d67af68068ebed5c9348e76681ef02ae99f671e7e217de6e7253db",
    "0005_commands_and_scheduling.rollback.sql": "b8e56c2472d206738804ee25b8ee1e3d46945f091795875decda3ad5c2dd6bb5",
    # 0006-0020 land with the money side, live updates and operations (0017 was never used: numbers were handed
    # to work done in parallel, and one gave its number up to come after 0019)
    "0006_code_health.rollback.sql": "6b795154bed6db04fc309b86f2d8990f2d58f3e9212ea10e3c70cf4ded3109d0",
    "0006_code_health.sql": "dd9a6c1cc1031af2a41f334e5026e1555b68aad276c78581cb59fbad88f9415d",
    "0007_billing.rollback.sql": "58869e9015f903a3239b82b7b9a0ecc81a9719ed2cd86715625d2be1510b808b",
    "0007_billing.sql": "5be22da78edd02e23bf0cb09bda4cf8a30c92167d11db438e5bb9053234d4a7c",
    "0008_realtime.rollback.sql": "8d3c3027b2468045aefbec4051e0ac0b6300175155ead4b6bc71fd7dc8b33233",
    "0008_realtime.sql": "5f84a35aa731302c210987092f8ff95ac4422272e058c68fbede3480e180ed83",
    "0009_operations.rollback.sql": "34fbe99a23214e8c387416c9d31352b9e8e704132cb2f590a3c5754c16efe92f",
    "0009_operations.sql": "c665c3766d2a5852e6c37337a7641641ebcbba938e64c50a40ded601005313c3",
    "0010_meter_operations.rollback.sql": "f0a6bda2567b8b6a267f6f7e3e28cbd3db0b7fbdc7eb941660923e112500fbde",
    "0010_meter_operations.sql": "b2bc34400f994e515e9e3d4d2801a7670fdb1c20c33e9e0cc546cad9a9d6b244",
    "0011_payments.rollback.sql": "6ad808f16fe837ca01bd418346aa2e5f7350404056638ecc98510acb105e22f2",
    "0011_payments.sql": "b70868ef89513fd46e2b21b4f3b4619f6b2c23a8d854e4853580b8cc6bb54de3",
    "0012_notifications.rollback.sql": "49c4f0b32d213a7856d15751d491ea9519ddf9dc3c542335c40f50d9c5ccbc95",
    "0012_notifications.sql": "75873dd7845e91195127845feb7016f7f6ba4d5fd332b4207f6c0672cd54f0af",
    "0013_gdpr.rollback.sql": "1a512666b7e382b853685fa9dd80d675f2b95b5fd8dad1ae04b4a8eee5ab7de7",
    "0013_gdpr.sql": "5e838f33f2bb07a2418397ad425f506c5785330cacc0bd017a9e0b7b75ad071e",
    "0014_bank.rollback.sql": "0f356e359dacc9574d73e4f262a8e2ac04d9c5942587f66a43a9f43c906a8536",
    "0014_bank.sql": "e39460e6768c4fd76fdb9a2cc6861edb0e844c14a7628ae09273b4b525956f2a",
    "0015_reconciliation.rollback.sql": "a172df8f7817fdde870d8c084e1c799fc223aa768cf486d0d57476787036f644",
    "0015_reconciliation.sql": "dbcb7837eedb1effc580e3e6d2367c9548a62d3e410868cb47dc61a4fca31b10",
    "0016_billing_write_path.rollback.sql": "244142924947b9f9c643ab060e8263cb14f9e0f19bae22533c0e3eb42157ca77",
    "0016_billing_write_path.sql": "9709b0ade17a670fcd059a993360ad5b5b42e9574fe3bd95081f7c15c2178cfe",
    "0018_realtime_visibility.rollback.sql": "45e4b1a0b1dc3204d1dd55f815d838b70ecea556f53e1ceb6444a9a0fd270f3f",
    "0018_realtime_visibility.sql": "1568a3432e2caec518ffa2dbe4ccf8b75090670fd174cdf58f93f54ff00e2784",
    "0019_ledger_supply_off.rollback.sql": "f07dfa697ac04551f2825496155cccb8c36e3d5b2dc167385e7550c6fc5106e0",
    "0019_ledger_supply_off.sql": "de160cf5826bc94792dbe38fb25f7bbeba28193fdfd8491f0f405d6741fcb27f",
    "0020_reconciliation_speed.rollback.sql": "4bfa84f225c5b7e33ab86eec84fe171197c23977a83962fb958440c318139947",
    "0020_reconciliation_speed.sql": "ee99de1a828a3cfaa1a4dae207f32bf09d6f8d785aeb8a8d2e83eeec11631cd1",
    # 0021-0022 land with the daily ledger and the billing run's speed
    "0021_daily_ledger.rollback.sql": "cad8f94a9d5372609e16ddb81ab8cc82f21071bc7c0d2d97af706f14cdd69484",
    "0021_daily_ledger.sql": "7c4cf1e20fca3e28ecfacc7fc69a22f6b0f96983cfa99b0d1b7cbc2654f22d31",
    "0022_billing_run_speed.rollback.sql": "497e585a9e1ef6562b494bba39c02551243cd106b9921f67539ba7e7f6a74c40",
    "0022_billing_run_speed.sql": "bc6d44bc304c45ad4cb2aeb13bafea511546bd82cf4b96304e56ef7683bd6415",
    # 0023-0025 land with the sync's speed, billing details frozen at issue and the meter clock rule
    "0023_sync_speed.rollback.sql": "05ebfa582d8821eaa02c30f40fb5a969c67a496736a0d92aaa356672d77b40ea",
    "0023_sync_speed.sql": "a1fbf0014221bc78a71f95c547892c168032b048dc9719d8cd85b882f5d18c53",
    "0024_billing_details_at_issue.rollback.sql": "0aa9a7db82182165de4c7e4a44de701e7e81791a0ae9cbad43fc8df7854dae1c",
    "0024_billing_details_at_issue.sql": "71ee585e553343d0dfd300a857c00200444e22205ca3bd61f22dfa5ac170a9ea",
    "0025_topup_event_clock.rollback.sql": "1d7e694da0a776a325e56d1942406316b70278830f94edb91c4f890af16f7460",
    "0025_topup_event_clock.sql": "f50e4bf588c79f8e9354aaa8a258c949733c3207d67dde826d2403cc7638d141",
    # 0026-0027 land with drafts holding their lines, and their details from a kept plan
    "0026_billing_draft_lines.rollback.sql": "f4ad5d8ec84ded5444a5237d8c58936565d33533ddf97312e83539e6ff86ec99",
    "0026_billing_draft_lines.sql": "a4212b0538e1d7a3a62785192f68471caab94c858de8eea7c1749ee1fd078b26",
    "0027_draft_details_plan.rollback.sql": "5355d6654ccccfacb616eae64c8d3d8d66e957363cedea6d183a8cb84a892a2b",
    "0027_draft_details_plan.sql": "087fea30230d2dfcdc13b7adfec393d464b217a8af6d04254eef4e06673b3d9b",
}


def test_landed_migrations_are_frozen():
    last = max(int(name[:4]) for name in LANDED)
    present = {p.name for p in MIGRATIONS_DIR.glob("*.sql") if int(p.name[:4]) <= last}
    changed = sorted(name for name, digest in LANDED.items()
                     if not (MIGRATIONS_DIR / name).exists()
                     or hashlib.sha256((MIGRATIONS_DIR / name).read_bytes()).hexdigest() != digest)
    added = sorted(present - set(LANDED))
    assert not changed and not added, (
        f"landed migrations are frozen; write a new {last + 1:04d}+ migration (docs/database.md, "
        f"\"Writing a migration\") instead of changing {changed or ''}{added or ''}")


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def assert_same_schema(expected: str, actual: str, what: str) -> None:
    if expected != actual:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), actual.splitlines(True), "sql/all.sql", what, n=2
            )
        )
        pytest.fail(f"{what} differs from the readable source (sql/all.sql):\n{diff[:6000]}")


@pytest.fixture
def source_schema(pg_server, make_empty_db) -> str:
    name = _name(make_empty_db())
    load_source(pg_server, name)
    return schema_dump(pg_server, name)


def test_yoyo_migrations_equal_the_source(pg_server, source_schema, db_url):
    # db_url is cloned from the template, which yoyo migrated
    assert_same_schema(source_schema, schema_dump(pg_server, _name(db_url)), "yoyo migrations")


def test_sqitch_deploy_equals_the_source_and_verifies(pg_server, source_schema, empty_db_url):
    name = _name(empty_db_url)
    output = sqitch(pg_server, name, "deploy", "--verify")
    assert "ok" in output
    assert_same_schema(source_schema, schema_dump(pg_server, name), "sqitch deploy")
    sqitch(pg_server, name, "revert", "-y")
    sqitch(pg_server, name, "deploy", "--verify")
    assert_same_schema(source_schema, schema_dump(pg_server, name), "sqitch deploy after revert")


def test_apply_rollback_apply(pg_server, empty_db_url):
    name = _name(empty_db_url)
    empty = schema_dump(pg_server, name)
    applied = migrations.migrate(empty_db_url)
    assert applied, "no migrations were applied"
    first = schema_dump(pg_server, name)
    rolled_back = migrations.rollback(empty_db_url, steps=0)
    assert rolled_back == list(reversed(applied))
    assert_same_schema(empty, schema_dump(pg_server, name), "after rolling back every migration")
    assert migrations.migrate(empty_db_url) == applied
    assert_same_schema(first, schema_dump(pg_server, name), "after re-applying")
    assert all(state.applied for state in migrations.status(empty_db_url))


def test_each_step_rolls_back_cleanly(pg_server, empty_db_url):
    """Every migration's rollback undoes exactly that migration."""
    name = _name(empty_db_url)
    ids = [state.id for state in migrations.status(empty_db_url)]
    before = schema_dump(pg_server, name)
    for migration_id in ids:
        migrations.migrate_to(empty_db_url, migration_id)
        after = schema_dump(pg_server, name)
        assert migrations.rollback(empty_db_url, steps=1) == [migration_id]
        assert_same_schema(before, schema_dump(pg_server, name), f"rollback of {migration_id}")
        migrations.migrate_to(empty_db_url, migration_id)
        before = after


def test_every_migration_has_rollback_and_sqitch_scripts():
    ids = sorted(p.name.removesuffix(".sql") for p in MIGRATIONS_DIR.glob("*.sql") if ".rollback." not in p.name)
    assert ids, "no migrations found"
    assert [re.match(r"^\d{4}_[a-z0-9_]+$", i) is not None for i in ids] == [True] * len(ids)
    plan = [
        line.split()[0]
        for line in (SQITCH_DIR / "sqitch.plan").read_text().splitlines()
        if line and not line.startswith(("%", "#", "@"))
    ]
    assert plan == ids, "sqitch.plan must list every migration, in order"
    for migration_id in ids:
        assert (MIGRATIONS_DIR / f"{migration_id}.rollback.sql").exists()
        deploy = (SQITCH_DIR / "deploy" / f"{migration_id}.sql").read_text()
        revert = (SQITCH_DIR / "revert" / f"{migration_id}.sql").read_text()
        verify = (SQITCH_DIR / "verify" / f"{migration_id}.sql").read_text()
        assert f"\\ir ../../migrations/{migration_id}.sql" in deploy
        assert f"\\ir ../../migrations/{migration_id}.rollback.sql" in revert
        assert "ASSERT" in verify or "PERFORM" in verify, f"verify/{migration_id}.sql checks nothing"


def test_migrate_unreachable_database_is_one_clear_line(tmp_path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "flows"), "db", "migrate", "--database-url", "postgresql://flows@127.0.0.1:1/flows"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot connect to the database at 127.0.0.1:1/flows")
    assert "Traceback" not in result.stderr
