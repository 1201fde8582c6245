"""Read what a decoder shows: each frame's own number, and where the audio beeps are.

The media comes from `fixtures/make_numbered.py`: every frame carries its frame number as a
band of flat black/white cells across the top third of the picture, and the audio is silence
with a 10 ms 1 kHz tone at every whole second. A test decodes a file or URL with the real
ffmpeg and gets back the numbers in display order, the beep times and the stream start times,
so a clip's first and last frame and its A/V offset are measured, not assumed.

The code band (the generator paints it with ffmpeg's `geq`; this module only reads it):

    top sixth of the frame     row A: BITS equal cells, the frame number MSB first, white = 1
    second sixth               row B: the same cells inverted

Each frame is scaled by ffmpeg to READ_WIDTH x READ_HEIGHT gray and each cell read as the mean
of its central half. A cell must be clearly black or clearly white, and row B must be row A
inverted in every column, so a damaged or foreign picture raises instead of reading as some
other number (only both cells of one column flipping together would go unnoticed).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from array import array
from collections.abc import Generator, Sequence
from dataclasses import dataclass

BITS = 12  # frames 0..4095: 136 s at 30 fps
BAND_ROWS = 2  # the number, then its complement
BAND_FRACTION = 3  # the band is the top 1/BAND_FRACTION of the frame height
BLACK, WHITE = 16, 235  # the video-range luma levels the generator paints

READ_WIDTH, READ_HEIGHT = 192, 108  # 16 x 18 pixels per cell: room to read its centre only
# A decoded cell's mean must fall outside (DARK_MAX, LIGHT_MIN) to count as read; the fixture's
# worst cells (printed by make_numbered.py --verify-only) are far from both limits.
DARK_MAX, LIGHT_MIN = 80, 170

AUDIO_RATE = 48_000
BEEP_THRESHOLD = 0.1  # of full scale; the generator's tone peaks at 0.5
BEEP_QUIET = 0.2  # seconds below the threshold before a crossing for it to count as an onset


class DecodeError(RuntimeError):
    """ffmpeg failed, or said something at -v error while decoding."""


class FrameCodeError(ValueError):
    """A decoded picture does not carry a readable frame number."""


def _run(cmd: Sequence[str]) -> bytes:
    proc = subprocess.run(list(cmd), check=False, capture_output=True)
    errors = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0 or errors:
        raise DecodeError(f"{shlex.join(cmd)}\nexit {proc.returncode}: {errors}")
    return proc.stdout


def cell_means(frame: bytes | bytearray | memoryview, width: int, height: int) -> list[list[float]]:
    """Mean luma of the central half of every cell, row by row."""
    row_h = height / (BAND_FRACTION * BAND_ROWS)
    cell_w = width / BITS
    means: list[list[float]] = []
    for row in range(BAND_ROWS):
        y0, y1 = round((row + 0.25) * row_h), round((row + 0.75) * row_h)
        row_means: list[float] = []
        for col in range(BITS):
            x0, x1 = round((col + 0.25) * cell_w), round((col + 0.75) * cell_w)
            total = sum(sum(frame[y * width + x0 : y * width + x1]) for y in range(y0, y1))
            row_means.append(total / ((y1 - y0) * (x1 - x0)))
        means.append(row_means)
    return means


def read_number(
    frame: bytes | bytearray | memoryview, width: int = READ_WIDTH, height: int = READ_HEIGHT
) -> int:
    """The frame number in one gray (8-bit, row-major) picture; FrameCodeError if unreadable."""
    if len(frame) != width * height:
        raise ValueError(
            f"a {width}x{height} gray frame is {width * height} bytes, not {len(frame)}"
        )
    means = cell_means(frame, width, height)
    bits: list[list[int]] = []
    for row in means:
        row_bits: list[int] = []
        for col, mean in enumerate(row):
            if mean <= DARK_MAX:
                row_bits.append(0)
            elif mean >= LIGHT_MIN:
                row_bits.append(1)
            else:
                shown = " ".join(f"{m:.0f}" for m in row)
                raise FrameCodeError(
                    f"cell {col} is neither black nor white (mean {mean:.0f}); row means {shown}"
                )
        bits.append(row_bits)
    number_bits, check_bits = bits
    bad = [col for col in range(BITS) if number_bits[col] == check_bits[col]]
    if bad:
        raise FrameCodeError(
            f"check row is not the inverse of the number row in columns {bad}: "
            f"number {''.join(map(str, number_bits))}, check {''.join(map(str, check_bits))}"
        )
    return int("".join(map(str, number_bits)), 2)


def iter_gray_frames(
    ffmpeg_exe: str, source: str, *, extra_input_args: Sequence[str] = ()
) -> Generator[bytes, None, None]:
    """Every frame ffmpeg decodes from `source`'s first video stream, in display order, as
    READ_WIDTH x READ_HEIGHT 8-bit gray (row-major), one at a time as ffmpeg writes them.

    `source` is anything ffmpeg opens: a local file, an HLS playlist or an MP4 over http://
    (`extra_input_args` go before `-i`, e.g. `["-live_start_index", "0"]` for a live
    playlist). `-fps_mode passthrough` keeps ffmpeg from duplicating or dropping frames.
    Streaming, so an hour of frames is never held at once (20 kB each, 2 GB an hour).
    DecodeError, once the frames are read, if ffmpeg failed or complained at -v error.
    """
    cmd = [
        ffmpeg_exe,
        *("-hide_banner", "-nostdin", "-v", "error"),
        *extra_input_args,
        *("-i", source),
        *("-map", "0:v:0", "-an", "-sn", "-dn"),
        # area averaging: each output pixel is the mean of what it covers, so cells stay flat
        *("-vf", f"scale={READ_WIDTH}:{READ_HEIGHT}:flags=area,format=gray"),
        *("-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"),
    ]
    size = READ_WIDTH * READ_HEIGHT
    # stderr to a file, not a pipe: nobody reads it until the end, and a full pipe would
    # stall ffmpeg while we wait on its stdout
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
        assert proc.stdout is not None
        try:
            while frame := proc.stdout.read(size):
                if len(frame) != size:
                    proc.wait()
                    raise DecodeError(f"{source}: video ends in a partial frame")
                yield frame
            returncode = proc.wait()
        finally:
            proc.stdout.close()
            if proc.poll() is None:  # the caller stopped early (a frame did not read)
                proc.kill()
                proc.wait()
        log.seek(0)
        errors = log.read().decode(errors="replace").strip()
    if returncode != 0 or errors:
        raise DecodeError(f"{shlex.join(cmd)}\nexit {returncode}: {errors}")


def gray_frames(
    ffmpeg_exe: str, source: str, *, extra_input_args: Sequence[str] = ()
) -> list[bytes]:
    """All of iter_gray_frames at once, for short sources."""
    return list(iter_gray_frames(ffmpeg_exe, source, extra_input_args=extra_input_args))


def frame_numbers(
    ffmpeg_exe: str, source: str, *, extra_input_args: Sequence[str] = ()
) -> list[int]:
    """The number of every frame ffmpeg decodes from `source` (see iter_gray_frames), in order.

    One entry per decoded frame. Raises FrameCodeError naming the frame's position when a
    picture does not read, DecodeError when ffmpeg fails or complains at -v error.
    """
    numbers: list[int] = []
    frames = iter_gray_frames(ffmpeg_exe, source, extra_input_args=extra_input_args)
    for index, frame in enumerate(frames):
        try:
            numbers.append(read_number(frame))
        except FrameCodeError as exc:
            frames.close()  # stops ffmpeg now, not at garbage collection
            raise FrameCodeError(f"{source}: decoded frame {index} (0-based): {exc}") from exc
    return numbers


def decode_audio(
    ffmpeg_exe: str, source: str, *, extra_input_args: Sequence[str] = ()
) -> array[float]:
    """The first audio stream as mono 48 kHz float samples, priming and all, as ffmpeg outputs it."""
    cmd = [
        ffmpeg_exe,
        *("-hide_banner", "-nostdin", "-v", "error"),
        *extra_input_args,
        *("-i", source),
        *("-map", "0:a:0", "-vn", "-sn", "-dn"),
        *("-ac", "1", "-ar", str(AUDIO_RATE), "-f", "f32le", "pipe:1"),
    ]
    samples = array("f")
    samples.frombytes(_run(cmd))
    return samples


def find_onsets(samples: Sequence[float], rate: int = AUDIO_RATE) -> list[float]:
    """Seconds from the first sample to each sample that rises above BEEP_THRESHOLD after at
    least BEEP_QUIET s of quiet (or after the start). A burst already sounding at the first
    sample is not an onset: its true start is not in the output."""
    quiet = round(BEEP_QUIET * rate)
    onsets: list[float] = []
    last_loud: int | None = None
    for index, value in enumerate(samples):
        if abs(value) <= BEEP_THRESHOLD:
            continue
        if last_loud is None:
            if index > 0:
                onsets.append(index / rate)
        elif index - last_loud > quiet:
            onsets.append(index / rate)
        last_loud = index
    return onsets


def beep_onsets(
    ffmpeg_exe: str, source: str, *, extra_input_args: Sequence[str] = ()
) -> list[float]:
    """Where each tone burst begins, in seconds from the first decoded audio sample.

    The decoded output starts wherever the decoder starts it: ffmpeg keeps AAC's 1024 priming
    samples unless the container's edit list trims them (fMP4 from ffmpeg's HLS muxer does
    not). To put the onsets on the video's timeline, add `stream_starts().audio` and compare
    with `stream_starts().video`; `av_offsets` does that.
    """
    return find_onsets(decode_audio(ffmpeg_exe, source, extra_input_args=extra_input_args))


@dataclass(frozen=True)
class StreamStarts:
    """Presentation times (s) of the first decoded video frame and first decoded audio sample,
    on the source's own timeline (ffmpeg -copyts: no shifting to zero)."""

    video: float
    audio: float

    @property
    def video_after_audio(self) -> float:
        """How long after the first audio sample the first picture is shown."""
        return self.video - self.audio


