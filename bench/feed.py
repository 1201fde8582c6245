"""Push the fixture ladder to a running packager over HTTP, as an encoder would.

The bytes are exactly what `serve --demo` feeds itself (packager.demo.DemoFeed: tfdt shifted by
whole loops, a playlist with EXT-X-PROGRAM-DATE-TIME before each segment); here they go out as
`PUT /ingest/{stream}/{rendition}/{file}` instead of an in-process call, each with the
server's ingest key (`Authorization: Bearer`). `fill` places segments in the past, so a long
DVR fills in seconds; `live` pushes one segment per rendition at each segment's end in
wall-clock time, as a live encoder does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from bench.servers import Packager
from packager.demo import DemoFeed, RecordedRendition


@dataclass
class Pushed:
    k: int
    start: float
    due: float  # when a live encoder would send it: the segment's end
    done: float  # when the last rendition's PUTs were answered
    errors: list[str]


class HttpFeed:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        server: Packager,
        stream_id: str,
        ladder: list[RecordedRendition],
    ) -> None:
        self.session = session
        self.base = server.base
        self.headers = {"Authorization": f"Bearer {server.ingest_key}"}
        self.stream_id = stream_id
        self.feed = DemoFeed(None, ladder, time.time, stream_id)
        self.segment_seconds = self.feed.loop_seconds / len(self.feed.durations)
        self.bytes_pushed = 0

    async def _put(self, rendition: str, name: str, body: bytes) -> str | None:
        url = f"{self.base}/ingest/{self.stream_id}/{rendition}/{name}"
        try:
            async with self.session.put(url, data=body, headers=self.headers) as resp:
                answer = await resp.read()
                if resp.status >= 300:
                    return f"PUT {rendition}/{name}: {resp.status} {answer[:200]!r}"
        except aiohttp.ClientError as exc:
            return f"PUT {rendition}/{name}: {exc!r}"
        self.bytes_pushed += len(body)
        return None

    async def push(self, k: int, start: float) -> list[str]:
        """Segment `k` of every rendition (init first time), each rendition's files in order."""
        by_rendition: dict[str, list[tuple[str, bytes]]] = {}
        for rendition, name, body in self.feed.files(k, start):
            by_rendition.setdefault(rendition, []).append((name, body))

        async def one(rendition: str, files: list[tuple[str, bytes]]) -> list[str]:
            errors = []
            for name, body in files:
                if (err := await self._put(rendition, name, body)) is not None:
                    errors.append(err)
            return errors

        results = await asyncio.gather(*(one(r, f) for r, f in by_rendition.items()))
        return [e for errs in results for e in errs]

    async def fill(self, seconds: float) -> tuple[float, int, list[str]]:
        """Push `seconds` of ladder that ended by now; returns (first start, count, errors)."""
        count = max(1, round(seconds / self.segment_seconds))
        origin = time.time() - count * self.segment_seconds
        errors: list[str] = []
        for k in range(count):
            errors += await self.push(k, self.feed.segment_start(k, origin))
        return origin, count, errors

    async def live(self, seconds: float) -> tuple[float, list[Pushed]]:
        """Real time: segment k covers [t0 + k*d, t0 + (k+1)*d) and is pushed at its end."""
        count = max(1, round(seconds / self.segment_seconds))
        origin = time.time()
        pushed: list[Pushed] = []
        for k in range(count):
            start = self.feed.segment_start(k, origin)
            due = start + self.feed.durations[k % len(self.feed.durations)]
            await asyncio.sleep(max(0.0, due - time.time()))
            errors = await self.push(k, start)
            pushed.append(Pushed(k, start, due, time.time(), errors))
        return origin, pushed
