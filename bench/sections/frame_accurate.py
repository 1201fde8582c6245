"""9. Frame-accurate clips on a 1080p ladder: from the POST to each rendition's first segment
playable (its partial GOP re-encoded by ffmpeg meanwhile), and the CPU a clip's re-encodes
cost per rendition.

The ladder is made here, in the run's temp dir, as fixtures/make_numbered.py makes its own: one
ffmpeg process, libx264 veryfast High with B-frames and a closed 2 s GOP, AAC, ffmpeg's HLS
muxer writing fMP4 (1080p at 4.5 Mb/s, 720p at 2.5, 360p at 0.8: what a live encoder sends, not
the committed fixture's 1 Mb/s 1080p). A packager of its own is filled with it over the ingest
API; each trial then cuts a 6.3 s frame-accurate clip starting mid-GOP (so its first and last
GOPs are re-encoded) and fetches, for every rendition at once as a player switching up would,
the media playlist, the first init and the first segment: the clock runs from the POST to that
segment's last byte. The trial ends when every re-encoded segment has been fetched; the
server's children CPU time (ffmpeg) over the trial, divided by the renditions, is the cost.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import ffmpeg
import imageio_ffmpeg

from bench.api import Api, init_names, segment_names
from bench.context import Context, Section
from bench.feed import HttpFeed
from bench.report import Target, log, ms, table
from packager.demo import load_ladder

LADDER = ((1920, 1080, 4500), (1280, 720, 2500), (640, 360, 800))  # width, height, kb/s
GOP = 60  # frames: 2 s at 30 fps, one segment
CLIP_SECONDS = 6.3
FIRST_LOWEST = 1.0  # targets: seconds from the POST to the first segment playable
FIRST_EVERY = 3.0
STREAM = "frames"


def make_ladder(out: Path, seconds: int) -> float:
    """A 1080p ladder of `seconds` (a multiple of 2) under `out`; returns how long it took."""
    out.mkdir(parents=True, exist_ok=True)
    video = ffmpeg.input(f"testsrc2=size=1920x1080:rate=30:duration={seconds}", f="lavfi")
    audio = ffmpeg.input(f"sine=frequency=440:sample_rate=48000:duration={seconds}", f="lavfi")
    split = video.filter_multi_output("split", len(LADDER))
    asplit = audio.filter("aformat", channel_layouts="stereo").filter_multi_output(
        "asplit", len(LADDER)
    )
    streams: list[Any] = []
    rates: dict[str, str] = {}
    for i, (w, h, kbps) in enumerate(LADDER):
        streams += [split[i].filter("scale", w, h), asplit[i]]
        rates |= {f"b:v:{i}": f"{kbps}k", f"maxrate:v:{i}": f"{kbps * 3 // 2}k"}
        rates[f"bufsize:v:{i}"] = f"{kbps * 2}k"
    cmd = ffmpeg.output(
        *streams,
        "%v/index.m3u8",
        **{
            "c:v": "libx264",
            "preset": "veryfast",
            "profile:v": "high",
            "pix_fmt": "yuv420p",
            "g": GOP,
            "keyint_min": GOP,
            "sc_threshold": 0,
            "flags": "+cgop",
            **rates,
            "c:a": "aac",
            "b:a": "128k",
            "ac": 2,
            "f": "hls",
            "hls_time": 2,
            "hls_segment_type": "fmp4",
            "hls_flags": "program_date_time",
            "hls_playlist_type": "event",
            "hls_list_size": 0,
            "var_stream_map": " ".join(f"v:{i},a:{i}" for i in range(len(LADDER))),
        },
    ).global_args("-hide_banner", "-nostdin", "-y", "-loglevel", "error")
    started = time.perf_counter()
    subprocess.run(ffmpeg.compile(cmd, cmd=imageio_ffmpeg.get_ffmpeg_exe()), check=True, cwd=out)
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(the process's own CPU seconds, its waited-for children's) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(fields[k]) for k in (11, 12, 13, 14))
    return (utime + stime) / tick, (cutime + cstime) / tick


async def fetch(api: Api, path: str, deadline: float) -> bytes:
    """GET until 200: a re-encode not ready in the server's wait answers 503 + Retry-After."""
    while True:
        async with api.session.get(api.base + path) as resp:
            body = await resp.read()
            if resp.status == 200:
                return body
            if resp.status != 503 or time.monotonic() > deadline:
                raise RuntimeError(f"GET {path} -> {resp.status}: {body[:200]!r}")
        await asyncio.sleep(0.05)


