"""Timing one HTTP download the way a player waits for it: first byte, then the last.

Blocking (http.client): the sections run these in a thread, so the event loop's own work is
not in the figures.
"""

from __future__ import annotations

import http.client
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

READ = 1 << 20  # read buffer: big enough that the client is not what is measured


@dataclass
class Fetch:
    ttfb: float  # request sent -> status line and headers read
    total: float  # request sent -> last byte read
    size: int


def fetch(port: int, path: str, headers: dict[str, str] | None = None) -> Fetch:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    buf = bytearray(READ)
    try:
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        ttfb = time.perf_counter() - t0
        assert resp.status in (200, 206), (resp.status, resp.read()[:200])
        size = 0
        while n := resp.readinto(buf):
            size += n
        return Fetch(ttfb, time.perf_counter() - t0, size)
    finally:
        conn.close()


def median(values: list[float]) -> float:
    return statistics.median(values)


def download_to(port: int, path: str, target: Path) -> None:
    """The file as served, for nginx to serve the same bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        with target.open("wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    finally:
        conn.close()
