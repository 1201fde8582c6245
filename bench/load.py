"""Closed-loop HTTP load from a separate process: wrk when installed, else this file.

`run_load` keeps `concurrency` keep-alive connections busy for `duration` seconds, each
GETting the next path of a list in turn, and returns requests/s, bytes/s, latency percentiles
and errors (socket errors, timeouts, and any status >= 400).

wrk (Debian's `wrk`) is the default: it is C and costs the 2-core machine least. Without it
the same measurement runs as `python bench/load.py ...` (aiohttp client, uvloop), also in its
own process; it is slower, so it is noted in the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MARKER = "BENCH_JSON "

# One script for every run: paths from a file (named by an env var), a per-thread cursor
# starting at a different place, and a JSON summary of wrk's own counters.
WRK_SCRIPT = r"""
local paths = {}
local file = os.getenv("BENCH_PATHS")
if file then
  for line in io.lines(file) do
    if #line > 0 then paths[#paths + 1] = line end
  end
end
local cursor = 0
local thread_no = 0
setup = function(thread)
  thread:set("start", thread_no * 7919)
  thread_no = thread_no + 1
end
init = function(args)
  cursor = (start or 0) % math.max(#paths, 1)
end
if #paths > 1 then
  request = function()
    cursor = cursor % #paths + 1
    return wrk.format("GET", paths[cursor])
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d,\"connect\":%d,\"read\":%d," ..
    "\"write\":%d,\"status\":%d,\"timeout\":%d,\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d," ..
    "\"max_us\":%d,\"mean_us\":%f}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


@dataclass
class LoadResult:
    tool: str
    concurrency: int
    requests: int
    seconds: float
    bytes: int
    errors: int
    p50: float  # seconds
    p90: float
    p99: float
    max: float
    detail: str = ""
    # Connections the kernel dropped because the server's listen queue was full (a client
    # then retries its SYN after 1 s, then 3 s...): /proc/net/netstat, all of loopback.
    listen_drops: int | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mbps(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def listen_drops() -> int | None:
    """TcpExt ListenOverflows of this network namespace, or None where /proc does not say."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            value = table.get("ListenOverflows")
            return int(value) if value is not None else None
    return None


async def run_load(
    base: str,
    paths: list[str],
    concurrency: int,
    duration: float,
    *,
    threads: int = 1,
    timeout: float = 30.0,
    use_wrk: bool = True,
) -> LoadResult:
    """Load `base` + paths[i] for `duration` seconds with `concurrency` connections."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        path_file = Path(tmp) / "paths.txt"
        path_file.write_text("\n".join(paths) + "\n")
        wrk = wrk_binary() if use_wrk else None
        if wrk is not None:
            script = Path(tmp) / "bench.lua"
            script.write_text(WRK_SCRIPT)
            threads = max(1, min(threads, concurrency))
            cmd = [
                wrk,
                f"-t{threads}",
                f"-c{concurrency}",
                f"-d{max(1, round(duration))}s",
                f"--timeout={timeout:g}s",
                "-s",
                str(script),
                base + paths[0],
            ]
            tool = f"wrk -t{threads}"
        else:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--base",
                base,
                "--paths",
                str(path_file),
                "--concurrency",
                str(concurrency),
                "--duration",
                str(duration),
                "--timeout",
                str(timeout),
            ]
            tool = "aiohttp client"
        drops_before = listen_drops()
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "BENCH_PATHS": str(path_file)},
        )
        out, err = await proc.communicate()
        drops_after = listen_drops()
    text = out.decode(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(
            f"{cmd[0]} gave no summary (exit {proc.returncode}):\n{text}\n{err.decode()}"
        )
    d = json.loads(line[len(MARKER) :])
    errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    detail = ", ".join(
        f"{k} {d[k]}" for k in ("connect", "read", "write", "status", "timeout") if d[k]
    )
    return LoadResult(
        tool=tool,
        concurrency=concurrency,
        requests=d["requests"],
        seconds=d["duration_us"] / 1e6,
        bytes=d["bytes"],
        errors=errors,
        p50=d["p50_us"] / 1e6,
        p90=d["p90_us"] / 1e6,
        p99=d["p99_us"] / 1e6,
        max=d["max_us"] / 1e6,
        detail=detail,
        listen_drops=(
            drops_after - drops_before
            if drops_before is not None and drops_after is not None
            else None
        ),
    )


# ---- the fallback load generator, run as its own process ---------------------------------


async def _client(args: argparse.Namespace) -> dict[str, float | int]:
    import aiohttp

    paths = [p for p in Path(args.paths).read_text().splitlines() if p]
    latencies: list[float] = []
    counts = {"bytes": 0, "connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=args.timeout)
    started = time.perf_counter()
    stop_at = started + args.duration

    async def worker(n: int, session: aiohttp.ClientSession) -> None:
        cursor = n * 7919
        while time.perf_counter() < stop_at:
            cursor = (cursor + 1) % len(paths)
            t0 = time.perf_counter()
            try:
                async with session.get(args.base + paths[cursor]) as resp:
                    size = 0
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        size += len(chunk)
                    if resp.status >= 400:
                        counts["status"] += 1
                counts["bytes"] += size
                latencies.append(time.perf_counter() - t0)
            except TimeoutError:
                counts["timeout"] += 1
            except aiohttp.ClientConnectorError:
                counts["connect"] += 1
            except aiohttp.ClientError:
                counts["read"] += 1

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        await asyncio.gather(*(worker(n, session) for n in range(args.concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> int:
        if not latencies:
            return 0
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6)

    return {
        "requests": len(latencies),
        "duration_us": round(elapsed * 1e6),
        **counts,
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "max_us": round(latencies[-1] * 1e6) if latencies else 0,
        "mean_us": sum(latencies) / len(latencies) * 1e6 if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="closed-loop GET load (wrk's stand-in)")
    parser.add_argument("--base", required=True)
    parser.add_argument("--paths", required=True, help="file with one path a line")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_client(args))
    print(MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
