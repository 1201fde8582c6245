"""Whether a segment decodes from its first sample on: the question behind INDEPENDENT-SEGMENTS
and behind where a cut may start (sans-IO).

A sync sample is not always enough. x265's default open GOP starts each GOP with a CRA picture
followed (in decode order) by RASL pictures that reference the previous GOP: a decoder that
starts at the CRA drops them (3 frames a cut in ffmpeg), so such a segment does not stand on
its own and a cut must take the segment before it too.
"""

from __future__ import annotations

from packager.errors import BadMedia
from packager.media.model import Track, TrackSamples
from packager.media.nal import hevc_is_leading_skipped, nal_types

_CRA = 21
_HEVC = ("hvc1", "hev1")
LEADING_WINDOW = 32  # samples after an IRAP looked at for leading pictures (a GOP's reorder depth)


def decodable_from_start(track: Track, samples: TrackSamples, data: bytes) -> bool:
    """True if decoding from this run's first sample shows every frame after it."""
    if not samples.count or not samples.sync[0]:
        return False
    if not track.codec.startswith(_HEVC):
        return True
    try:
        first = nal_types(_sample(samples, data, 0), track.nal_length_size, hevc=True)
        if _CRA not in first:
            return True  # IDR or BLA: no picture after it looks back
        for i in range(1, min(samples.count, LEADING_WINDOW)):
            types = nal_types(_sample(samples, data, i), track.nal_length_size, hevc=True)
            if hevc_is_leading_skipped(types):
                return False
            vcl = [t for t in types if t < 32]
            if vcl and vcl[0] not in (6, 7):  # past the leading pictures (RADL decodes)
                break
    except BadMedia:
        return False  # unreadable NAL units: do not promise anything
    return True


def _sample(samples: TrackSamples, data: bytes, i: int) -> memoryview:
    offset = samples.offsets[i]
    return memoryview(data)[offset : offset + samples.sizes[i]]
