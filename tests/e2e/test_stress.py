"""Concurrency stress with integrity checks: live ingest, clip clients, expiry, memory.

One app serves on a loopback port (in this process, so the test owns its clock and can read its
store and memory). A pusher thread PUTs the 3-rendition fixture ladder over HTTP as a live
encoder would (init, then per 2 s segment its playlist with PROGRAM-DATE-TIME and the
segment, tfdt moved on each loop). Client threads meanwhile create clips (public and signed,
complete and still growing), download every HLS playlist, init and segment and the MP4s (whole,
HEAD, Range, Safari's probe, conditional), and check:

- every byte served is the source's: each served segment is byte-identical to the one pushed,
  and every sample of every segment and of every MP4 hashes (sha256) to the fixture's sample;
- no request fails (the only non-2xx answers allowed are the documented waits: 425 for the MP4
  of a clip still recording, 503 + Retry-After when all MP4 build slots are busy, both retried);
- an expired clip's links answer 404, and once every clip has expired the store is back to
  its DVR alone (nothing pinned, no clip-only bytes, no MP4 layouts) and so is Python's memory.

Clip lives are at least 60 s by contract, so the app's clock runs RATE times faster than the
wall (the ingest keeps real time on that clock): clips created during the run expire during it.

    python -m pytest -q tests/e2e/test_stress.py -s                   # CI: ~45 s
    STRESS_SECONDS=300 STRESS_CLIENTS=8 python -m pytest -q tests/e2e/test_stress.py -s
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import http.client
import json
import os
import random
import re
import threading
import time
import tracemalloc
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from packager.config import Config
from packager.demo import RecordedRendition, load_ladder
from packager.http.app import create_app
from packager.http.keys import SERVICES
from packager.media.fragment import parse_segment
from packager.media.init import parse_init
from packager.media.model import InitSegment
from packager.media.rewrite import shift_decode_times
from tests.conftest import LADDER_DIR, T0
from tests.mp4_support import ServerThread, read_moov

pytestmark = pytest.mark.e2e

LOAD_SECONDS = float(os.environ.get("STRESS_SECONDS", "18"))  # wall seconds of client load
CLIENTS = int(os.environ.get("STRESS_CLIENTS", "5"))
RATE = 4.0  # app seconds per wall second
DVR = 24.0  # app seconds the stream keeps
# Clips live [LIFE, LIFE + 10] app seconds: the contract's minimum is 60, and the request
# creating a clip may take a wall second to arrive under load.
LIFE = 64.0
SAFE = 8.0  # app seconds before its expiration a client stops using a clip
STREAM = "stress"
API_KEY = "stress-key"
AUTH = {"Authorization": f"apikey {API_KEY}"}
# What Python may hold beyond the DVR's media once every clip is gone, compared with before
# the first clip: the bounded LRU caches of formatted dates (packager/package/hls.py,
# packager/http/caching.py: ~3 MB when full), metric label sets, allocator slack. Measured:
# +0.1 MB after 18 s and 124 clips, +0.5 MB after 300 s and 2,277 clips.
MEMORY_SLACK = 4 << 20
# Pushed segments whose hashes are kept: more than a DVR plus the longest clip life hold.
KEPT_SEGMENTS = 80


class WarpClock:
    """App time running RATE times faster than the wall, from a fixed start."""

    def __init__(self, start: float, rate: float) -> None:
        self.start, self.rate, self.t0 = start, rate, time.monotonic()

    def __call__(self) -> float:
        return self.start + (time.monotonic() - self.t0) * self.rate

    def wall(self, app_seconds: float) -> float:
        return app_seconds / self.rate


def sha(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


# ---- the source: what every served byte must equal -------------------------------------------


@dataclass
class Source:
    ladder: list[RecordedRendition]
    inits: dict[str, InitSegment]
    by_init: dict[bytes, str]  # init bytes -> rendition name
    samples: dict[
        tuple[str, int], dict[int, list[bytes]]
    ]  # (rendition, fixture index) -> per track
    durations: list[float]  # seconds of each fixture segment (the main track's)
    pushed: dict[tuple[str, int], tuple[int, bytes]] = field(default_factory=dict)
    # (rendition, video tfdt) -> (replay number k, sha256 of the pushed bytes)

    @classmethod
    def load(cls) -> Source:
        ladder = load_ladder(LADDER_DIR)
        inits = {r.name: parse_init(r.init) for r in ladder}
        samples = {}
        for r in ladder:
            for i, data in enumerate(r.segments):
                media = parse_segment(data, inits[r.name])
                samples[r.name, i] = {
                    t.track_id: [
                        sha(data[o : o + s]) for o, s in zip(t.offsets, t.sizes, strict=True)
                    ]
                    for t in media.tracks
                }
        main = inits[ladder[0].name].main
        durations = [
            parse_segment(s, inits[ladder[0].name]).track(main.track_id).duration / main.timescale  # type: ignore[union-attr]
            for s in ladder[0].segments
        ]
        return cls(ladder, inits, {r.init: r.name for r in ladder}, samples, durations)

    @property
    def loop_seconds(self) -> float:
        return sum(self.durations)


# ---- counters and failures, shared by every thread ---------------------------------------------


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


class Http:
    """One keep-alive connection; every exchange is counted and any transport error is a failure."""

    def __init__(self, port: int, tally: Tally) -> None:
        self.port, self.tally = port, tally
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def __call__(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, http.client.HTTPResponse, bytes]:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            self.conn.request(method, target, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.tally.fail(f"{method} {target}: {exc!r}")
            raise
        self.tally.add("requests")
        self.tally.add("bytes_received", len(data))
        return resp.status, resp, data

    def close(self) -> None:
        self.conn.close()


class Abandon(Exception):
    """Stop using this clip (it is about to expire, or something already failed)."""


# ---- the encoder ---------------------------------------------------------------------------------


def _pdt(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


class Pusher(threading.Thread):
    """Pushes segment k of the endless replay once the app clock passes its end."""

    def __init__(self, port: int, clock: WarpClock, source: Source, tally: Tally, key: str) -> None:
        super().__init__(daemon=True)
        self.http = Http(port, tally)
        self.auth = {"Authorization": f"Bearer {key}"}  # the stream's push key
        self.clock, self.source, self.tally = clock, source, tally
        self.origin = clock() - DVR  # the first DVR's worth goes at once
        self.stop = threading.Event()
        self.pushed = 0
        self.keys: deque[tuple[str, int]] = deque()  # what `source.pushed` holds, oldest first

    def segment_start(self, k: int) -> float:
        loops, i = divmod(k, len(self.source.durations))
        return self.origin + loops * self.source.loop_seconds + sum(self.source.durations[:i])

    def put(self, url: str, body: bytes, expect: int) -> None:
        status, _, answer = self.http("PUT", url, self.auth, body)
        if status != expect:
            self.tally.fail(f"PUT {url}: {status} {answer[:200]!r}")

    def run(self) -> None:
        src = self.source
        for r in src.ladder:
            self.put(f"/ingest/{STREAM}/{r.name}/init_{r.name}.mp4", r.init, 201)
        k = 0
        while not self.stop.is_set():
            start = self.segment_start(k)
            i = k % len(src.durations)
            end = start + src.durations[i]
            if self.clock() < end:  # an encoder sends a segment once it has all of it
                self.stop.wait(self.clock.wall(end - self.clock()))
                continue
            loops = k // len(src.durations)
            for r in src.ladder:
                shift = {
                    tid: loops * round(src.loop_seconds * ts)
                    for tid, ts in r.track_timescales.items()
                }
                data = shift_decode_times(r.segments[i], shift)
                video = parse_segment(data, src.inits[r.name]).track(1)
                assert video is not None
                src.pushed[r.name, video.base_decode_time] = (k, sha(data))
                self.keys.append((r.name, video.base_decode_time))
                name = f"live{k}.m4s"
                playlist = (
                    "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n"
                    f'#EXT-X-MEDIA-SEQUENCE:{k}\n#EXT-X-MAP:URI="init_{r.name}.mp4"\n'
                    f"#EXTINF:{src.durations[i]:.6f},\n#EXT-X-PROGRAM-DATE-TIME:{_pdt(start)}\n{name}\n"
                )
                self.put(f"/ingest/{STREAM}/{r.name}/index.m3u8", playlist.encode(), 200)
                self.put(f"/ingest/{STREAM}/{r.name}/{name}", data, 201)
                self.tally.add("ingest_bytes", len(data))
            self.tally.add("segments_pushed")
            while len(self.keys) > KEPT_SEGMENTS * len(src.ladder):  # none of the DVR or clips
                del src.pushed[self.keys.popleft()]
            self.pushed = k = k + 1
        self.http.close()


# ---- clients -------------------------------------------------------------------------------------

_URI = re.compile(r'URI="([^"]+)"')


@dataclass
class ClipRecord:
    id: str
    expiration: float
    hls_master: str
    mp4_master: str
    renditions: list[str]
    private: bool
    growing: bool


class Registry:
    """Clips not yet seen expired. A record leaves once its links were checked to answer 404,
    so the test itself holds no more memory after a long run than after a short one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[str, ClipRecord] = {}
        self.last_expiration = 0.0

    def add(self, clip: ClipRecord) -> None:
        with self.lock:
            self.live[clip.id] = clip
            self.last_expiration = max(self.last_expiration, clip.expiration)

    def expired(self, now: float) -> list[ClipRecord]:
        with self.lock:
            return [c for c in self.live.values() if now >= c.expiration + 1]

    def forget(self, clip: ClipRecord) -> None:
        with self.lock:
            del self.live[clip.id]


