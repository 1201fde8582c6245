"""Hypothesis strategies for hostile media: the real fixtures, taken apart and put back wrong.

A box tree (`Node`) lets a mutation lie about one box's size, drop, duplicate, retype or
re-nest it, or poke a field a parser trusts (counts, versions, flags, timescales) while every
other size stays true, so the fuzzer reaches the deep checks instead of dying at byte 0.
Fragment headers (tfhd, tfdt, trun) are also rebuilt field by field, with the trun's
data_offset repaired for the moof's new size, so flag combinations get parsed for real.
"""

from __future__ import annotations

import copy
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from hypothesis import strategies as st

from packager.errors import BadMedia
from packager.media.boxes import iter_boxes

LADDER_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "ladder"
RENDITIONS = ("0", "1", "2")
SEGMENTS = 6

CONTAINERS = frozenset(
    {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"edts", b"dinf"}
)
# Boxes with fixed fields before their children: payload bytes to skip (version 0 layouts).
PREFIXED = {b"stsd": 8, b"avc1": 78, b"hvc1": 78, b"hev1": 78, b"mp4a": 28}
KNOWN_TYPES = (
    *sorted(CONTAINERS),
    *sorted(PREFIXED),
    b"ftyp",
    b"styp",
    b"sidx",
    b"mdat",
    b"free",
    b"mvhd",
    b"tkhd",
    b"mdhd",
    b"hdlr",
    b"elst",
    b"trex",
    b"avcC",
    b"hvcC",
    b"esds",
    b"tfhd",
    b"tfdt",
    b"trun",
    b"mfhd",
    b"Opus",
    b"\x00\x00\x00\x00",
)


@cache
def init_bytes(rendition: str) -> bytes:
    return (LADDER_DIR / rendition / f"init_{rendition}.mp4").read_bytes()


@cache
def segment_bytes(rendition: str, index: int) -> bytes:
    return (LADDER_DIR / rendition / f"index{index}.m4s").read_bytes()


# ---- a box tree that can be serialized with lies ------------------------------------------


@dataclass
class Node:
    type: bytes
    payload: bytes = b""  # a leaf's payload, or the fixed fields before a container's children
    children: list[Node] | None = None
    large: bool = False  # 64-bit size form (size field 1, then a u64)
    size_lie: int | None = None  # written in place of the true size
    raw: bytes | None = None  # already-serialized bytes (a nesting bomb), header included


def parse_tree(buf: bytes, start: int = 0, end: int | None = None) -> list[Node]:
    out: list[Node] = []
    for box in iter_boxes(buf, start, end):
        node = Node(box.type, large=box.header_size == 16)
        payload = buf[box.payload_start : box.end]
        skip = PREFIXED.get(box.type)
        if box.type in CONTAINERS:
            node.children = parse_tree(buf, box.payload_start, box.end)
        elif skip is not None and len(payload) >= skip:
            try:
                node.children = parse_tree(buf, box.payload_start + skip, box.end)
                node.payload = payload[:skip]
            except BadMedia:
                node.payload = payload
        else:
            node.payload = payload
        out.append(node)
    return out


def serialize(nodes: list[Node], marks: list[int] | None = None) -> bytes:
    """The tree as bytes; `marks` collects every box start and end (truncation points)."""
    out = bytearray()
    _write(nodes, out, marks if marks is not None else [])
    return bytes(out)


def _write(nodes: list[Node], out: bytearray, marks: list[int]) -> None:
    for node in nodes:
        marks.append(len(out))
        if node.raw is not None:
            out += node.raw
            continue
        body = bytearray(node.payload)
        inner: list[int] = []
        if node.children is not None:
            _write(node.children, body, inner)
        header = 16 if node.large else 8
        size = header + len(body)
        written = size if node.size_lie is None else node.size_lie
        if node.large:
            out += struct.pack(">I4sQ", 1, node.type, written % 2**64)
        else:
            out += struct.pack(">I4s", written % 2**32, node.type)
        marks.extend(len(out) + m for m in inner)
        out += body
        marks.append(len(out))


def flatten(nodes: list[Node]) -> list[tuple[list[Node], int]]:
    """Every node as (its parent's child list, its index), in document order."""
    out: list[tuple[list[Node], int]] = []
    for i, node in enumerate(nodes):
        out.append((nodes, i))
        if node.children is not None:
            out.extend(flatten(node.children))
    return out


