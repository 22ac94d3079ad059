"""`emop` finds a registered meter's address in the database by serial."""

import asyncio
import json
import os
import sys
from pathlib import Path

from flows.emulator import MeterConfig
from tests.worker.conftest import new_esco, register, serials

EMOP = str(Path(sys.executable).parent / "emop")


async def emop(*args, env):
    process = await asyncio.create_subprocess_exec(EMOP, *args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE, env={**os.environ, **env})
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


async def test_emop_looks_meters_up_by_serial(stack, fleet_of):
    esco, _ = new_esco(stack)
    fleet = await fleet_of(MeterConfig(serial=serials(1, 401)[0]))
    register(stack, fleet, esco)
    code, out, err = await emop("--pacing", "0", "--json", "serial_read", fleet.meters[0].serial,
                                env={"FLOWS_DATABASE_URL": stack.api.db_url})
    assert code == 0, err
    assert fleet.meters[0].serial in json.loads(out).values()
    code, _, err = await emop("--pacing", "0", "csq", "EML9999999999", env={"FLOWS_DATABASE_URL": stack.api.db_url})
    assert code == 2 and "no address known for meter EML9999999999" in err