class Client(threading.Thread):
    def __init__(
        self,
        port: int,
        clock: WarpClock,
        source: Source,
        tally: Tally,
        clips: Registry,
        until: float,
        seed: int,
    ) -> None:
        super().__init__(daemon=True)
        self.http = Http(port, tally)
        self.clock, self.source, self.tally, self.clips = clock, source, tally, clips
        self.until = until
        self.rng = random.Random(seed)

    def run(self) -> None:
        try:
            while time.monotonic() < self.until:
                clip = self.create_clip()
                if clip is None:
                    continue
                try:
                    self.play(clip)
                    if self.rng.random() < 0.3:  # a second viewer: through caches, conditionally
                        self.revalidate(clip)
                except Abandon:
                    self.tally.add("clips_abandoned_near_expiry")
        except Exception as exc:  # noqa: BLE001 - a client's crash is a test failure, not a hang
            self.tally.fail(f"client crashed: {exc!r}")
        finally:
            self.http.close()

    # -- one clip's life, as a player sees it

    def create_clip(self) -> ClipRecord | None:
        now = self.clock()
        duration = self.rng.uniform(2, 10)
        start = now - self.rng.uniform(3, 18)
        private = self.rng.random() < 0.3
        body = {
            "duration": duration,
            "start": start,
            "expiration": now + LIFE + self.rng.uniform(0, 10),
            "private": private,
        }
        status, _, data = self.http(
            "POST", f"/streams/{STREAM}/clip_recording", AUTH, json.dumps(body).encode()
        )
        if status != 201:
            self.tally.fail(f"create clip {body}: {status} {data[:200]!r}")
            return None
        made = json.loads(data)
        self.tally.add("clips_created")
        self.tally.add("clips_growing" if not made["complete"] else "clips_complete")
        self.tally.add("clips_private" if private else "clips_public")
        clip = ClipRecord(
            made["id"],
            made["expiration"],
            made["hls_master"],
            made["mp4_master"],
            made["renditions"],
            private,
            not made["complete"],
        )
        self.clips.add(clip)
        return clip

    def get(
        self, clip: ClipRecord, url: str, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPResponse, bytes]:
        if self.clock() > clip.expiration - SAFE:
            raise Abandon
        return self.http("GET", url, headers)

    def expect(self, clip: ClipRecord, url: str, status: int, got: int, data: bytes) -> None:
        if got != status:
            self.tally.fail(f"GET {url}: {got}, expected {status}: {data[:200]!r}")
            raise Abandon

    def play(self, clip: ClipRecord) -> None:
        if clip.growing:  # its MP4 is not there yet: 425 with Retry-After (or 200 if it just ended)
            status, resp, data = self.get(clip, clip.mp4_master)
            if status == 425 and resp.getheader("Retry-After", "").isdigit():
                self.tally.add("mp4_425_while_recording")
            elif status != 200:
                self.tally.fail(f"GET {clip.mp4_master} while recording: {status} {data[:200]!r}")
        status, _, data = self.get(clip, clip.hls_master)
        self.expect(clip, clip.hls_master, 200, status, data)
        variants = [
            urljoin(clip.hls_master, line)
            for line in data.decode().splitlines()
            if line and not line.startswith("#")
        ]
        if len(variants) != 3:
            self.tally.fail(f"{clip.hls_master}: {len(variants)} variants")
        played: dict[str, list[int]] = {}
        for url in variants:
            played[url] = self.play_rendition(clip, url)
        renditions = dict(zip(clip.renditions, played.values(), strict=True))
        self.check_mp4s(clip, renditions)

    def play_rendition(self, clip: ClipRecord, url: str) -> list[int]:
        """Follow a media playlist to its ENDLIST, checking every segment; the replay numbers."""
        seen = 0
        ks: list[int] = []
        init: InitSegment | None = None
        rendition = ""
        inits: dict[str, InitSegment] = {}
        while True:
            status, _, data = self.get(clip, url)
            self.expect(clip, url, 200, status, data)
            text = data.decode()
            uris: list[tuple[str, str]] = []  # (init url, segment url)
            current = ""
            for line in text.splitlines():
                if line.startswith("#EXT-X-MAP:"):
                    m = _URI.search(line)
                    current = urljoin(url, m[1]) if m else ""
                elif line and not line.startswith("#"):
                    uris.append((current, urljoin(url, line)))
            for init_url, seg_url in uris[seen:]:
                if init_url not in inits:
                    status, _, body = self.get(clip, init_url)
                    self.expect(clip, init_url, 200, status, body)
                    rendition = self.source.by_init.get(body, "")
                    if not rendition:
                        self.tally.fail(f"{init_url}: not the pushed init segment")
                        raise Abandon
                    inits[init_url] = self.source.inits[rendition]
                init = inits[init_url]
                status, _, body = self.get(clip, seg_url)
                self.expect(clip, seg_url, 200, status, body)
                ks.append(self.check_segment(rendition, init, body, seg_url))
            seen = len(uris)
            if "#EXT-X-ENDLIST" in text:
                break
            self.tally.add("growing_playlist_polls")
            time.sleep(0.1)
        if any(b != a + 1 for a, b in pairwise(ks)):
            self.tally.fail(f"{url}: segments {ks} are not consecutive")
        return ks

    def check_segment(self, rendition: str, init: InitSegment, data: bytes, url: str) -> int:
        media = parse_segment(data, init)
        video = media.track(1)
        pushed = self.source.pushed.get((rendition, video.base_decode_time)) if video else None
        if pushed is None:
            self.tally.fail(f"{url}: a segment that was never pushed")
            raise Abandon
        k, digest = pushed
        if sha(data) != digest:
            self.tally.fail(f"{url}: bytes differ from pushed segment {k}")
        want = self.source.samples[rendition, k % len(self.source.durations)]
        for track in media.tracks:
            got = [sha(data[o : o + s]) for o, s in zip(track.offsets, track.sizes, strict=True)]
            if got != want[track.track_id]:
                self.tally.fail(f"{url}: track {track.track_id} samples differ from the source")
            self.tally.add("samples_verified", len(got))
            self.tally.add("sample_bytes_verified", track.total_size)
        self.tally.add("segments_verified")
        return k

    def check_mp4s(self, clip: ClipRecord, renditions: dict[str, list[int]]) -> None:
        names = list(renditions)
        picked = self.rng.choice(names)
        for name in ("master", picked):
            url = clip.mp4_master.replace("_master.mp4", f"_{name}.mp4")
            ks = renditions[names[-1] if name == "master" else name]
            rendition = self.rendition_of(name, names)
            body = self.download_mp4(clip, url)
            self.check_mp4(rendition, ks, body, url)
            if name == "master":
                self.check_ranges(clip, url, body)

    def rendition_of(self, name: str, names: list[str]) -> str:
        """The clip's ladder is the source ladder, lowest first: media_{n}_{h} is the n-th."""
        index = len(names) - 1 if name == "master" else names.index(name)
        heights = sorted(self.source.inits, key=lambda r: self.source.inits[r].main.height)
        return heights[index]

    def download_mp4(self, clip: ClipRecord, url: str) -> bytes:
        for _ in range(200):
            status, resp, body = self.get(clip, url)
            if status == 200:
                return body
            if status in (425, 503):  # still recording / build slots busy: wait as told
                self.tally.add(f"mp4_{status}_retried")
                wait = float(resp.getheader("Retry-After") or 1)
                time.sleep(min(self.clock.wall(wait), 0.5) if status == 425 else 0.05)
                continue
            self.expect(clip, url, 200, status, body)
        self.tally.fail(f"GET {url}: never ready")
        raise Abandon

    def check_mp4(self, rendition: str, ks: list[int], mp4: bytes, url: str) -> None:
        movie = read_moov(mp4)
        n = len(self.source.durations)
        for handler, tid in (("vide", 1), ("soun", 2)):
            track = movie.track(handler)
            got = [sha(mp4[a:b]) for a, b in track.sample_ranges()]
            want = []
            for j, k in enumerate(ks):
                hashes = self.source.samples[rendition, k % n][tid]
                if tid == 2 and j > 0 and k % n == 0 and ks[j - 1] == k - 1:
                    # This replay shifts by whole 12 s loops, so its audio overlaps by one AAC
                    # frame at each loop point: the MP4 follows tfdt and drops that frame.
                    hashes = hashes[1:]
                want.extend(hashes)
            if got != want:
                self.tally.fail(f"{url}: {handler} samples differ from the source")
            self.tally.add("samples_verified", len(got))
            self.tally.add("sample_bytes_verified", sum(track.sizes))
        self.tally.add("mp4s_verified")

    def check_ranges(self, clip: ClipRecord, url: str, full: bytes) -> None:
        size = len(full)
        status, resp, body = self.get(clip, url, {"Range": "bytes=0-1"})  # Safari's probe
        if (
            status != 206
            or body != full[:2]
            or resp.getheader("Content-Range") != f"bytes 0-1/{size}"
        ):
            self.tally.fail(f"{url} probe: {status} {resp.getheader('Content-Range')}")
        for _ in range(2):
            a = self.rng.randrange(size)
            b = self.rng.randrange(a, size)
            status, resp, body = self.get(clip, url, {"Range": f"bytes={a}-{b}"})
            if status != 206 or body != full[a : b + 1]:
                self.tally.fail(f"{url} bytes={a}-{b}: {status}, {len(body)} bytes")
            self.tally.add("ranges_verified")
        if self.clock() > clip.expiration - SAFE:
            raise Abandon
        status, resp, _ = self.http("HEAD", url)
        if status != 200 or resp.getheader("Content-Length") != str(size):
            self.tally.fail(f"HEAD {url}: {status} {resp.getheader('Content-Length')}")

    def revalidate(self, clip: ClipRecord) -> None:
        status, resp, data = self.get(clip, clip.hls_master)
        self.expect(clip, clip.hls_master, 200, status, data)
        status, _, data = self.get(
            clip, clip.hls_master, {"If-None-Match": resp.getheader("ETag") or ""}
        )
        self.expect(clip, clip.hls_master, 304, status, data)
        self.tally.add("revalidated_304")


