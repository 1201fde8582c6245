"""Every setting in one dataclass; each is a CLI flag and a `PACKAGER_<NAME>` variable."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """`512M`, `2G`, `1.5GiB` or plain bytes."""
    m = _SIZE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a size: {text!r} (use e.g. 512M, 2G)")
    return int(float(m[1]) * _UNITS[m[2].lower()])


def default_memory_budget() -> int:
    """A quarter of physical memory, at least 256 MiB: room for the OS, Python and requests."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 4 << 30
    return max(256 << 20, total // 4)


STORE_SCHEMES = ("redis://", "rediss://", "redis+cluster://", "rediss+cluster://")


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    api_keys: tuple[str, ...] = ()
    ingest_key: str | None = None  # the operator's push key: any stream, creates streams
    anonymous_ingest: bool = False  # pushes without a key create and feed streams without one
    dvr_duration: float = 3600.0
    memory_budget: int = field(default_factory=default_memory_budget)
    data_dir: Path = Path("data")
    public_base_url: str | None = None  # None: links use the request's own scheme and host
    demo: bool = False
    demo_dir: Path | None = None
    max_segment_bytes: int = 64 << 20
    max_api_body: int = 64 << 10
    playback_secret: str | None = None  # HMAC key of signed links for private clips
    max_concurrent_remuxes: int = 4  # MP4 layouts built at once; more wait as 503 + Retry-After
    completion_grace: float = 10.0
    log_level: str = "info"
    # nginx's client_body_timeout and keepalive_timeout. aiohttp starts the keep-alive timer
    # when a connection opens, so it also bounds how long a client may take to send a whole
    # request's headers (half-sent requests hold file descriptors).
    body_timeout: float = 60.0  # seconds with no byte of a request body: 408, dropped
    keepalive_timeout: float = 75.0
    event_loop: str = "uvloop"
    # `memory` (this process alone) or a Redis URL shared by every process: `redis://host:6379/0`,
    # `redis+cluster://host:port` for a Redis Cluster; `?prefix=` names the keys (default pk).
    store: str = "memory"
    cache_size: int = 256 << 20  # bytes of immutable things each process keeps from the store
    workers: int = 1  # processes serving one port (more than one needs a Redis store)
    worker: int = 0  # which of them this process is (0 replays --demo)
