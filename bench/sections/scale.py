"""6. Scale-out: playlists and segments from 1 worker (memory store), 1 worker (Redis) and
2 workers (Redis, one port), against nginx with 1 and 2 workers as the gain two processes can
give on these cores; MP4 first byte from Redis vs memory; each process's RSS and Redis'
used_memory against the bytes held.

Servers of its own: a redis-server (no persistence), a memory packager and two Redis ones on
the same Redis (the one-worker one fills it; the two-worker one serves the same clips).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import redis

from bench.api import Api, ClipLinks, segment_names
from bench.context import Context, Section
from bench.lab import Dvr
from bench.load import LoadResult
from bench.report import mb, ms, ratio, table
from bench.servers import Nginx, Packager, free_port, memory_of, nginx_binary
from bench.timing import fetch, median

ROUNDS = 3  # runs of each load, in turn


class RedisProcess:
    """A redis-server for the bench: no persistence, stopped at the end."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(workdir),
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)


def _row(label: str, what: str, result: LoadResult) -> list[str]:
    return [
        label,
        what,
        f"{result.rps:,.0f}",
        f"{result.mbps:,.0f}",
        ms(result.p50),
        ms(result.p99),
        str(result.errors),
    ]


def _worker_pids(parent: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmdline:
            out.append(int(entry.name))
    return sorted(out)


class ScaleOut(Section):
    name = "scale"

    def on_main_server(self, ctx: Context) -> bool:
        return False

    async def run(self, ctx: Context) -> None:
        if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
            ctx.report.add("6. Scale-out", "Not run: redis-server is not installed.\n")
            return
        redis_server = RedisProcess(ctx.lab.tmp / "redis")
        try:
            await self._measure(ctx, redis_server)
        finally:
            redis_server.stop()

    async def _measure(self, ctx: Context, store: RedisProcess) -> None:
        lab, settings = ctx.lab, ctx.settings
        seconds = 40.0 if settings.quick else 180.0
        clip_seconds = seconds / 3
        memory = await lab.dvr("scale-memory", seconds)
        one = await self._redis_dvr(ctx, "scale-redis-1", seconds, store.url, 1)
        two_server = self._packager(ctx, "scale-redis-2", seconds, store.url, 2)
        two = Dvr(two_server, Api(lab.session, two_server.base), one.origin, seconds, 0)
        start = one.origin + seconds / 3
        clips = {
            "memory": await memory.api.clip("bench", start, clip_seconds),
            "redis": await one.api.clip("bench", start, clip_seconds),
        }
        targets: list[tuple[str, Dvr, ClipLinks]] = [
            ("1 worker, memory store", memory, clips["memory"]),
            ("1 worker, Redis store", one, clips["redis"]),
            ("2 workers, Redis store", two, clips["redis"]),
        ]
        conc = max(settings.concurrency)
        jobs: list[tuple[str, Packager, str, list[str]]] = []
        for label, dvr, clip in targets:
            low = clip.renditions[0]
            playlist = clip.media(low)
            segments = [clip.file(n) for n in segment_names(await dvr.api.get(playlist))]
            jobs.append((label, dvr.server, "media playlist", [playlist]))
            jobs.append((label, dvr.server, "segments", segments))
        # The same segments from a packager whose local cache holds half of them: clients
        # cycle through them in turn, the worst order for an LRU, so every read goes to Redis.
        working_set = sum([len(await one.api.get(path)) for path in jobs[-1][3]])
        small = self._packager(
            ctx, "scale-redis-small", seconds, store.url, 1, cache=working_set // 2
        )
        small_label = f"1 worker, Redis store, cache {mb(working_set // 2)} (half the segments)"
        jobs.append((small_label, small, "segments", jobs[-1][3]))
        # Every run in turn, ROUNDS times over; the median run of each is reported. One run
        # of 200 clients at segments here can come out at half or twice another's rate.
        runs: dict[tuple[str, str], list[LoadResult]] = {}
        for _ in range(1 if settings.quick else ROUNDS):
            for label, server, what, paths in jobs:
                runs.setdefault((label, what), []).append(await ctx.load(server, paths, conc))
        rows: list[list[str]] = []
        rates: dict[tuple[str, str], float] = {}
        for (label, what), results in runs.items():
            result = sorted(results, key=lambda r: r.rps)[len(results) // 2]
            rates[(label, what)] = result.rps
            rows.append(_row(label, what, result))
        binary = nginx_binary()
        if binary is not None and ctx.static.nginx is not None:
            static = ctx.clips.clip60
            static_paths = {
                "media playlist": [static.media(static.renditions[0])],
                "segments": ctx.static.segment_paths,
            }
            for workers in ("1", "2"):
                nginx = Nginx(
                    binary, ctx.static.root, lab.tmp / f"nginx-scale-{workers}", workers=workers
                ).start()
                try:
                    for what, p in static_paths.items():
                        result = await ctx.load(nginx, p, conc)
                        label = f"nginx static, {workers} worker{'s' if workers == '2' else ''}"
                        rates[(label, what)] = result.rps
                        rows.append(_row(label, what, result))
                finally:
                    nginx.stop()
        gains = []
        for what in ("media playlist", "segments"):
            ours = ratio(
                rates[("2 workers, Redis store", what)], rates[("1 worker, Redis store", what)]
            )
            redis_cost = ratio(
                rates[("1 worker, Redis store", what)], rates[("1 worker, memory store", what)]
            )
            base = "-"
            if ("nginx static, 2 workers", what) in rates:
                base = ratio(
                    rates[("nginx static, 2 workers", what)],
                    rates[("nginx static, 1 worker", what)],
                )
            gains.append([what, redis_cost, ours, base])
        cold_cost = ratio(
            rates[(small_label, "segments")], rates[("1 worker, memory store", "segments")]
        )
        ttfb_rows = []
        ttfb_clips = 4 * settings.repeat
        for label, dvr in (("memory", memory), ("Redis", one)):
            cold: list[float] = []
            warm: list[float] = []
            for _ in range(ttfb_clips):
                path = (await dvr.api.clip("bench", start, clip_seconds)).mp4()
                for times in (cold, warm):  # hang up at the first byte, as in section 3b
                    got = await asyncio.to_thread(fetch, dvr.server.port, path, None, True)
                    times.append(got.ttfb)
            ttfb_rows.append([label, ms(median(cold)), ms(median(warm))])
        stats = await one.api.stats()
        held = stats["memory"]["held_bytes"]
        used = store.used_memory()
        mem_rows = [
            ["1 worker, memory store", "-", mb(memory.server.memory()["VmRSS"]), "-"],
            ["1 worker, Redis store", "-", mb(one.server.memory()["VmRSS"]), "-"],
        ]
        for pid in _worker_pids(two_server.pid):
            mem_rows.append(["2 workers, Redis store", str(pid), mb(memory_of(pid)["VmRSS"]), "-"])
        mem_rows.append(["redis-server used_memory", "-", mb(used), f"{used / held:.2f}"])
        body = (
            f"{clip_seconds:.0f} s clips of a {seconds:.0f} s DVR, {conc} clients, "
            f"{settings.duration:g} s per run; the lowest rendition's media playlist, and its "
            "segments in turn. The two Redis packagers share one Redis (and so one clip).\n\n"
            + table(
                ["server", "what", "req/s", "MB/s", "p50", "p99", "errors"],
                rows,
            )
            + "\n"
            + table(
                [
                    "requests",
                    "Redis / memory (1 worker)",
                    "2 workers / 1 (Redis)",
                    "nginx 2 workers / 1",
                ],
                gains,
            )
            + f"\nSegments with a working set twice the local cache, Redis / memory: {cold_cost}.\n"
            + f"\nMP4 time to first byte, {clip_seconds:.0f} s clip, highest rendition, median "
            f"over {ttfb_clips} new clips (first GET: right after the cut answered, which waits "
            "for the layout it starts, joined from the prepared tables the store keeps; later "
            "GET: the same clip again; the client hangs up at the first byte):\n\n"
            + table(["store", "TTFB first GET", "TTFB later GET"], ttfb_rows)
            + f"\nMemory: {mb(held)} held in the store (DVR and clips); each process's RSS "
            "(the Redis ones hold a local cache of at most --cache-size), and Redis' "
            "used_memory against the bytes held:\n\n"
            + table(["process", "pid", "RSS / used", "used / held"], mem_rows)
        )
        ctx.report.add("6. Scale-out: Redis store and worker processes", body)

    def _packager(
        self, ctx: Context, name: str, seconds: float, url: str, workers: int, cache: int = 0
    ) -> Packager:
        lab = ctx.lab
        extra = ("--store", url) + (("--workers", str(workers)) if workers > 1 else ())
        if cache:
            extra += ("--cache-size", str(cache))
        server = Packager(
            lab.tmp / name,
            dvr_duration=seconds + 1800,
            memory_budget=lab.budget(seconds),
            log_level=lab.log_level,
            extra=extra,
        )
        lab.servers.append(server)
        return server.start()

    async def _redis_dvr(
        self, ctx: Context, name: str, seconds: float, url: str, workers: int
    ) -> Dvr:
        server = self._packager(ctx, name, seconds, url, workers)
        rss_empty = server.memory()["VmRSS"]
        origin = await ctx.lab.fill(server, "bench", seconds)
        return Dvr(server, Api(ctx.lab.session, server.base), origin, seconds, rss_empty)