class Janitor(threading.Thread):
    """Checks that expired clips' links answer 404, and reads the API while the load runs."""

    def __init__(self, port: int, clock: WarpClock, tally: Tally, clips: Registry) -> None:
        super().__init__(daemon=True)
        self.http = Http(port, tally)
        self.clock, self.tally, self.clips = clock, tally, clips
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.sweep()
                for path in (f"/streams/{STREAM}/clip_recording", "/stats", f"/streams/{STREAM}"):
                    status, _, data = self.http("GET", path, AUTH)
                    if status != 200:
                        self.tally.fail(f"GET {path}: {status} {data[:200]!r}")
                self.stop.wait(0.5)
            self.sweep()
        except Exception as exc:  # noqa: BLE001
            self.tally.fail(f"janitor crashed: {exc!r}")
        finally:
            self.http.close()

    def sweep(self) -> None:
        for clip in self.clips.expired(self.clock()):
            seg = clip.hls_master.replace("_master.m3u8", f"_{clip.renditions[0]}_seg0.m4s")
            for url in (clip.hls_master, clip.mp4_master, seg):
                status, _, data = self.http("GET", url)
                if status != 404:
                    self.tally.fail(f"expired clip: GET {url}: {status} {data[:100]!r}")
            self.clips.forget(clip)
            self.tally.add("expired_clips_checked_404")