def nesting_bomb(types: list[bytes], depth: int, inner: bytes = b"") -> bytes:
    """`depth` boxes each holding the next (types cycled), built in O(depth) without recursion."""
    headers = [
        struct.pack(">I4s", 8 * (depth - i) + len(inner), types[i % len(types)])
        for i in range(depth)
    ]
    return b"".join(headers) + inner


# ---- field pokes: the numbers parsers trust --------------------------------------------------

# (offset in the payload, width in bytes) of fields worth lying about, per box type.
FIELDS: dict[bytes, tuple[tuple[int, int], ...]] = {
    b"mvhd": ((0, 1), (12, 4), (20, 4)),
    b"tkhd": ((0, 1), (12, 4), (76, 4), (80, 4)),
    b"mdhd": ((0, 1), (12, 4), (20, 2)),
    b"hdlr": ((0, 1), (8, 4)),
    b"elst": ((0, 1), (4, 4), (8, 4), (12, 4)),
    b"stsd": ((0, 1), (4, 4)),
    b"trex": ((0, 4), (4, 4), (12, 4), (16, 4), (20, 4)),
    b"avc1": ((24, 2), (26, 2)),
    b"mp4a": ((8, 2), (16, 2), (24, 4)),
    b"avcC": ((0, 1), (1, 1), (2, 1), (3, 1), (5, 1)),
    b"esds": tuple((k, 1) for k in range(4, 40)),
    b"mfhd": ((4, 4),),
    b"tfhd": ((0, 4), (4, 4), (8, 4), (12, 4)),
    b"tfdt": ((0, 1), (4, 4), (8, 4)),
    b"trun": ((0, 4), (4, 4), (8, 4), (12, 4)),
    b"sidx": ((0, 1), (4, 4), (8, 4), (22, 2)),
}


def _interesting(width: int) -> st.SearchStrategy[int]:
    top = 2 ** (8 * width) - 1
    return st.one_of(
        st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xFF, top, top - 1, top // 2, top // 2 + 1]).map(
            lambda v: v & top
        ),
        st.integers(0, top),
    )


@st.composite
def poke(draw: st.DrawFn, payload: bytes, typ: bytes) -> bytes:
    fields = FIELDS.get(typ)
    if fields:
        offset, width = draw(st.sampled_from(fields))
    else:
        width = draw(st.sampled_from([1, 2, 4]))
        offset = draw(st.integers(0, max(0, len(payload) - 1)))
    value = draw(_interesting(width))
    buf = bytearray(payload)
    if offset + width > len(buf):
        buf.extend(b"\x00" * (offset + width - len(buf)))
    buf[offset : offset + width] = value.to_bytes(width, "big")
    return bytes(buf)


# ---- structural mutations ---------------------------------------------------------------------

SIZE_LIES_32 = [0, 1, 2, 7, 8, 9, 15, 16, 2**31, 2**32 - 1]
SIZE_LIES_64 = [0, 1, 8, 15, 16, 17, 2**32, 2**32 + 8, 2**63, 2**64 - 1]