_PTS = re.compile(r"\bpts:\s*(-?\d+)\b")


def _first_pts(ffmpeg_exe: str, source: str, kind: str, extra_input_args: Sequence[str]) -> float:
    """First decoded frame's pts of stream `kind` ('v' or 'a'), in seconds.

    The filter chain first sets the time base to microseconds, so showinfo prints an exact
    integer: its pts_time keeps only 6 significant digits, too few for a long live timeline.
    One stream per ffmpeg run: the two showinfo filters' log lines could interleave.
    """
    chain = "settb=1/1000000,showinfo" if kind == "v" else "asettb=1/1000000,ashowinfo"
    cmd = [
        ffmpeg_exe,
        *("-hide_banner", "-nostdin", "-v", "info", "-copyts"),
        *extra_input_args,
        *("-i", source),
        *("-map", f"0:{kind}:0", f"-{kind}f", chain, f"-frames:{kind}", "1", "-f", "null", "-"),
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    tag = "Parsed_showinfo" if kind == "v" else "Parsed_ashowinfo"
    for line in proc.stderr.splitlines():
        if tag in line and (match := _PTS.search(line)):
            return int(match.group(1)) / 1_000_000
    raise DecodeError(f"{shlex.join(cmd)}\nexit {proc.returncode}, no frame shown:\n{proc.stderr}")


def stream_starts(
    ffmpeg_exe: str, source: str, *, extra_input_args: Sequence[str] = ()
) -> StreamStarts:
    """When the first decoded picture and the first decoded audio sample are presented."""
    return StreamStarts(
        video=_first_pts(ffmpeg_exe, source, "v", extra_input_args),
        audio=_first_pts(ffmpeg_exe, source, "a", extra_input_args),
    )


def av_offsets(
    ffmpeg_exe: str, source: str, *, fps: float = 30.0, extra_input_args: Sequence[str] = ()
) -> list[float]:
    """For each beep in `source`, how late (s, negative = early) the audio is against the video.

    The generator's beep k starts with frame k * fps. The video timeline is taken from the
    frame numbers (they must run without a gap, so frame n is shown at
    `starts.video + (n - first) / fps`), the beep's time from the audio's first timestamp
    plus its sample count (so a gap in the audio's timestamps is not seen). Each offset is
    taken to the nearest whole second, so only offsets under half a second are meaningful.
    """
    numbers = frame_numbers(ffmpeg_exe, source, extra_input_args=extra_input_args)
    if not numbers or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise FrameCodeError(f"{source}: frame numbers do not run without a gap: {numbers}")
    starts = stream_starts(ffmpeg_exe, source, extra_input_args=extra_input_args)
    offsets: list[float] = []
    for onset in beep_onsets(ffmpeg_exe, source, extra_input_args=extra_input_args):
        # where the beep falls in the generator's time, read off the video's timeline
        source_time = numbers[0] / fps + (starts.audio + onset - starts.video)
        offsets.append(source_time - round(source_time))
    return offsets
