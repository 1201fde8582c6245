"""Real encoder output for the media tests, and ffmpeg's own view of it (the judge).

Everything runs the static ffmpeg of `imageio-ffmpeg`; encodes are a fraction of a second of
small video so the suites stay quick on two shared cores.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from packager.media import boxes
from packager.media.init import parse_init
from packager.media.model import InitSegment, SegmentMedia

SMALL_VIDEO = "testsrc2=size=320x180:rate=30"
TONE = "sine=frequency=440:sample_rate=48000"


def ffmpeg(exe: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg quietly; a failure fails the test with its stderr."""
    run = subprocess.run(
        [exe, "-nostdin" if stdin is None else "-hide_banner", "-v", "error", "-y", *args],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    return run


def probe(exe: str, path: Path) -> str:
    """What `ffmpeg -i` prints about a file (this ffmpeg has no ffprobe)."""
    run = subprocess.run(
        [exe, "-nostdin", "-hide_banner", "-i", str(path)],
        capture_output=True,
        check=False,
        timeout=60,
    )
    return run.stderr.decode(errors="replace")


def video_size(exe: str, path: Path) -> tuple[int, int]:
    m = re.search(r"Video: .*?, (\d+)x(\d+)", probe(exe, path))
    assert m, probe(exe, path)
    return int(m[1]), int(m[2])


def frame_hashes(exe: str, data: bytes, stream: str) -> list[str]:
    """MD5 of every decoded frame of one stream (`0:v` or `0:a`), fed on stdin; ffmpeg must
    decode it without a single error line. Passthrough: framemd5's default frame-rate sync
    would drop or repeat frames by timestamp."""
    args = ["-map", stream, "-fps_mode", "passthrough", "-f", "framemd5", "-"]
    run = ffmpeg(exe, "-i", "-", *args, stdin=data)
    assert run.stderr == b"", run.stderr.decode(errors="replace")
    rows = [ln for ln in run.stdout.decode().splitlines() if ln and not ln.startswith("#")]
    return [ln.rsplit(",", 1)[1].strip() for ln in rows]


Fields = list[tuple[str, int]]
_FIELD = re.compile(r"\]\s+\d+\s+(\S+)\s+[01]+ = (-?\d+)$")


def trace_headers(exe: str, path: Path) -> tuple[Fields, list[Fields]]:
    """ffmpeg's `trace_headers` bitstream filter: the syntax elements it read from the video
    extradata, and from each packet, as (name, value) in bitstream order."""
    args = ["-i", str(path), "-map", "0:v", "-c", "copy", "-bsf:v", "trace_headers"]
    run = subprocess.run(
        [exe, "-nostdin", "-hide_banner", *args, "-f", "null", "-"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    extradata: Fields = []
    packets: list[Fields] = []
    current = extradata
    for line in run.stderr.decode(errors="replace").splitlines():
        if "[trace_headers" not in line:
            continue
        if "] Packet: " in line:  # printed before the packet's own syntax elements
            current = []
            packets.append(current)
        elif m := _FIELD.search(line):
            current.append((m[1], int(m[2])))
    return extradata, packets


def values(fields: Fields, name: str) -> list[int]:
    return [v for n, v in fields if n == name]


def ffmpeg_fmp4(exe: str, source: Path, out: Path, tag: str) -> tuple[InitSegment, bytes]:
    """ffmpeg's own fragmented MP4 of `source`'s video (stream copy, a fragment per keyframe):
    its parsed init and the bytes after the moov, one media segment of several moofs."""
    ffmpeg(
        exe,
        *("-i", str(source), "-map", "0:v", "-c", "copy", "-tag:v", tag),
        *("-movflags", "+frag_keyframe+empty_moov+default_base_moof", str(out)),
    )
    data = out.read_bytes()
    moov = next(b for b in boxes.iter_boxes(data) if b.type == b"moov")
    return parse_init(data[: moov.end]), data[moov.end :]


def samples(segment: bytes, media: SegmentMedia, track_id: int) -> list[bytes]:
    """The bytes of each sample of one track, as the parsed tables place them."""
    track = media.track(track_id)
    assert track is not None
    return [segment[o : o + s] for o, s in zip(track.offsets, track.sizes, strict=True)]