@st.composite
def mutate_tree(draw: st.DrawFn, tree: list[Node], max_ops: int = 4) -> list[Node]:
    tree = copy.deepcopy(tree)
    for _ in range(draw(st.integers(1, max_ops))):
        spots = flatten(tree)
        if not spots:
            break
        parent, i = draw(st.sampled_from(spots))
        node = parent[i]
        op = draw(
            st.sampled_from(
                [
                    "lie",
                    "lie",
                    "large",
                    "drop",
                    "dup",
                    "retype",
                    "poke",
                    "poke",
                    "poke",
                    "payload",
                    "nest",
                    "bomb",
                    "junk",
                ]
            )
        )
        if op == "lie":
            if draw(st.booleans()):
                node.large = True
                node.size_lie = draw(
                    st.one_of(st.sampled_from(SIZE_LIES_64), st.integers(0, 2**64 - 1))
                )
            else:
                node.size_lie = draw(
                    st.one_of(st.sampled_from(SIZE_LIES_32), st.integers(0, 2**32 - 1))
                )
        elif op == "large":
            node.large = True
        elif op == "drop":
            del parent[i]
        elif op == "dup":
            for _ in range(draw(st.integers(1, 12))):
                parent.insert(i, copy.deepcopy(node))
        elif op == "retype":
            node.type = draw(
                st.one_of(st.sampled_from(KNOWN_TYPES), st.binary(min_size=4, max_size=4))
            )
        elif op == "poke":
            node.payload = draw(poke(node.payload, node.type))
        elif op == "payload":
            node.payload = draw(_payload_edit(node.payload))
        elif op == "nest":  # the node, wrapped in a few more of its ancestors' kind
            wrapper = draw(st.sampled_from(sorted(CONTAINERS)))
            for _ in range(draw(st.integers(1, 20))):
                node = Node(wrapper, children=[node])
            parent[i] = node
        elif op == "bomb":
            depth = draw(st.sampled_from([100, 1000, 10_000]))
            types = draw(st.lists(st.sampled_from(sorted(CONTAINERS)), min_size=1, max_size=4))
            parent.insert(i, Node(b"", raw=nesting_bomb(types, depth)))
        else:  # junk boxes the parsers must step over
            count = draw(st.sampled_from([1, 10, 1000]))
            junk = struct.pack(
                ">I4s", 8, draw(st.sampled_from([b"free", b"skip", b"trun", b"traf"]))
            )
            parent.insert(i, Node(b"", raw=junk * count))
    return tree


@st.composite
def _payload_edit(draw: st.DrawFn, payload: bytes) -> bytes:
    how = draw(st.sampled_from(["truncate", "extend", "flip", "random", "empty"]))
    if how == "truncate":
        return payload[: draw(st.integers(0, max(0, len(payload) - 1)))]
    if how == "extend":
        return payload + draw(st.binary(min_size=1, max_size=64))
    if how == "flip" and payload:
        buf = bytearray(payload)
        for _ in range(draw(st.integers(1, 4))):
            k = draw(st.integers(0, len(buf) - 1))
            buf[k] ^= draw(st.integers(1, 255))
        return bytes(buf)
    if how == "random":
        return draw(st.binary(max_size=96))
    return b""


