"""Wall-clock time as a value the app is given, so tests can drive it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float:
        """Unix seconds now."""
        ...


def system_clock() -> float:
    return time.time()


class ManualClock:
    """A clock that moves only when told: for tests and for replaying media."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
