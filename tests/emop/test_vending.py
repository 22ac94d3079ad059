"""The test vendor's tokens and the sequence counters behind them."""

import multiprocessing
import os
import stat
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from flows.cli.main import cli
from flows.errors import ConfigError, FlowsError
from flows.vending import EmulatedVendor, FileSequenceStore, MemorySequenceStore, TokenRejected, get_vendor
from flows.vending.adapter import VendingAdapter
from flows.vending.emulated import decode_token, default_master_secret, meter_key

from .conftest import SECRET


async def test_tokens_carry_amount_and_sequence_for_one_meter(vendor):
    first = await vendor.vend("EML2400000001", Decimal("10"))
    second = await vendor.vend("EML2400000001", "0.01")
    assert len(first.token) == 20 and first.token.isdigit()
    assert (first.sequence, second.sequence) == (1, 2)
    key = meter_key(SECRET, "EML2400000001")
    content = decode_token(key, "EML2400000001", first.token)
    assert (content.amount, content.sequence) == (Decimal("10"), 1)
    assert decode_token(key, "EML2400000001", second.token).amount == Decimal("0.01")
    with pytest.raises(TokenRejected):
        decode_token(meter_key(SECRET, "EML2400000002"), "EML2400000002", first.token)
    with pytest.raises(TokenRejected):
        decode_token(
            meter_key(b"another-secret-entirely-000000", "EML2400000001"), "EML2400000001", first.token
        )
    assert first.grouped.count("-") == 4
    assert isinstance(vendor, VendingAdapter)


@pytest.mark.parametrize("amount", ["0", "-1", "0.001", "1310.72", "abc"])
async def test_amounts_outside_the_token_range_are_refused(vendor, amount):
    with pytest.raises(FlowsError):
        await vendor.vend("EML2400000001", amount)


async def test_floats_are_refused(vendor):
    with pytest.raises(FlowsError):
        await vendor.vend("EML2400000001", 10.0)


def test_every_single_digit_change_is_rejected():
    import asyncio

    token = asyncio.run(EmulatedVendor(SECRET, MemorySequenceStore()).vend("EML2400000001", Decimal("20"))).token
    key = meter_key(SECRET, "EML2400000001")
    for position in range(20):
        for digit in "0123456789":
            if digit == token[position]:
                continue
            forged = token[:position] + digit + token[position + 1 :]
            with pytest.raises(TokenRejected):
                decode_token(key, "EML2400000001", forged)


def _take_sequences(path, serial, count, out):
    store = FileSequenceStore(path)
    out.put([store.next_sequence_sync(serial) for _ in range(count)])


def test_two_processes_never_get_the_same_sequence(tmp_path):
    path = tmp_path / "sequences.json"
    queue = multiprocessing.get_context("fork").Queue()
    workers = [
        multiprocessing.get_context("fork").Process(
            target=_take_sequences, args=(path, "EML2400000001", 40, queue)
        )
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    taken = [n for _ in workers for n in queue.get(timeout=30)]
    for worker in workers:
        worker.join(30)
    assert sorted(taken) == list(range(1, 161))
    assert FileSequenceStore(path).last("EML2400000001") == 160
    assert FileSequenceStore(path).last("EML2400000002") == 0


def test_master_secret_file_is_private_and_stable(flows_home):
    first = default_master_secret(flows_home)
    path = flows_home / "test-vendor.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert default_master_secret(flows_home) == first and len(first) >= 32


def test_secret_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWS_TEST_VENDOR_SECRET", "from-the-environment-0123456789")
    assert default_master_secret(tmp_path) == b"from-the-environment-0123456789"
    assert not (tmp_path / "test-vendor.secret").exists()


def test_unknown_vendor_is_a_config_error():
    with pytest.raises(ConfigError, match="no vending adapter"):
        get_vendor("sts-service", Path("/nonexistent"))


def test_flows_vend_prints_a_token_and_counts_in_the_home(flows_home):
    runner = CliRunner()
    plain = runner.invoke(cli, ["vend", "EML2400000001", "10.00"])
    assert plain.exit_code == 0, plain.output
    assert len(plain.output.strip()) == 20
    as_json = runner.invoke(cli, ["vend", "EML2400000001", "2.50", "--json"])
    import json

    document = json.loads(as_json.stdout)
    assert (document["amount"], document["sequence"], document["vendor"]) == ("2.5", 2, "test")
    key = meter_key(default_master_secret(flows_home), "EML2400000001")
    assert decode_token(key, "EML2400000001", document["token"]).sequence == 2
    assert (flows_home / "test-vendor-sequences.json").exists()
    refused = runner.invoke(cli, ["vend", "EML2400000001", "0.001"])
    assert refused.exit_code == 1 and "whole number of pence" in refused.output
    assert os.environ["FLOWS_HOME"] == str(flows_home)