@st.composite
def byte_damage(draw: st.DrawFn, data: bytes, marks: list[int]) -> bytes:
    """Byte-level damage after serialization: flips (mostly in the headers), cuts, garbage."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["flip", "flip", "cut_box", "cut_any", "append", "prepend"]))
        if how == "flip" and buf:
            hot = min(len(buf) - 1, draw(st.sampled_from([64, 2048, len(buf) - 1])))
            k = draw(st.integers(0, hot))
            buf[k] ^= draw(st.integers(1, 255))
        elif how == "cut_box" and marks:
            del buf[min(len(buf), draw(st.sampled_from(marks))) :]
        elif how == "cut_any" and buf:
            del buf[draw(st.integers(0, len(buf) - 1)) :]
        elif how == "append":
            buf += draw(st.binary(min_size=1, max_size=32))
        elif how == "prepend":
            buf[0:0] = draw(st.binary(min_size=1, max_size=16))
    return bytes(buf)


# ---- fragment headers, field by field --------------------------------------------------------

TFHD_FLAGS = (0x1, 0x2, 0x8, 0x10, 0x20, 0x10000, 0x20000)
TRUN_FLAGS = (0x1, 0x4, 0x100, 0x200, 0x400, 0x800)


@dataclass
class Tfhd:
    version: int
    flags: int
    track_id: int
    base_data_offset: int = 0
    sample_description_index: int = 1
    duration: int = 0
    size: int = 0
    sample_flags: int = 0

    @classmethod
    def read(cls, p: bytes) -> Tfhd:
        word, track_id = struct.unpack_from(">II", p)
        t = cls(word >> 24, word & 0xFFFFFF, track_id)
        pos = 8
        for bit, name, fmt in _TFHD_OPTIONAL:
            if t.flags & bit:
                (value,) = struct.unpack_from(fmt, p, pos)
                setattr(t, name, value)
                pos += struct.calcsize(fmt)
        return t

    def payload(self) -> bytes:
        out = struct.pack(">II", (self.version << 24) | self.flags, self.track_id)
        for bit, name, fmt in _TFHD_OPTIONAL:
            if self.flags & bit:
                out += struct.pack(fmt, getattr(self, name))
        return out


_TFHD_OPTIONAL = (
    (0x1, "base_data_offset", ">Q"),
    (0x2, "sample_description_index", ">I"),
    (0x8, "duration", ">I"),
    (0x10, "size", ">I"),
    (0x20, "sample_flags", ">I"),
)


@dataclass
class Trun:
    version: int
    flags: int
    count: int  # what the box declares; `rows` may hold more or fewer
    data_offset: int = 0
    first_flags: int = 0
    rows: list[tuple[int, int, int, int]] = field(default_factory=list)  # dur, size, flags, cts

    @classmethod
    def read(cls, p: bytes) -> Trun:
        word, count = struct.unpack_from(">II", p)
        t = cls(word >> 24, word & 0xFFFFFF, count)
        pos = 8
        if t.flags & 0x1:
            (t.data_offset,) = struct.unpack_from(">i", p, pos)
            pos += 4
        if t.flags & 0x4:
            (t.first_flags,) = struct.unpack_from(">I", p, pos)
            pos += 4
        for _ in range(count):
            row = [0, 0, 0, 0]
            for k, bit in enumerate((0x100, 0x200, 0x400, 0x800)):
                if t.flags & bit:
                    (row[k],) = struct.unpack_from(">I", p, pos)
                    pos += 4
            t.rows.append((row[0], row[1], row[2], row[3]))
        return t

    def payload(self) -> bytes:
        out = bytearray(struct.pack(">II", (self.version << 24) | self.flags, self.count))
        if self.flags & 0x1:
            out += struct.pack(">i", self.data_offset)
        if self.flags & 0x4:
            out += struct.pack(">I", self.first_flags)
        present = [k for k, bit in enumerate((0x100, 0x200, 0x400, 0x800)) if self.flags & bit]
        if present:
            row_fmt = struct.Struct(">" + "I" * len(present))
            for row in self.rows:
                out += row_fmt.pack(*(row[k] for k in present))
        return bytes(out)


U32 = st.integers(0, 2**32 - 1)


@st.composite
def fuzz_tfhd(draw: st.DrawFn, t: Tfhd, track_ids: list[int], moof_start: int) -> Tfhd:
    t = copy.copy(t)
    if draw(st.booleans()):
        t.flags = 0
        for bit in TFHD_FLAGS:
            if draw(st.booleans()):
                t.flags |= bit
        if draw(st.integers(0, 9)) == 0:
            t.flags |= draw(st.integers(0, 0xFFFFFF))
    if t.flags & 0x1:
        t.base_data_offset = draw(
            st.one_of(
                st.just(moof_start),
                st.sampled_from(
                    [0, 2**63, 2**64 - 1, moof_start + 8, moof_start - 1 if moof_start else 0]
                ),
                st.integers(0, 2**64 - 1),
            )
        )
    t.track_id = draw(
        st.one_of(st.just(t.track_id), st.sampled_from([*track_ids, 0, 7, 2**32 - 1]))
    )
    t.sample_description_index = draw(st.one_of(st.just(1), U32))
    t.duration = draw(
        st.one_of(st.just(t.duration or 512), st.sampled_from([0, 1, 2**32 - 1]), U32)
    )
    t.size = draw(st.one_of(st.just(t.size), st.sampled_from([0, 1, 2**31, 2**32 - 1]), U32))
    t.sample_flags = draw(st.one_of(st.just(t.sample_flags), st.sampled_from([0, 0x10000]), U32))
    t.version = draw(st.sampled_from([t.version, 1, 255]))
    return t


@st.composite
def fuzz_trun(draw: st.DrawFn, t: Trun) -> Trun:
    t = copy.deepcopy(t)
    if draw(st.booleans()):
        t.flags = 0
        for bit in TRUN_FLAGS:
            if draw(st.booleans()):
                t.flags |= bit
        if draw(st.integers(0, 9)) == 0:
            t.flags |= draw(st.integers(0, 0xFFFFFF))
    t.version = draw(st.sampled_from([t.version, 0, 1, 2]))
    how = draw(st.sampled_from(["keep", "keep", "small", "huge", "lie", "rows"]))
    if how == "small":
        t.count = draw(st.integers(0, 3))
        t.rows = t.rows[: t.count]
    elif how == "huge":  # with or without per-sample fields: the box may be tiny
        t.count = draw(st.sampled_from([199_999, 200_000, 200_001, 2**31, 2**32 - 1]))
        if draw(st.booleans()):
            t.rows = []
    elif how == "lie":
        t.count = draw(st.one_of(st.sampled_from([len(t.rows) + 1, max(0, len(t.rows) - 1)]), U32))
    elif how == "rows":  # every row rewritten: sizes, durations and offsets that lie
        n = draw(st.integers(0, len(t.rows)))
        rows = []
        for dur, size, flags, cts in t.rows[:n]:
            rows.append(
                (
                    draw(st.one_of(st.just(dur), st.sampled_from([0, 2**32 - 1]))),
                    draw(st.one_of(st.just(size), st.sampled_from([0, 2**31, 2**32 - 1]), U32)),
                    draw(st.one_of(st.just(flags), st.sampled_from([0, 0x10000]), U32)),
                    draw(st.one_of(st.just(cts), st.sampled_from([0, 2**31, 2**32 - 1]))),
                )
            )
        t.rows = rows
        t.count = n
    return t


@st.composite
def fuzz_fragment(draw: st.DrawFn, data: bytes, track_ids: list[int]) -> bytes:
    """A real segment with random tfhd/tfdt/trun fields, its other sizes kept true."""
    tree = parse_tree(data)
    before = {id(n): len(serialize([n])) for n in tree if n.type == b"moof"}
    repairs: list[tuple[Node, Node, Trun]] = []
    pos = 0
    for top in tree:
        start = pos
        pos += len(serialize([top]))
        if top.type != b"moof" or top.children is None:
            continue
        for traf in top.children:
            if traf.type != b"traf" or traf.children is None:
                continue
            for leaf in traf.children:
                if leaf.type == b"tfhd" and len(leaf.payload) >= 8 and draw(st.booleans()):
                    leaf.payload = draw(
                        fuzz_tfhd(Tfhd.read(leaf.payload), track_ids, start)
                    ).payload()
                elif leaf.type == b"tfdt" and len(leaf.payload) >= 8 and draw(st.booleans()):
                    (word,) = struct.unpack_from(">I", leaf.payload)
                    version = word >> 24
                    value = int.from_bytes(leaf.payload[4:], "big")
                    version = draw(st.sampled_from([version, 0, 1, 2]))
                    value = draw(
                        st.one_of(st.just(value), st.sampled_from([0, 2**32 - 1, 2**32, 2**64 - 1]))
                    )
                    leaf.payload = bytes([version, 0, 0, 0]) + (
                        value.to_bytes(8, "big")
                        if version == 1
                        else (value % 2**32).to_bytes(4, "big")
                    )
                elif leaf.type == b"trun" and len(leaf.payload) >= 8:
                    try:
                        model = Trun.read(leaf.payload)
                    except struct.error:
                        continue
                    if draw(st.booleans()):
                        model = draw(fuzz_trun(model))
                    if draw(st.integers(0, 4)) == 0:
                        model.data_offset = draw(
                            st.one_of(
                                st.sampled_from([0, -1, -(2**31), 2**31 - 1]),
                                st.integers(-(2**31), 2**31 - 1),
                            )
                        )
                        leaf.payload = model.payload()
                    else:
                        repairs.append((top, leaf, model))
    # Repair pass: the moof grew or shrank, so data offsets relative to it move by as much.
    for _, leaf, model in repairs:
        leaf.payload = model.payload()
    for moof, leaf, model in repairs:
        delta = len(serialize([moof])) - before[id(moof)]
        repaired = copy.copy(model)
        repaired.data_offset = max(-(2**31), min(2**31 - 1, model.data_offset + delta))
        leaf.payload = repaired.payload()
    return serialize(tree)


# ---- the inputs the parsers get -------------------------------------------------------------

rendition_ids = st.sampled_from(RENDITIONS)
segment_indexes = st.integers(0, SEGMENTS - 1)


@cache
def init_tree(rendition: str) -> list[Node]:
    return parse_tree(init_bytes(rendition))


@cache
def segment_tree(rendition: str, index: int) -> list[Node]:
    return parse_tree(segment_bytes(rendition, index))


@st.composite
def hostile_init(draw: st.DrawFn) -> bytes:
    rendition = draw(rendition_ids)
    how = draw(st.sampled_from(["tree", "tree", "tree", "bytes", "bomb", "random"]))
    if how == "random":
        return draw(st.binary(max_size=2048))
    if how == "bomb":
        depth = draw(st.sampled_from([17, 1000, 10_000]))
        path = [b"moov", b"trak", b"mdia", b"minf", b"stbl"]
        return nesting_bomb(draw(st.permutations(path)), depth)
    marks: list[int] = []
    tree = init_tree(rendition)
    if how == "tree":
        tree = draw(mutate_tree(tree))
    data = serialize(tree, marks)
    return draw(byte_damage(data, marks)) if draw(st.booleans()) or how == "bytes" else data


@st.composite
def hostile_segment(draw: st.DrawFn, rendition: str | None = None) -> bytes:
    rendition = rendition or draw(rendition_ids)
    index = draw(segment_indexes)
    how = draw(st.sampled_from(["fields", "fields", "tree", "both", "bytes", "bomb", "random"]))
    if how == "random":
        return draw(st.binary(max_size=4096))
    if how == "bomb":
        depth = draw(st.sampled_from([17, 1000, 10_000]))
        types = draw(
            st.lists(st.sampled_from([b"moof", b"traf", b"trun", b"mdat"]), min_size=1, max_size=3)
        )
        return nesting_bomb(types, depth)
    data = segment_bytes(rendition, index)
    if how in ("fields", "both"):
        data = draw(fuzz_fragment(data, [1, 2]))
    marks: list[int] = []
    if how in ("tree", "both"):
        data = serialize(draw(mutate_tree(parse_tree(data))), marks)
    elif how == "bytes":
        serialize(parse_tree(data), marks)  # only for the box boundaries
    if how == "bytes" or draw(st.integers(0, 3)) == 0:
        data = draw(byte_damage(data, marks))
    return data


# ---- playlists an encoder (or an attacker) sends ----------------------------------------------

_PDT = st.one_of(
    st.sampled_from(
        [
            "2026-11-25T19:08:46.435+0000",
            "2026-11-25T19:08:46Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999+00:00",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "2026-11-25T19:08:46",
            "2026-02-30T00:00:00Z",
            "not a date",
            "",
            "1e400",
        ]
    ),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(lambda d: d.isoformat()),
)
_NUMBER_TEXT = st.one_of(
    st.sampled_from(["2.000000", "0", "-2", "nan", "inf", "-inf", "1e308", "1e400", "", "x", "2,"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**70), 2**70).map(str),
)
_URI = st.one_of(
    st.sampled_from(["index0.m4s", "index1.m4s", "live3.m4s", "a/b/index2.m4s?x=1", "../x", ""]),
    st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s),
)


@st.composite
def hostile_playlist(draw: st.DrawFn) -> bytes:
    lines = [] if draw(st.integers(0, 9)) == 0 else ["#EXTM3U"]
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(
            st.sampled_from(
                ["inf", "inf", "pdt", "pdt", "uri", "uri", "disc", "map", "tag", "variant", "text"]
            )
        )
        if kind == "inf":
            lines.append(f"#EXTINF:{draw(_NUMBER_TEXT)},{draw(st.text(max_size=8))}")
        elif kind == "pdt":
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{draw(_PDT)}")
        elif kind == "uri":
            lines.append(draw(_URI))
        elif kind == "disc":
            lines.append("#EXT-X-DISCONTINUITY")
        elif kind == "map":
            lines.append(f'#EXT-X-MAP:URI="{draw(_URI)}",BYTERANGE="{draw(_NUMBER_TEXT)}"')
        elif kind == "tag":
            tag = draw(
                st.sampled_from(
                    [
                        "TARGETDURATION",
                        "MEDIA-SEQUENCE",
                        "VERSION",
                        "BYTERANGE",
                        "DISCONTINUITY-SEQUENCE",
                        "KEY",
                        "PART",
                        "SKIP",
                        "DATERANGE",
                    ]
                )
            )
            lines.append(f"#EXT-X-{tag}:{draw(_NUMBER_TEXT)}")
        elif kind == "variant":
            lines.append(f"#EXT-X-STREAM-INF:BANDWIDTH={draw(_NUMBER_TEXT)}")
        else:
            lines.append(draw(st.text(max_size=40)))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines) + "\n"
    if draw(st.integers(0, 9)) == 0:
        text = "\ufeff" + text
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:
        data += draw(st.binary(min_size=1, max_size=8))  # not UTF-8 any more, maybe
    return data
