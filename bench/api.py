"""The packager's management API and playback links, as the sections use them.

`Api` speaks to one server with the bench's API key; `ClipLinks` turns a cut clip into the
paths a player would GET. Ingest is not here: bench/feed.py pushes media as an encoder does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.servers import API_KEY

AUTH = {"Authorization": f"apikey {API_KEY}"}


@dataclass
class ClipLinks:
    id: str
    stream: str
    renditions: list[str]
    duration: float

    def path(self, name: str) -> str:
        return f"/rec/{self.stream}/rec_{self.id}_{name}"

    def file(self, name: str) -> str:
        """A URI of one of its playlists (relative or not) as a path on the server."""
        return f"/rec/{self.stream}/{name.rsplit('/', 1)[-1]}"

    @property
    def master(self) -> str:
        return self.path("master.m3u8")

    def media(self, rendition: str) -> str:
        return self.path(f"{rendition}.m3u8")

    def mp4(self, rendition: str = "master") -> str:
        return self.path(f"{rendition}.mp4")


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def json(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.base + path, json=body, headers=AUTH) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 300:
                raise RuntimeError(f"{method} {path} -> {resp.status}: {data}")
            return data

    async def clip(
        self, stream: str, start: float, duration: float, expiration: float | None = None
    ) -> ClipLinks:
        body: dict[str, float] = {"start": start, "duration": duration}
        if expiration is not None:
            body["expiration"] = expiration
        c = await self.json("POST", f"/streams/{stream}/clip_recording", body)
        return ClipLinks(c["id"], stream, list(c["renditions"]), float(c["duration"]))

    async def get(self, path: str, headers: dict[str, str] | None = None) -> bytes:
        async with self.session.get(self.base + path, headers=headers) as resp:
            data = await resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"GET {path} -> {resp.status}: {data[:200]!r}")
            return data

    async def status(self, path: str, headers: dict[str, str] | None = None) -> int:
        async with self.session.get(self.base + path, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def stats(self) -> dict[str, Any]:
        s: dict[str, Any] = await self.json("GET", "/stats")
        return s


def segment_names(playlist: bytes) -> list[str]:
    return [
        line.strip()
        for line in playlist.decode().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def init_names(playlist: bytes) -> list[str]:
    out = []
    for line in playlist.decode().splitlines():
        if line.startswith("#EXT-X-MAP:"):
            out.append(line.split('URI="', 1)[1].split('"', 1)[0])
    return out
