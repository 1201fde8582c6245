"""The machine a run measured: the first table of the report, so figures from two machines are
never compared without seeing that they are."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import imageio_ffmpeg

from bench.load import wrk_binary
from bench.servers import nginx_binary, version_of


def _pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine() -> list[tuple[str, str]]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem_kb = int(line.split()[1])
    os_name = platform.platform()
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    uvloop = _pkg("uvloop")
    nginx = nginx_binary()
    wrk = wrk_binary()
    ffmpeg = version_of([imageio_ffmpeg.get_ffmpeg_exe(), "-version"]) or "?"
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} cores"),
        ("RAM", f"{mem_kb / 1024 / 1024:.1f} GiB"),
        ("OS, kernel", f"{os_name}, Linux {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("aiohttp", _pkg("aiohttp")),
        (
            "uvloop",
            f"{uvloop}: on (packager serve installs it)" if uvloop != "not installed" else "off",
        ),
        ("orjson", _pkg("orjson")),
        ("nginx", (version_of([nginx, "-v"]) or "?") if nginx else "not installed"),
        ("wrk", (version_of([wrk, "-v"]) or "?").split(" [")[0] if wrk else "not installed"),
        ("ffmpeg", " ".join(ffmpeg.split()[:3])),
    ]
