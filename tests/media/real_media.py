"""Real encoder output for the media tests, and ffmpeg's own view of it (the judge).

Everything runs the static ffmpeg of `imageio-ffmpeg`; encodes are a fraction of a second of
small video so the suites stay quick on two shared cores.
"""

from __future__ import annotations

import re
import struct
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


def hevc_hls(
    exe: str, out: Path, *, x265: str = "", seconds: float = 2, audio: bool = False
) -> tuple[bytes, list[bytes]]:
    """What an encoder pushes of libx265 tagged `hev1`, as HLS fMP4 of 1 s segments: the init
    and each segment's bytes. ffmpeg writes the parameter sets into hvcC (array_completeness
    0); `x265="repeat-headers=1"` puts them in the samples too."""
    out.mkdir(parents=True, exist_ok=True)
    inputs = ["-f", "lavfi", "-i", SMALL_VIDEO]
    if audio:
        inputs += ["-f", "lavfi", "-i", TONE, "-c:a", "aac"]
    ffmpeg(
        exe,
        *inputs,
        *("-t", str(seconds), "-c:v", "libx265", "-preset", "ultrafast", "-g", "30"),
        *("-x265-params", ":".join(["log-level=error", *([x265] if x265 else [])])),
        *("-tag:v", "hev1", "-f", "hls", "-hls_time", "1", "-hls_segment_type", "fmp4"),
        *("-hls_playlist_type", "vod", "-hls_segment_filename", str(out / "index%d.m4s")),
        str(out / "index.m3u8"),
    )
    names = [ln for ln in (out / "index.m3u8").read_text().splitlines() if ln.endswith(".m4s")]
    return (out / "init.mp4").read_bytes(), [(out / name).read_bytes() for name in names]


def hvcc_arrays(init: bytes) -> tuple[bytes, list[tuple[int, list[bytes]]]]:
    """The sample entry's fourcc and its hvcC's arrays as (first byte, NAL units), read with
    nothing of packager's: the first hvcC in the file, found by its type."""
    at = init.index(b"hvcC") - 4
    size = struct.unpack_from(">I", init, at)[0]
    record = init[at + 8 : at + size]
    pos, arrays = 23, []
    for _ in range(record[22]):
        first, count = record[pos], struct.unpack_from(">H", record, pos + 1)[0]
        pos += 3
        units = []
        for _ in range(count):
            length = struct.unpack_from(">H", record, pos)[0]
            units.append(record[pos + 2 : pos + 2 + length])
            pos += 2 + length
        arrays.append((first, units))
    assert pos == len(record), "hvcC arrays do not fill the box"
    # ffmpeg writes hvcC first in the entry: right after its header and 78 bytes of fields.
    entry_size, fourcc = struct.unpack_from(">I4s", init, at - 78 - 8)
    assert fourcc in (b"hvc1", b"hev1") and entry_size >= 86 + size, fourcc
    return fourcc, arrays


def with_hvcc_arrays(init: bytes, arrays: list[tuple[int, list[bytes]]]) -> bytes:
    """`init` with other hvcC arrays, the box's size kept by a `free` box after it (every
    reader skips one), so no size around it changes: what an encoder that leaves the
    parameter sets to the samples writes. `arrays` must not be longer than the old ones."""
    at = init.index(b"hvcC") - 4
    size = struct.unpack_from(">I", init, at)[0]
    body = [init[at + 8 : at + 30], bytes([len(arrays)])]
    for first, units in arrays:
        body.append(struct.pack(">BH", first, len(units)))
        body += [struct.pack(">H", len(u)) + u for u in units]
    payload = b"".join(body)
    gap = size - 8 - len(payload) - 8
    assert gap >= 0, "new arrays longer than the old"
    hvcc = struct.pack(">I4s", 8 + len(payload), b"hvcC") + payload
    free = struct.pack(">I4s", 8 + gap, b"free") + bytes(gap)
    return init[:at] + hvcc + free + init[at + size :]


def box_tree_is_consistent(data: bytes) -> list[bytes]:
    """Walk every container box down to the sample entry's children, checking each tiles its
    parent exactly; the paths walked, as b"moov/trak/...". Independent of packager's walker."""
    containers = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"edts", b"dinf"}
    skip = {b"stsd": 8, b"hvc1": 78, b"hev1": 78, b"mp4a": 28}
    paths: list[bytes] = []

    def walk(start: int, end: int, path: bytes) -> None:
        pos = start
        while pos < end:
            size, typ = struct.unpack_from(">I4s", data, pos)
            assert size >= 8 and pos + size <= end, (path, typ, size)
            here = path + b"/" + typ if path else typ
            paths.append(here)
            if typ in containers or typ in skip:
                walk(pos + 8 + skip.get(typ, 0), pos + size, here)
            pos += size
        assert pos == end, path

    walk(0, len(data), b"")
    return paths