class Attacker(threading.Thread):
    """Pushes foreign media beside the real encoder, as anyone who can read a playback link's
    stream id could: with no key, a wrong one, the API key. Every push must be refused, and
    the encoder's clips stay bit-identical to what it sent (the clients check every sample)."""

    def __init__(self, port: int, tally: Tally, source: Source) -> None:
        super().__init__(daemon=True)
        self.http = Http(port, tally)
        self.tally, self.source = tally, source
        self.stop = threading.Event()

    def run(self) -> None:
        ladder = self.source.ladder
        keys = [{}, {"Authorization": "Bearer guessed"}, AUTH]
        k = 0
        try:
            while not self.stop.is_set():
                r = ladder[k % len(ladder)]
                foreign = ladder[(k + 1) % len(ladder)]
                headers = keys[k % len(keys)]
                for name, body in (
                    (f"init_{r.name}.mp4", foreign.init),  # would break the live stream
                    (f"live{k}.m4s", foreign.segments[k % len(foreign.segments)]),  # inject
                    ("index.m3u8", b"#EXTM3U\n#EXT-X-PROGRAM-DATE-TIME:2099-01-01T00:00:00Z\n"),
                ):
                    status, _, data = self.http(
                        "PUT", f"/ingest/{STREAM}/{r.name}/{name}", headers, body
                    )
                    if status != 401:
                        self.tally.fail(f"attacker PUT {name}: {status} {data[:100]!r}")
                    self.tally.add("attacks_refused")
                k += 1
                self.stop.wait(0.05)
        except Exception as exc:  # noqa: BLE001
            self.tally.fail(f"attacker crashed: {exc!r}")
        finally:
            self.http.close()


