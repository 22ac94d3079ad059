"""A plausible, deterministic household load profile per meter.

Energy per half hour is a function of (meter seed, half-hour index) only, so a
meter's history can be recomputed at any time and survives restarts. Element A
follows a UK household day (night base, morning and evening peaks); element B
(twin-element meters) a night-heavy heating circuit; meters with solar export
at midday. Values are integers in mWh per half hour.
"""

import hashlib
import math
from hashlib import blake2b

# average watts by UTC hour for a typical household (element A)
HOUSEHOLD_W = [250, 230, 220, 220, 230, 260, 400, 850, 900, 600, 450, 420,
               460, 430, 420, 480, 700, 1200, 1400, 1300, 1100, 800, 600, 400]  # fmt: skip
HEATING_W = [1800, 1800, 1700, 1700, 1600, 1500, 1200, 300, 150, 150, 150, 150,
             150, 150, 150, 150, 200, 300, 300, 300, 250, 200, 600, 1500]  # fmt: skip
HALF_HOUR = 1800


def unit_noise(seed: int, index: int, salt: str) -> float:
    """A reproducible number in [0, 1) for (seed, index, salt)."""
    digest = hashlib.blake2b(f"{seed}:{index}:{salt}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32


class LoadProfile:
    def __init__(self, seed: int, scale: float = 1.0, solar_kw: float = 0.0, twin: bool = True):
        self.seed = seed
        self.scale = scale
        self.solar_kw = solar_kw
        self.twin = twin
        self._prefix = f"{seed}:".encode()  # unit_noise's input starts so; the rest is the index and salt
        self._last: tuple[int, tuple] | None = None  # the last half hour asked for (a meter asks it on every request)

    def _noise(self, hh: int, salt: bytes) -> float:
        """unit_noise(self.seed, hh, salt), without formatting the seed every time (a year of history is
        hundreds of thousands of these)."""
        return int.from_bytes(blake2b(self._prefix + str(hh).encode() + salt, digest_size=4).digest(), "big") / 2**32

    def half_hour(self, hh: int) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        """mWh in half hour ``hh`` for (A, B): import/export active, import/export reactive."""
        if self._last is not None and self._last[0] == hh:
            return self._last[1]
        used = self._half_hour(hh)
        self._last = (hh, used)
        return used

    def _half_hour(self, hh: int) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        hour = (hh % 48) // 2
        a_w = HOUSEHOLD_W[hour] * self.scale * (0.7 + 0.6 * self._noise(hh, b":a"))
        export_w = 0.0
        if self.solar_kw and 6 <= hour < 20:
            sun = math.sin(math.pi * (hour + 0.5 - 6) / 14)
            export_w = self.solar_kw * 1000 * sun * 0.6 * (0.4 + 0.6 * self._noise(hh, b":s"))
        a = self._element(a_w, export_w)
        if not self.twin:
            return a, (0, 0, 0, 0)
        b_w = HEATING_W[hour] * self.scale * (0.6 + 0.8 * self._noise(hh, b":b"))
        return a, self._element(b_w, 0.0)

    @staticmethod
    def _element(import_w: float, export_w: float) -> tuple[int, int, int, int]:
        mwh = 500  # one watt for half an hour
        return (
            int(import_w * mwh),
            int(export_w * mwh),
            int(import_w * 0.1 * mwh),
            int(import_w * 0.02 * mwh),
        )

    def power_w(self, hh: int, element: str) -> int:
        a, b = self.half_hour(hh)
        return (a if element == "A" else b)[0] // 500

    def voltage_decivolts(self, index: int) -> int:
        return 2400 + int((self._noise(index, b":v") - 0.5) * 160)
