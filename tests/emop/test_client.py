"""The client's operations against the emulator: typed results in user units that match the meter's state."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from flows.emop.errors import Nak
from flows.emop.results import MeterRead, Tariff, to_jsonable
from flows.emop.values import Backlight, LoadSwitch, RegisterRead
from flows.emulator import MeterConfig
from flows.errors import FlowsError

from .conftest import connect

START = datetime(2030, 3, 10, 12, 7, tzinfo=UTC)


@pytest.fixture
async def fleet(start_fleet):
    meters = [
        MeterConfig("EML2400000001", hardware="C1.w"),
        MeterConfig("EML2400000002", hardware="B1.w"),
        MeterConfig("EML2400000003", hardware="P1.ax"),
        MeterConfig("EML2400000004", hardware="P1.cx"),
        MeterConfig("EML2400000005", hardware="EMA1.w"),
    ]
    return await start_fleet(meters=meters, time_factor=0, start=START)


async def test_identity_clock_and_radio(fleet, client):
    for emulated, hardware in zip(fleet.meters, ["C1.w", "B1.w", "P1.ax", "P1.cx", "EMA1.w"], strict=True):
        meter = connect(client, emulated)
        assert await meter.serial_read() == emulated.serial
        assert await meter.hardware() == hardware
        assert await meter.firmware_version() == ("0123" if hardware.startswith("P1") else "3_02_0")
        clock = await meter.clock_time_read()
        assert abs((clock - START).total_seconds()) <= 1
        assert 0 <= await meter.csq() <= 31


async def test_registers_balance_and_tariff_match_the_meter(fleet, client):
    emulated = fleet.meters[0]
    meter = connect(client, emulated)
    read = await meter.read()
    assert read == MeterRead("C1.w", emulated.model.registers("A"), emulated.model.registers("B"))
    assert isinstance(read.element_a.import_active, Decimal)
    assert await meter.prepay_balance() == emulated.model.balance == Decimal("20")
    tariff = await meter.tariffs_active_read()
    assert tariff.to_json() == {k: str(v) for k, v in emulated.model.tariff("active").items()}
    assert 220 <= await meter.instantaneous_voltage() <= 250
    assert await meter.instantaneous_active_power() > 0
    single = await connect(client, fleet.meters[1]).read()
    assert single.element_b is None and single.element_a.import_active > 0


async def test_time_advances_registers_and_debits_the_balance(fleet, client):
    emulated = fleet.meters[0]
    meter = connect(client, emulated)
    before_a, before_b = await meter.read_element_a(), await meter.read_element_b()
    balance_before = await meter.prepay_balance()
    fleet.clock.advance(timedelta(hours=6))  # 12:07 -> 18:07 UTC: no midnight, energy only
    after_a, after_b = await meter.read_element_a(), await meter.read_element_b()
    balance_after = await meter.prepay_balance()
    used_a = after_a.import_active - before_a.import_active
    used_b = after_b.import_active - before_b.import_active
    assert used_a > Decimal("0.5") and used_b > 0
    rate = Decimal("0.23812")
    assert abs((balance_before - balance_after) - (used_a + used_b) * rate) < Decimal("0.001")
    fleet.clock.advance(timedelta(hours=6))  # past UK midnight (GMT in March before the clocks change)
    a, b = await meter.read_element_a(), await meter.read_element_b()
    used = a.import_active - after_a.import_active + b.import_active - after_b.import_active
    expected = used * rate + Decimal("0.6975")  # the day's standing charge, once, at midnight
    assert abs((balance_after - await meter.prepay_balance()) - expected) < Decimal("0.001")


async def test_emergency_credit_and_supply_cut(start_fleet, client, vendor):
    """Below the availability threshold the customer may take emergency credit: the balance rises by it and the
    next credit repays it first; when the credit runs out the supply goes off, the standing charge runs on."""
    config = MeterConfig(
        "EML2400000009",
        balance=Decimal("10.20"),
        tariff={"unit_rate_element_a": "0.9", "unit_rate_element_b": "0.9"},
    )
    fleet = await start_fleet(meters=[config], time_factor=0, start=START)
    emulated = fleet.meters[0]
    meter = connect(client, emulated)
    assert not emulated.model.take_emergency_credit()  # 10.20 is not below the 10 GBP threshold
    fleet.clock.advance(timedelta(hours=2))
    below = await meter.prepay_balance()
    assert below < 10 and not emulated.model.emergency_active
    assert emulated.model.take_emergency_credit() and emulated.model.emergency_active
    assert await meter.prepay_balance() == below + 15
    assert not emulated.model.take_emergency_credit()  # once until repaid
    fleet.clock.advance(timedelta(days=5))
    balance = await meter.prepay_balance()
    # the credit is used up: the supply went off at zero; the standing charge (a few midnights of it) runs on
    assert Decimal("-0.6975") * 5 - 1 < balance < 0
    assert not emulated.model.supply_on
    registers = await meter.read_element_a()
    fleet.clock.advance(timedelta(hours=3))
    assert await meter.read_element_a() == registers  # no supply, no consumption
    assert await meter.instantaneous_active_power() == 0
    before = await meter.prepay_balance()
    await meter.prepay_top_up((await vendor.vend(emulated.serial, Decimal("40"))).token)
    assert await meter.prepay_balance() == before + 40 - 15  # the emergency credit is repaid first
    assert emulated.model.supply_on and not emulated.model.emergency_active


async def test_top_up_once_and_only_once(fleet, client, vendor):
    emulated = fleet.meters[0]
    meter = connect(client, emulated)
    token = await vendor.vend(emulated.serial, Decimal("12.50"))
    top_up = await meter.prepay_top_up(token.token)
    assert top_up.credited == Decimal("12.5")
    assert (top_up.transactions_before, top_up.transactions_after) == (0, 1)
    assert emulated.model.balance == Decimal("32.5")
    assert await meter.monetary_info_transaction_count() == 1
    details = await meter.monetary_info_transaction_details()
    assert details.payment_value == Decimal("12.5")
    with pytest.raises(Nak) as reused:
        await meter.prepay_send_token(token.token)
    assert reused.value.code == 6
    forged = token.token[:-1] + str((int(token.token[-1]) + 1) % 10)
    with pytest.raises(Nak):
        await meter.prepay_send_token(forged)
    other = await vendor.vend(fleet.meters[1].serial, Decimal("5"))
    with pytest.raises(Nak):
        await meter.prepay_send_token(other.token)
    assert emulated.model.balance == Decimal("32.5")
    assert emulated.model.rejected_tokens == 3


async def test_future_tariff_is_written_read_back_and_activates(fleet, client):
    emulated = fleet.meters[0]
    meter = connect(client, emulated)
    activation = START + timedelta(days=1)
    await meter.tariffs_future_write(
        from_ts=activation,
        standing_charge=Decimal("0.7125"),
        unit_rate=Decimal("0.24567"),
        unit_rate_b=Decimal("0.1"),
        emergency_credit=Decimal("12"),
        ecredit_availability=Decimal("8"),
        debt_recovery_rate=Decimal("0.3"),
    )
    future = await meter.tariffs_future_read()
    assert future.activation_datetime == activation
    assert (future.standing_charge, future.unit_rate_element_a, future.unit_rate_element_b) == (
        Decimal("0.7125"),
        Decimal("0.24567"),
        Decimal("0.1"),
    )
    assert (await meter.tariffs_active_read()).standing_charge == Decimal("0.6975")
    fleet.clock.advance(timedelta(days=1, seconds=1))
    active = await meter.tariffs_active_read()
    assert active.to_json() == {k: v for k, v in future.to_json().items() if k != "activation_datetime"}


async def test_activation_in_uk_local_time_when_the_meter_corrects_for_dst(start_fleet, client):
    config = MeterConfig("EML2400000007", daylight_savings_correction=True)
    summer = datetime(2030, 6, 30, 22, 0, tzinfo=UTC)
    fleet = await start_fleet(meters=[config], time_factor=0, start=summer)
    emulated = fleet.meters[0]
    meter = connect(client, emulated)
    midnight_uk = datetime(2030, 6, 30, 23, 0, tzinfo=UTC)  # 2030-07-01 00:00 BST
    await meter.tariffs_future_write(
        from_ts=midnight_uk,
        standing_charge="0.5",
        unit_rate="0.3",
        emergency_credit="15",
        ecredit_availability="10",
        debt_recovery_rate="0",
    )
    stored = emulated.model.get_object("tariff_future_activation_datetime")
    assert stored == datetime(2030, 7, 1, 0, 0, tzinfo=UTC)  # wall clock on the wire
    assert (await meter.tariffs_future_read()).activation_datetime == midnight_uk
    fleet.clock.advance(timedelta(minutes=59))
    assert (await meter.tariffs_active_read()).unit_rate_element_a == Decimal("0.23812")
    fleet.clock.advance(timedelta(minutes=2))
    assert (await meter.tariffs_active_read()).unit_rate_element_a == Decimal("0.3")


async def test_tariff_values_are_checked_before_anything_is_written(fleet, client):
    emulated = fleet.meters[0]
    meter = connect(client, emulated)
    common = dict(from_ts=START, emergency_credit="15", ecredit_availability="10", debt_recovery_rate="0.25")
    for bad in (
        dict(standing_charge="2.5", unit_rate="0.2"),
        dict(standing_charge="0.5", unit_rate="0.123456"),
    ):
        with pytest.raises(FlowsError):
            await meter.tariffs_future_write(**common, **bad)
    with pytest.raises(FlowsError):
        await meter.tariffs_future_write(**common, standing_charge=0.5, unit_rate="0.2")  # a float
    assert emulated.stats.exchanges == 0


async def test_profile_log_1_for_a_whole_day(fleet, client):
    emulated = fleet.meters[0]
    meter = connect(client, emulated)
    day = (START - timedelta(days=2)).date()
    seen = []
    records = await meter.profile_log_1_day(day, progress=lambda done, total: seen.append(done / total))
    starts = [r.timestamp for r in records]
    first = datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert starts == [first + timedelta(minutes=30 * k) for k in range(48)]
    assert all(b.import_a >= a.import_a for a, b in zip(records, records[1:], strict=False))
    assert emulated.stats.exchanges <= 11  # five records per page
    assert seen[-1] == 1.0
    # consistent with the history: today's first half hour continues yesterday's last
    after = await meter.profile_log_1(first + timedelta(days=1))
    assert after[0].import_a >= records[-1].import_a


async def test_profile_log_1_range_reaches_live_records(fleet, client):
    emulated = fleet.meters[0]
    meter = connect(client, emulated)
    fleet.clock.advance(timedelta(hours=5))
    now = fleet.clock.now()
    records = await meter.profile_log_1_range(now - timedelta(hours=8), now)  # 09:07 .. 17:07
    first = datetime(2030, 3, 10, 9, 0, tzinfo=UTC)
    assert [r.timestamp for r in records] == [first + timedelta(minutes=30 * k) for k in range(17)]
    last = records[-1]
    assert last.import_a <= (await meter.read_element_a()).import_active


async def test_profile_log_2_shapes(fleet, client):
    when = START - timedelta(days=1)
    twin = await connect(client, fleet.meters[0]).profile_log_2(when)
    single = await connect(client, fleet.meters[1]).profile_log_2(when)
    assert len(twin) == 2 and twin[0].active_export_b is not None
    assert len(single) == 3 and single[0].active_export_b is None
    assert 2300 <= single[0].voltage <= 2500


async def test_event_log(fleet, client):
    meter = connect(client, fleet.meters[0])
    events = await meter.event_log(0)
    assert events and all(a.timestamp >= b.timestamp for a, b in zip(events, events[1:], strict=False))
    assert "daily_log_snapshot" in {e.name for e in events}
    everything = await meter.event_log_since()
    assert everything[: len(events)] == events
    assert await meter.event_log_since(events[0].timestamp) == []


async def test_three_phase_meters(fleet, client):
    ax, cx = connect(client, fleet.meters[2]), connect(client, fleet.meters[3])
    assert (await ax.read()).three_phase.active_import > 0
    ax_totals, cx_totals = await ax.three_phase_read(), await cx.three_phase_read()
    assert ax_totals.active_import > 1000 and cx_totals.active_import > 1000  # scaled to kWh either way
    voltages = await ax.three_phase_instantaneous_voltage()
    assert all(220 <= v <= 250 for v in voltages)
    assert await ax.three_phase_serial() == fleet.meters[2].serial
    with pytest.raises(Nak) as refused:
        await ax.prepay_balance()
    assert refused.value.code == 5
    intervals = await ax.three_phase_intervals(START - timedelta(hours=7), START - timedelta(hours=1))
    assert len(intervals) == 12
    assert all(set(i.values) == {"010800", "020800", "030800", "040800"} for i in intervals)


async def test_settings_and_clock_writes(fleet, client):
    emulated = fleet.meters[0]
    meter = connect(client, emulated)
    await meter.backlight_write(Backlight.always_off_sp)
    assert await meter.backlight() == Backlight.always_off_sp
    await meter.load_switch_write(LoadSwitch.never_button_required)
    assert emulated.model.get_object("load_switch") == LoadSwitch.never_button_required
    written = await meter.clock_time_write(START + timedelta(hours=3))
    assert abs((await meter.clock_time_read() - written).total_seconds()) <= 1
    assert await meter.daylight_savings_correction_enabled() is False
    with pytest.raises(Nak) as refused:
        await meter.obis_write("serial", b"EML0000000000   ")
    assert refused.value.code == 6


async def test_prepay_mode_switch_guards_low_balance(start_fleet, client):
    fleet = await start_fleet(
        meters=[MeterConfig("EML2400000008", balance="5", prepay_enabled=False)], time_factor=0
    )
    meter = connect(client, fleet.meters[0])
    assert await meter.prepay_enabled() is False
    with pytest.raises(FlowsError, match="below 10"):
        await meter.prepay_enabled_write(True)
    await meter.prepay_enabled_write(True, force=True)
    assert await meter.prepay_enabled() is True


async def test_raw_objects(fleet, client):
    meter = connect(client, fleet.meters[0])
    assert await meter.obis_read("255.200.2") == (2_000_000).to_bytes(4, "little")
    with pytest.raises(Nak) as unknown:
        await meter.obis_read("FFFF0C")
    assert unknown.value.code == 5
    assert await meter.read_object("tariff_active_block_8_rate_1") == Decimal("0.23812")


def test_results_become_json_without_floats():
    document = to_jsonable(
        MeterRead("C1.w", RegisterRead(Decimal("1.5"), Decimal(0), Decimal("0.001"), Decimal(2)))
    )
    assert document["element_a"]["import_active"] == "1.5"
    tariff = Tariff(Decimal("0.5"), Decimal("0.2"), Decimal("0.2"), Decimal(15), Decimal(10), Decimal(0))
    assert to_jsonable(tariff)["threshold_mask"] == [False] * 8