# ---- the run -------------------------------------------------------------------------------------


def rss() -> int:
    """Resident memory, after handing freed malloc arenas back (glibc keeps them otherwise)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def python_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_live_ingest_clip_clients_and_expiry_serve_only_source_bytes(
    tmp_path: Path, traced: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source = Source.load()
    clock = WarpClock(T0, RATE)
    config = Config(
        api_keys=(API_KEY,),
        memory_budget=2 << 30,
        data_dir=tmp_path,
        playback_secret="stress-secret",
    )
    app = create_app(config, clock=clock)
    store = app[SERVICES].store
    tally = Tally()
    clips = Registry()
    started = time.monotonic()
    with ServerThread(app) as server:
        setup = Http(server.port, tally)
        body = json.dumps({"id": STREAM, "name": "stress", "dvr_duration": DVR}).encode()
        status, _, made = setup("POST", "/streams", AUTH, body)
        assert status == 201
        setup.close()
        pusher = Pusher(server.port, clock, source, tally, json.loads(made)["push_key"])
        pusher.start()
        backfill = int(DVR / 2)
        while pusher.pushed < backfill + 2:  # the DVR is full and rolling
            time.sleep(0.05)
            assert time.monotonic() - started < 30, "the ingest did not get going"
        base_dvr = server.run(store.stats()).dvr_bytes
        base_python, base_rss = python_bytes(), rss()

        janitor = Janitor(server.port, clock, tally, clips)
        janitor.start()
        attacker = Attacker(server.port, tally, source)
        attacker.start()
        until = time.monotonic() + LOAD_SECONDS
        clients = [
            Client(server.port, clock, source, tally, clips, until, seed) for seed in range(CLIENTS)
        ]
        for c in clients:
            c.start()
        for c in clients:
            c.join(LOAD_SECONDS + 120)
            assert not c.is_alive(), "a client hung"
        load_done = time.monotonic()

        # Drain: the ingest goes on while every clip reaches its expiration and the timers fire.
        last = clips.last_expiration
        while clock() < last + RATE * 1.5:  # timers tick at least every wall second
            time.sleep(0.1)
        janitor.stop.set()
        janitor.join(60)
        attacker.stop.set()
        attacker.join(60)
        pusher.stop.set()
        pusher.join(60)
        assert not pusher.is_alive() and not janitor.is_alive()
        time.sleep(0.2)  # the last responses leave the server's buffers
        stats = server.run(store.stats())
        end_python, end_rss = python_bytes(), rss()
        mp4_files = len(app[SERVICES].mp4)

    counts = tally.counts
    took = time.monotonic() - started
    report = (
        f"\nstress: {took:.0f} s ({LOAD_SECONDS:.0f} s of load, {CLIENTS} clients, clock x{RATE:g}): "
        f"{counts['requests']} requests, {counts['bytes_received'] / 1e6:.0f} MB received, "
        f"{counts['segments_pushed']} ladder segments pushed ({counts['ingest_bytes'] / 1e6:.0f} MB)\n"
        f"  clips {counts['clips_created']} ({counts['clips_growing']} growing, "
        f"{counts['clips_private']} signed), {counts['expired_clips_checked_404']} expired and checked 404, "
        f"{counts['clips_abandoned_near_expiry']} left near expiry\n"
        f"  verified: {counts['segments_verified']} segments, {counts['mp4s_verified']} MP4s, "
        f"{counts['ranges_verified']} ranges, {counts['samples_verified']} samples, "
        f"{counts['sample_bytes_verified'] / 1e6:.0f} MB of sample bytes by sha256; "
        f"{counts['revalidated_304']} 304s; {counts['mp4_425_while_recording']} x 425 while "
        f"recording; retried: {counts['mp4_425_retried']} x 425, "
        f"{counts['mp4_503_retried']} x 503; {counts['attacks_refused']} foreign pushes "
        f"refused; {len(tally.failures)} failures\n"
        f"  memory: Python {base_python / 1e6:.1f} MB with a {base_dvr / 1e6:.1f} MB DVR before, "
        f"{end_python / 1e6:.1f} MB with a {stats.dvr_bytes / 1e6:.1f} MB DVR after; "
        f"RSS {base_rss / 1e6:.0f} -> {end_rss / 1e6:.0f} MB; load phase {load_done - started:.0f} s"
    )
    with capsys.disabled():
        print(report)
    assert not tally.failures, "\n".join(tally.failures[:20])
    assert counts["clips_created"] >= CLIENTS and counts["mp4s_verified"] > 0
    assert counts["attacks_refused"] > 0
    assert counts["expired_clips_checked_404"] == counts["clips_created"] and not clips.live
    assert stats.clips == 0 and stats.growing_clips == 0
    assert stats.pinned_bytes == 0 and stats.clip_only_bytes == 0
    assert stats.held_bytes == stats.dvr_bytes + stats.init_bytes and stats.dvr_bytes > 0
    assert mp4_files == 0
    grew = (end_python - stats.dvr_bytes) - (base_python - base_dvr)
    assert grew < MEMORY_SLACK, f"Python holds {grew / 1e6:.1f} MB more than before the clips"
