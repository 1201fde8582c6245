"""Timing one HTTP download the way a player waits for it: first byte, then the last.

Blocking (plain sockets): the sections run these in a thread, so the event loop's own work is
not in the figures.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

READ = 1 << 20  # read buffer: big enough that the client is not what is measured


@dataclass
class Fetch:
    ttfb: float  # request sent -> first byte of the answer
    total: float  # request sent -> last byte read
    size: int  # body bytes


def fetch(
    port: int, path: str, headers: dict[str, str] | None = None, first_byte: bool = False
) -> Fetch:
    """One GET on its own connection, read with recv_into into one buffer. http.client was the
    slower end: its time to the headers grew with the body's length (0.34 ms for a 1.5 MB
    MP4, 0.74 ms for 520 MB, where curl's time_starttransfer said 0.40 and 0.49 ms).

    `first_byte`: hang up once the answer starts (`total` and `size` are then 0). A whole
    download streams its file through the CPU caches: a 520 MB one left the next request
    twice as slow (0.39 ms to its first byte, against 0.18 ms after a 1.5 MB one), which
    measures the download before, not the request."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    buf = bytearray(READ)
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        t0 = time.perf_counter()
        sock.sendall(request)
        n = sock.recv_into(buf)
        ttfb = time.perf_counter() - t0
        if first_byte:
            assert n, "connection closed before the answer"
            return Fetch(ttfb, 0.0, 0)
        head = bytes(buf[:n])
        while b"\r\n\r\n" not in head:
            n = sock.recv_into(buf)
            assert n, f"connection closed in the headers: {head[:200]!r}"
            head += buf[:n]
        header, _, body = head.partition(b"\r\n\r\n")
        status_line, *fields = header.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        assert status in (200, 206), (status_line, body[:200])
        length = next(
            int(v)
            for k, _, v in (f.partition(":") for f in fields)
            if k.lower() == "content-length"
        )
        size = len(body)
        while size < length:
            n = sock.recv_into(buf)
            assert n, f"connection closed after {size} of {length} bytes"
            size += n
        return Fetch(ttfb, time.perf_counter() - t0, size)


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
