"""The clock's work: clips complete at their deadline and expire at their expiration, the DVR
rolls on with no ingest. One loop sleeps until the store's next deadline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from packager.store.base import Store, Timer, TimerKind
from packager.store.model import Clip

log = logging.getLogger(__name__)

HOUSEKEEPING_PERIOD = 1.0  # the DVR rolls at least this often even with no ingest


@dataclass
class Timers:
    store: Store
    on_complete: list[Callable[[Clip], None]] = field(default_factory=list)
    on_expire: list[Callable[[Clip], None]] = field(default_factory=list)

    async def tick(self) -> list[Timer]:
        """Fire what is due now; returns it (tests with a manual clock call this)."""
        fired = await self.store.fire_due()
        for timer in fired:
            hooks = self.on_expire if timer.kind is TimerKind.EXPIRE else self.on_complete
            for hook in hooks:
                hook(timer.clip)
        await self.store.sweep()
        return fired

    async def run(self) -> None:
        """Until cancelled, whatever a tick meets: a store that cannot be reached (a Redis
        restarting) is waited out, and the loop goes on when it is back."""
        while True:
            try:
                deadline = await self.store.next_deadline()
                now = self.store.clock()
                delay = HOUSEKEEPING_PERIOD if deadline is None else deadline - now
                await asyncio.sleep(min(max(delay, 0.0), HOUSEKEEPING_PERIOD))
                await self.tick()
            except self.store.unavailable as exc:
                log.warning("timers: the store cannot be reached (%r); retrying", exc)
                await asyncio.sleep(HOUSEKEEPING_PERIOD)
            except Exception:
                log.exception("timer tick failed")
                await asyncio.sleep(HOUSEKEEPING_PERIOD)
