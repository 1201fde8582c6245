"""ISO-BMFF box walking over bytes (ISO/IEC 14496-12 §4.2), sans-IO.

pymp4 handles 32-bit box sizes only and copies whatever it parses, so the tree walk
(which must accept 64-bit sizes, `size == 0` and hostile input) is ours; pymp4 then
parses the small leaf boxes we hand it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from packager.errors import BadMedia

_HDR = struct.Struct(">I4s")
_U64 = struct.Struct(">Q")

# Nesting deeper than this is not found in real media; it bounds recursion on hostile input.
MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class Box:
    """Where one box lies inside a buffer: `start` of its header, `end` one past its last byte."""

    type: bytes
    start: int
    header_size: int
    end: int

    @property
    def payload_start(self) -> int:
        return self.start + self.header_size

    @property
    def size(self) -> int:
        return self.end - self.start


def iter_boxes(buf: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """Yield the boxes that tile `buf[start:end]`, checking every declared size against the bytes."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        if end - pos < 8:
            raise BadMedia(f"truncated box header at byte {pos}")
        size, typ = _HDR.unpack_from(buf, pos)
        header = 8
        if size == 1:
            if end - pos < 16:
                raise BadMedia(f"truncated 64-bit box header at byte {pos}")
            (size,) = _U64.unpack_from(buf, pos + 8)
            header = 16
        elif size == 0:  # box extends to the end of its container (§4.2)
            size = end - pos
        if size < header:
            raise BadMedia(f"box {typ!r} at byte {pos} declares size {size} < its header")
        if pos + size > end:
            raise BadMedia(
                f"box {typ!r} at byte {pos} declares {size} bytes, only {end - pos} present"
            )
        yield Box(typ, pos, header, pos + size)
        pos += size


def children(buf: bytes | memoryview, box: Box, skip: int = 0) -> Iterator[Box]:
    """Boxes inside a container; `skip` passes over payload fields before the first child."""
    return iter_boxes(buf, box.payload_start + skip, box.end)


def find(buf: bytes | memoryview, box: Box, typ: bytes, skip: int = 0) -> Box | None:
    """First child of `box` with type `typ`, or None."""
    for child in children(buf, box, skip):
        if child.type == typ:
            return child
    return None


def require(buf: bytes | memoryview, box: Box, typ: bytes, skip: int = 0) -> Box:
    found = find(buf, box, typ, skip)
    if found is None:
        raise BadMedia(f"{box.type.decode('latin-1')} has no {typ.decode('latin-1')} box")
    return found


def find_path(buf: bytes | memoryview, box: Box, *path: bytes) -> Box | None:
    """Follow a chain of first-children, e.g. find_path(b, trak, b"mdia", b"minf", b"stbl")."""
    cur: Box | None = box
    for typ in path:
        if cur is None:
            return None
        cur = find(buf, cur, typ)
    return cur


def box32(buf: bytes | memoryview, box: Box) -> bytes:
    """The box re-headed with a 32-bit size, as pymp4 can only read that form.

    Only used for small leaf boxes (tkhd, trun, ...), so the copy is cheap.
    """
    if box.header_size == 8:
        return bytes(buf[box.start : box.end])
    payload = buf[box.payload_start : box.end]
    size = 8 + len(payload)
    if size >= 2**32:
        raise BadMedia(f"box {box.type!r} too large to parse")
    return _HDR.pack(size, box.type) + bytes(payload)
