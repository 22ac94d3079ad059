"""Property tests: every payload type round-trips; any bytes into the parsers raise only typed errors."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.emop import messages
from flows.emop.errors import BadCrc, BadDelimiter, BadLength, EmopError
from flows.emop.frame import Frame, build_frame, control_byte, crc16, parse_frame
from flows.emop.objects import (
    OBJECTS,
    Choice,
    Clock,
    Csq,
    Flag,
    Money,
    Raw,
    Reading,
    Scaled,
    Text,
    ThreePhaseConfig,
    ThresholdMask,
    ThresholdValues,
    Timestamp,
    Token,
    Transaction,
    UInt,
)
from flows.emop.values import (
    THREE_PHASE_FLAGS,
    RegisterRead,
    SignalQuality,
    ThreePhaseHardware,
    TransactionDetails,
)

u8 = st.integers(0, 0xFF)
u24 = st.integers(0, 0xFFFFFF)
moments = st.datetimes(datetime(2000, 1, 1), datetime(2135, 12, 31), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=0)
)
clock_moments = st.datetimes(datetime(2000, 1, 1), datetime(2255, 12, 31), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=0)
)


def money(low: int, high: int):
    return st.integers(low, high).map(lambda raw: Decimal(raw) / 100000)


def thousandths(high: int = 0xFFFFFFFF):
    return st.integers(0, high).map(lambda raw: Decimal(raw) / 1000)


def values_for(codec):
    """A strategy producing every typed value the codec can carry."""
    if isinstance(codec, Money):
        return money(-(2**31), 2**31 - 1) if codec.signed else money(0, 2**32 - 1)
    if isinstance(codec, Timestamp):
        return moments
    if isinstance(codec, Flag):
        return st.booleans()
    if isinstance(codec, Choice):
        return u8.map(lambda v: codec.decode(bytes((v,))))
    if isinstance(codec, Scaled):
        return st.integers(0, 0xFFFF).map(lambda raw: Decimal(raw) / codec.divisor)
    if isinstance(codec, UInt):
        bits = codec.size * 8
        return (
            st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
            if codec.kind.startswith("s")
            else st.integers(0, 2**bits - 1)
        )
    if isinstance(codec, Clock):
        return clock_moments
    if isinstance(codec, Reading):
        return st.builds(RegisterRead, thousandths(), thousandths(), thousandths(), thousandths())
    if isinstance(codec, Csq):
        return st.builds(SignalQuality, st.integers(0, 31), st.integers(0, 7))
    if isinstance(codec, ThresholdMask):
        return st.tuples(*[st.booleans()] * 8)
    if isinstance(codec, ThresholdValues):
        return st.tuples(*[st.integers(0, 0xFFFF)] * 7)
    if isinstance(codec, ThreePhaseConfig):
        flags = {name: st.booleans() for name in THREE_PHASE_FLAGS}
        return st.builds(ThreePhaseHardware, st.booleans(), unused=st.binary(min_size=3, max_size=3), **flags)
    if isinstance(codec, Transaction):
        return st.builds(
            TransactionDetails, st.binary(min_size=8, max_size=8), moments, money(-(2**31), 2**31 - 1)
        )
    if isinstance(codec, Token):
        return st.text("0123456789", min_size=1, max_size=40)
    if isinstance(codec, Text):
        return st.text(st.characters(max_codepoint=255), max_size=40)
    if isinstance(codec, Raw):
        return st.binary(min_size=codec.size or 0, max_size=codec.size or 200)
    raise AssertionError(f"no strategy for {type(codec).__name__}")


CODECS = {type(obj.codec).__name__ + (f"/{obj.codec.kind}"): obj.codec for obj in OBJECTS.values()}


@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_payload_type_round_trips(name):
    codec = CODECS[name]

    @settings(max_examples=150, deadline=None)
    @given(values_for(codec))
    def round_trip(value):
        payload = codec.encode(value)
        if codec.size is not None:
            assert len(payload) == codec.size
        assert codec.decode(payload) == value
        assert codec.decode(payload + b"\x00\xff") == value or codec.size is None  # extra bytes ignored

    round_trip()


@pytest.mark.parametrize("name", sorted(CODECS))
def test_payload_decoders_raise_only_typed_errors(name):
    codec = CODECS[name]

    @settings(max_examples=150, deadline=None)
    @given(st.binary(max_size=40))
    def decode(payload):
        try:
            codec.decode(payload)
        except EmopError:
            pass

    decode()


frames = st.builds(
    Frame,
    st.binary(min_size=1, max_size=243),
    u8,
    u24,
    u8,
    u24,
    u8,
)


@settings(max_examples=400, deadline=None)
@given(frames)
def test_frames_round_trip(frame):
    raw = frame.to_bytes()
    assert len(raw) == len(frame.data) + 13
    assert parse_frame(raw) == frame


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_typed_errors(raw):
    try:
        frame = parse_frame(raw)
    except (BadDelimiter, BadLength, BadCrc):
        return
    # a frame that parses may still carry any data field: the message parsers stay typed too
    for parse in (
        messages.parse_default,
        messages.parse_event_log,
        messages.parse_profile_log,
        lambda d: messages.parse_profile_log(d, twin=True),
        messages.parse_three_phase_intervals,
        messages.parse_event_log_request,
        messages.parse_profile_log_request,
        messages.parse_three_phase_intervals_request,
    ):
        try:
            parse(frame.data)
        except EmopError:
            pass


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=1, max_size=243), st.data())
def test_damaged_frames_are_detected(data, draw):
    raw = bytearray(build_frame(data))
    position = draw.draw(st.integers(1, len(raw) - 1))
    raw[position] ^= draw.draw(st.integers(1, 255))
    with pytest.raises((BadCrc, BadLength)):
        parse_frame(bytes(raw))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=243).map(lambda d: b"\x01" + d[:242]))
def test_data_fields_parse_with_crc_checked(data):
    raw = build_frame(data)
    assert crc16(raw[1:-2]) == int.from_bytes(raw[-2:], "big")


def test_crc_check_value():
    assert crc16(b"123456789") == 0x29B1


@given(st.integers(0, 7), st.integers(0, 31))
def test_control_byte(sequence, code):
    frame = Frame(b"\x01", control=control_byte(sequence, code))
    assert (frame.sequence, frame.nak_code) == (sequence, code)


events = st.builds(messages.Event, moments, u8, u8)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 9), st.lists(events, max_size=10))
def test_event_log_round_trips(index, page_events):
    page = messages.parse_event_log(messages.event_log_response(index, page_events))
    assert page.index == index
    assert page.events[: len(page_events)] == page_events
    assert all(e.event_id == 0 for e in page.events[len(page_events) :])


statuses = st.integers(0, 0xFFFF).map(messages.ProfileStatus)
profile_moments = moments.filter(lambda m: m.year > 2000)
pl1_records = st.builds(messages.ProfileLog1Record, profile_moments, statuses, thousandths(), thousandths())


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=4, max_size=4), st.lists(pl1_records, max_size=5))
def test_profile_log_1_round_trips(header, records):
    page = messages.parse_profile_log(messages.profile_log_response(1, header, records))
    assert page.header == header
    assert page.records == records


@settings(max_examples=200, deadline=None)
@given(st.booleans(), st.binary(min_size=4, max_size=4), st.data())
def test_profile_log_2_round_trips(twin, header, data):
    b = (thousandths(), thousandths(), thousandths()) if twin else (st.none(), st.none(), st.none())
    record = st.builds(messages.ProfileLog2Record, profile_moments, statuses, thousandths(), thousandths(),
                       thousandths(), st.integers(0, 2**32 - 1), *b)
    records = data.draw(st.lists(record, max_size=2 if twin else 3))
    page = messages.parse_profile_log(messages.profile_log_response(2, header, records, twin), twin=twin)
    assert page.records == records


@settings(max_examples=200, deadline=None)
@given(moments, st.integers(0, 48), st.integers(0, 4), st.data())
def test_three_phase_blocks_round_trip(start, minutes, channels, data):
    start = start.replace(second=0)
    ids = tuple(data.draw(st.lists(u24, min_size=channels, max_size=channels)))
    room = (243 - 9 - 3 * channels) // (2 + 4 * channels)
    values = st.tuples(*[st.integers(0, 2**32 - 1)] * channels)
    rows = data.draw(st.lists(st.tuples(st.integers(0, 0xFFFF), values), max_size=min(room, 10)))
    assume_time_ok = start + timedelta(minutes=minutes * len(rows)) < datetime(2136, 1, 1, tzinfo=UTC)
    if not assume_time_ok:
        return
    intervals = [
        messages.ThreePhaseInterval(start + timedelta(minutes=minutes * k), status, v)
        for k, (status, v) in enumerate(rows)
    ]
    block = messages.ThreePhaseBlock(
        data.draw(st.integers(0, 127)), True, 1, False, start, minutes, ids, intervals
    )
    assert messages.parse_three_phase_intervals(messages.three_phase_intervals_response(block)) == block


@settings(max_examples=200, deadline=None)
@given(moments, moments, st.sampled_from([0, 1, 255]))
def test_log_requests_round_trip(start, end, profile):
    request = messages.parse_three_phase_intervals_request(
        messages.three_phase_intervals_request(start, end, profile)
    )
    assert (request.start, request.end, request.profile) == (start, end, profile)
    assert messages.parse_profile_log_request(messages.profile_log_request(2, start)) == (2, start)
