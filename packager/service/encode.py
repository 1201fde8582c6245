"""Re-encoding a partial GOP with ffmpeg, off the event loop: one subprocess per job, at most
`jobs` at once, in the order they were asked for (a new clip asks for its lowest rendition
first, so that one is ready soonest).

The input is the source's init and one fragment of the GOP's samples (packager.package.cuts);
ffmpeg decodes it, keeps the asked frames (display order) and encodes them with the same codec,
profile and level as the rendition (read from its codec string), at the source's size, with no
B-frames and no keyframe but the first, into fragmented MP4 on its stdout. The caller re-times
the frames onto the source's timeline, so the encoder's own timestamps do not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass

import ffmpeg
import imageio_ffmpeg

from packager.media import boxes
from packager.media.fragment import parse_segment
from packager.media.init import parse_init
from packager.media.model import InitSegment, Track, TrackSamples

# x264's names for H.264's profile_idc (ISO/IEC 14496-10 Annex A).
_H264_PROFILES = {66: "baseline", 77: "main", 100: "high", 110: "high10", 122: "high422"}
ENCODE_TIMEOUT = 60.0  # seconds one GOP may take at most, whatever the machine's load


class EncodeError(RuntimeError):
    """ffmpeg failed, or did not make what was asked."""


@dataclass(frozen=True, slots=True)
class Encoded:
    init: InitSegment
    samples: TrackSamples
    data: bytes  # the fragment the samples' offsets point into


_REENCODED = ("avc1", "avc3")  # video families this re-encodes
_OTHER_VIDEO = ("hvc1", "hev1", "av01", "vp08", "vp09", "dvh1", "dvhe", "dva1", "dvav")


def reencodable(codecs: str) -> bool:
    """Whether a rendition's CODECS (RFC 6381, comma-separated) has video this can re-encode
    (audio is only ever copied)."""
    families = [c.strip().split(".", 1)[0] for c in codecs.split(",")]
    return not any(f in _OTHER_VIDEO for f in families) and any(f in _REENCODED for f in families)


def codec_arguments(track: Track, parameter_set_id: int = 0) -> dict[str, str]:
    """ffmpeg output options that make the rendition's codec, profile and level; ValueError for
    a codec this cannot re-encode. The new SPS/PPS take `parameter_set_id`, one the source's
    do not use, and are repeated in band: a decoder that kept the source's init finds both."""
    family, _, rest = track.codec.partition(".")
    if family in ("avc1", "avc3") and len(rest) >= 6:
        profile_idc, level_idc = int(rest[0:2], 16), int(rest[4:6], 16)
        profile = _H264_PROFILES.get(profile_idc)
        if profile is None:
            raise ValueError(f"H.264 profile {profile_idc} cannot be re-encoded")
        return {
            "c:v": "libx264",
            "profile:v": profile,
            "level:v": f"{level_idc // 10}.{level_idc % 10}",
            "x264-params": (
                f"bframes=0:keyint=infinite:scenecut=0:sps-id={parameter_set_id}:repeat-headers=1"
            ),
        }
    raise ValueError(f"{track.codec} video cannot be re-encoded for HLS (H.264 can)")


class Encoder:
    # superfast: a 2 s GOP of 1080p in 0.45 s of one core here, against 0.66 s for veryfast
    # (ultrafast's 0.33 s turns CABAC and the deblocking filter off).
    def __init__(self, jobs: int | None = None, preset: str = "superfast") -> None:
        self.exe: str = imageio_ffmpeg.get_ffmpeg_exe()
        self.jobs = jobs or max(1, os.cpu_count() or 1)
        self.preset = preset
        # At most `jobs` encodes at once, first come first served.
        self.slots = asyncio.Semaphore(self.jobs)

    def command(
        self, track: Track, frames: tuple[int, int], bitrate: int, parameter_set_id: int = 0
    ) -> list[str]:
        options = codec_arguments(track, parameter_set_id)
        stream = ffmpeg.input("pipe:0", f="mp4").video.filter(
            "trim", start_frame=frames[0], end_frame=frames[1]
        )
        rate = max(bitrate, 50_000)
        out = ffmpeg.output(
            stream,
            "pipe:1",
            f="mp4",
            movflags="frag_keyframe+empty_moov+default_base_moof",
            fps_mode="passthrough",
            preset=self.preset,
            threads=1,  # jobs run side by side; frame threads would add latency, not speed
            **{"b:v": rate, "maxrate": rate * 3 // 2, "bufsize": rate * 2},
            **options,
        ).global_args("-hide_banner", "-nostdin", "-v", "error")
        return list(ffmpeg.compile(out, cmd=self.exe))

    async def encode(
        self,
        source: bytes,
        track: Track,
        frames: tuple[int, int],
        bitrate: int,
        parameter_set_id: int = 0,
    ) -> Encoded:
        """Frames [a, b) (display order) of what `source` decodes to, encoded as `track` is."""
        cmd = self.command(track, frames, bitrate, parameter_set_id)
        async with self.slots:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(source), ENCODE_TIMEOUT)
            except BaseException:  # a timeout, or the server stopping: leave no ffmpeg behind
                await stop_process(proc)
                raise
        if proc.returncode != 0 or not out:
            raise EncodeError(f"ffmpeg exited {proc.returncode}: {err.decode(errors='replace')}")
        return _read_output(out, track)


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """Kill a subprocess (if it is still running) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


def _read_output(out: bytes, track: Track) -> Encoded:
    top = list(boxes.iter_boxes(out))
    moov = next((b for b in top if b.type == b"moov"), None)
    if moov is None:
        raise EncodeError("ffmpeg wrote no init segment")
    init = parse_init(out[: moov.end])
    data = out[moov.end :]
    media = parse_segment(data, init)
    samples = media.track(init.main.track_id)
    if samples is None or init.main.handler != track.handler:
        raise EncodeError("ffmpeg wrote no video")
    if (init.main.width, init.main.height) != (track.width, track.height):
        raise EncodeError(
            f"ffmpeg made {init.main.width}x{init.main.height}, not {track.width}x{track.height}"
        )
    return Encoded(init, samples, data)
