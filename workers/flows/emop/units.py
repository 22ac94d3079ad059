"""Units on the wire and in Python: money, energy, time.

* Money travels as a count of 0.00001 GBP (1/1000 penny). In Python it is a
  ``Decimal`` of GBP; encoding never rounds: a value with more than five
  decimals, a negative one where the wire is unsigned, or one too large for
  four bytes is refused (``BadPayload``).
* Timestamps are seconds since 2000-01-01T00:00:00 ("epoch 2000"). In Python
  they are aware UTC datetimes. Meters with the daylight-savings correction
  flag read tariff activation times as UK wall-clock time: ``to_meter_local``
  and ``from_meter_local`` convert for them.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from flows.emop.errors import BadPayload

MONEY_SCALE = 100_000
EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)
EPOCH_2000_UNIX = 946_684_800
UK = ZoneInfo("Europe/London")

U32_MAX = 0xFFFF_FFFF
S32_MIN, S32_MAX = -(2**31), 2**31 - 1


def money_from_raw(raw: int) -> Decimal:
    """0.00001 GBP units -> GBP (exact; written as simt-emlite writes it, e.g. 69750 -> 0.6975)."""
    return Decimal(raw) / MONEY_SCALE


def money_to_raw(amount, signed: bool = False) -> int:
    """GBP (Decimal, int or str; never float) -> 0.00001 GBP units, refusing anything inexact."""
    if isinstance(amount, float):
        raise BadPayload("money must be a Decimal, an int or a string, never a float")
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError, ValueError):
        raise BadPayload(f"{amount!r} is not an amount of money") from None
    if not value.is_finite():
        raise BadPayload(f"{amount!r} is not an amount of money")
    scaled = value.scaleb(5)
    if scaled != scaled.to_integral_value():
        raise BadPayload(f"{amount} GBP has more than 5 decimal places")
    raw = int(scaled)
    low, high = (S32_MIN, S32_MAX) if signed else (0, U32_MAX)
    if not low <= raw <= high:
        raise BadPayload(f"{amount} GBP is outside the range the meter can hold")
    return raw


def epoch2000_to_datetime(seconds: int) -> datetime:
    return EPOCH_2000 + timedelta(seconds=seconds)


def datetime_to_epoch2000(moment: datetime) -> int:
    """An aware datetime -> whole seconds since 2000 UTC (fractions are dropped)."""
    if moment.tzinfo is None:
        raise BadPayload("a timestamp for the meter must be timezone-aware")
    seconds = int((moment - EPOCH_2000).total_seconds() // 1)
    if not 0 <= seconds <= U32_MAX:
        raise BadPayload(f"{moment.isoformat()} is outside the meter's time range")
    return seconds


def to_meter_local(moment: datetime) -> datetime:
    """The UK wall-clock time of ``moment``, labelled UTC: what a DST-correcting meter expects."""
    if moment.tzinfo is None:
        raise BadPayload("a timestamp for the meter must be timezone-aware")
    return moment.astimezone(UK).replace(tzinfo=UTC)


def from_meter_local(wall_clock: datetime) -> datetime:
    """Inverse of ``to_meter_local``: a UK wall-clock time labelled UTC -> the real UTC instant."""
    return wall_clock.replace(tzinfo=UK).astimezone(UTC)