class FrameAccurate(Section):
    name = "frames"

    def on_main_server(self, ctx: Context) -> bool:
        return False  # a packager of its own, fed its own ladder

    async def run(self, ctx: Context) -> None:
        quick = ctx.settings.quick
        seconds = 8 if quick else 20
        folder = ctx.lab.tmp / "ladder1080"
        took = await asyncio.to_thread(make_ladder, folder, seconds)
        log(f"frames: made a {seconds} s 1080p ladder in {took:.1f} s")
        ladder = load_ladder(folder)
        server = ctx.lab.packager("frames", seconds * 4)
        feed = HttpFeed(ctx.lab.session, server, STREAM, ladder)
        origin, count, errors = await feed.fill(seconds * 2)
        if errors:
            raise RuntimeError(f"ingest refused: {errors[:3]}")
        api = Api(ctx.lab.session, server.base)
        trials = 2 if quick else 8
        rows, lowest, every, cost, own = [], [], [], [], []
        for i in range(trials):
            # Mid-GOP at both ends: 0.5 s + a few frames into a segment, 6.3 s long.
            start = origin + 2 * (1 + i % (count - 5)) + 0.5 + (7 * i % 40) / 30
            result = await self.trial(api, server.pid, start)
            lowest.append(result["firsts"][0])
            every.append(max(result["firsts"]))
            cost.append(result["ffmpeg"] / len(result["firsts"]))
            own.append(result["packager"])
            rows.append(
                [
                    str(i + 1),
                    *(ms(t) for t in result["firsts"]),
                    ms(result["all"]),
                    f"{result['ffmpeg'] / len(result['firsts']):.2f}",
                    f"{result['packager']:.2f}",
                ]
            )
        heights = [f"{h}p first segment" for _, h, _ in reversed(LADDER)]
        body = (
            f"A {seconds} s ladder made here ({', '.join(f'{h}p {k} kb/s' for _, h, k in LADDER)}"
            f"; {took:.0f} s to encode), pushed as {count} segments per rendition. Each trial: "
            f"POST a {CLIP_SECONDS} s frame-accurate clip starting mid-GOP, then for every "
            "rendition at once GET its media playlist, first init and first segment (a "
            "re-encoded partial GOP): time from the POST to that segment's last byte; *all "
            "pieces*: until every re-encoded segment (the tail's too) was fetched. CPU: the "
            "packager's children (ffmpeg) per clip per rendition, and the packager itself per "
            "clip, from /proc.\n\n"
            + table(
                [
                    "trial",
                    *heights,
                    "all pieces",
                    "ffmpeg CPU-s / rendition",
                    "packager CPU-s",
                ],
                rows,
            )
            + "\n"
            + table(
                ["", "median", "max"],
                [
                    [
                        "lowest rendition's first segment",
                        ms(statistics.median(lowest)),
                        ms(max(lowest)),
                    ],
                    [
                        "every rendition's first segment",
                        ms(statistics.median(every)),
                        ms(max(every)),
                    ],
                    [
                        "ffmpeg CPU-seconds per clip per rendition",
                        f"{statistics.median(cost):.2f}",
                        f"{max(cost):.2f}",
                    ],
                    [
                        "packager CPU-seconds per clip",
                        f"{statistics.median(own):.2f}",
                        f"{max(own):.2f}",
                    ],
                ],
            )
        )
        ctx.report.add("9. Frame-accurate clips: time to the first segment, CPU per clip", body)
        ctx.report.targets.append(
            Target(
                "frame-accurate HLS: lowest rendition's first segment after the POST (1080p ladder)",
                f"≤ {FIRST_LOWEST:g} s",
                f"median {ms(statistics.median(lowest))}, max {ms(max(lowest))}",
                max(lowest) <= FIRST_LOWEST,
            )
        )
        ctx.report.targets.append(
            Target(
                "frame-accurate HLS: every rendition's first segment after the POST",
                f"≤ {FIRST_EVERY:g} s",
                f"median {ms(statistics.median(every))}, max {ms(max(every))}",
                max(every) <= FIRST_EVERY,
            )
        )

    async def trial(self, api: Api, pid: int, start: float) -> dict[str, Any]:
        own_before, children_before = cpu_seconds(pid)
        began = time.monotonic()
        deadline = began + 60
        clip = await api.json(
            "POST",
            f"/streams/{STREAM}/clip_recording",
            {"start": start, "duration": CLIP_SECONDS, "frame_accurate": True},
        )
        base = f"/rec/{STREAM}/"

        async def first_segment(rendition: str) -> tuple[float, list[str]]:
            playlist = await fetch(api, f"{base}rec_{clip['id']}_{rendition}.m3u8", deadline)
            inits, segments = init_names(playlist), segment_names(playlist)
            await fetch(api, base + inits[0], deadline)
            await fetch(api, base + segments[0], deadline)
            return time.monotonic() - began, [*inits, *segments]

        renditions = clip["renditions"]  # lowest first
        got = await asyncio.gather(*(first_segment(r) for r in renditions))
        for _, names in got:  # the rest, the tail's re-encode among them
            for name in names:
                await fetch(api, base + name, deadline)
        finished = time.monotonic() - began
        await asyncio.sleep(0.2)  # let the server reap its last ffmpeg
        own_after, children_after = cpu_seconds(pid)
        return {
            "firsts": [t for t, _ in got],
            "all": finished,
            "ffmpeg": children_after - children_before,
            "packager": own_after - own_before,
        }
