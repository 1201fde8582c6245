"""Where a run happens: its temp dir, the ladder it pushes, and every process it starts.

Every packager and nginx of a run is started here, so `close` stops them all whatever failed;
a packager with a DVR comes back as a `Dvr`, already filled over the ingest API.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.api import Api
from bench.feed import HttpFeed
from bench.report import log, mb
from bench.servers import Nginx, Packager
from packager.demo import RecordedRendition

# Every server's DVR is this much longer than what is pushed, so nothing is evicted while the
# bench runs; the memory table reports the bytes really held either way.
DVR_SLACK = 1800.0


@dataclass
class Dvr:
    """A running packager whose stream `bench` holds `seconds` of the ladder."""

    server: Packager
    api: Api
    origin: float  # unix time the first pushed segment starts
    seconds: float
    rss_empty: int  # VmRSS before anything was pushed

    @property
    def label(self) -> str:
        return f"{self.seconds / 60:g} min DVR"


def bytes_per_second(ladder: list[RecordedRendition]) -> float:
    """All renditions together; the fixture's segments are 2 s each."""
    seg_bytes = sum(len(s) for r in ladder for s in r.segments)
    return seg_bytes / (2.0 * len(ladder[0].segments))


class Lab:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        ladder: list[RecordedRendition],
        *,
        log_level: str,
        keep: bool,
    ) -> None:
        self.session = session
        self.ladder = ladder
        self.bytes_per_second = bytes_per_second(ladder)
        self.log_level = log_level  # info turns the packager's access log on
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="packager-bench-"))
        os.chmod(self.tmp, 0o755)  # nginx workers read the static root
        self.servers: list[Packager] = []
        self.nginx: Nginx | None = None

    def budget(self, seconds: float) -> int:
        """Room for the DVR and then some: the bench measures speed, not the 507 path."""
        return int(max(2 << 30, 3 * self.bytes_per_second * (seconds + DVR_SLACK)))

    def packager(self, name: str, dvr_seconds: float) -> Packager:
        server = Packager(
            self.tmp / name,
            dvr_duration=dvr_seconds + DVR_SLACK,
            memory_budget=self.budget(dvr_seconds),
            log_level=self.log_level,
        )
        self.servers.append(server)  # before start: one that never answers is stopped too
        return server.start()

    async def dvr(self, name: str, seconds: float) -> Dvr:
        """A new packager with `seconds` of the ladder in stream `bench`, ending now."""
        server = self.packager(name, seconds)
        rss_empty = server.memory()["VmRSS"]
        origin = await self.fill(server, "bench", seconds)
        return Dvr(server, Api(self.session, server.base), origin, seconds, rss_empty)

    def feed(
        self, server: Packager, stream: str, session: aiohttp.ClientSession | None = None
    ) -> HttpFeed:
        """An encoder pushing the ladder to `server`, with its ingest key."""
        return HttpFeed(session or self.session, server, stream, self.ladder)

    async def fill(self, server: Packager, stream: str, seconds: float) -> float:
        """Push `seconds` of the ladder that ended by now; returns when the first one starts."""
        feed = self.feed(server, stream)
        t0 = time.perf_counter()
        origin, count, errors = await feed.fill(seconds)
        if errors:
            raise RuntimeError(f"ingest refused segments while filling: {errors[:3]}")
        took = time.perf_counter() - t0
        n = len(self.ladder)
        log(
            f"{stream}: {count} segments x {n} renditions ({mb(feed.bytes_pushed)}) pushed in "
            f"{took:.1f} s ({count * n / took:.0f} segments/s)"
        )
        return origin

    def start_nginx(self, binary: str, root: Path) -> Nginx:
        self.nginx = Nginx(binary, root, self.tmp / "nginx")
        return self.nginx.start()

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        if self.nginx is not None:
            self.nginx.stop()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
