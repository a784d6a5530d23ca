"""Time sources. Expiry and deadlines use a monotonic clock (never the wall
clock, and never a timestamp written by another process); the wall clock
only stamps acquireTime and renewTime, which are informational."""

from __future__ import annotations

import datetime as _dt
import time


class Clock:
    """The real clocks. ``now()`` is monotonic seconds; ``wall()`` an aware
    UTC datetime; ``real(d)`` converts d seconds of this clock into seconds
    of real time to wait (the identity here)."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> _dt.datetime:
        return _dt.datetime.now(_dt.timezone.utc)

    def real(self, d: float) -> float:
        return d


class RateClock(Clock):
    """A clock that runs at ``rate`` times real time (0.9: 10% slow), for
    fault tests of the clock-rate bound. Only the monotonic clock is scaled."""

    def __init__(self, rate: float):
        if rate <= 0:
            raise ValueError(f"clock rate {rate} must be positive")
        self.rate = rate
        self._base = time.monotonic()

    def now(self) -> float:
        return self._base + (time.monotonic() - self._base) * self.rate

    def real(self, d: float) -> float:
        return d / self.rate
