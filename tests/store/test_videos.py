from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from packager.store.videos import Video, VideoFile, VideoLibrary


def _draft(library: VideoLibrary, clip_id: str = "c" * 32) -> Video:
    video_id, slug = library.reserve()
    return Video(video_id, slug, clip_id, "demo", "goal", 1.0, 2.0, 6.0, spec={"format": "mp4"})


def _info(name: str) -> VideoFile:
    return VideoFile(name, 0, "", 640, 360, "avc1.64001e,mp4a.40.2", 300_000)


def _pieces(*chunks: bytes) -> Iterator[memoryview]:
    return (memoryview(c) for c in chunks)


def test_written_video_has_sizes_hashes_and_survives_a_reload(tmp_path: Path) -> None:
    library = VideoLibrary(tmp_path)
    video = library.write(
        _draft(library),
        [
            (_info("media_1_360"), _pieces(b"abc", b"def")),
            (_info("media_2_720"), _pieces(b"x" * 10)),
        ],
    )
    assert [(f.rendition, f.size) for f in video.files] == [("media_1_360", 6), ("media_2_720", 10)]
    assert video.files[0].sha256 == hashlib.sha256(b"abcdef").hexdigest()
    assert library.path(video, "media_1_360").read_bytes() == b"abcdef"
    again = VideoLibrary(tmp_path)
    again.load()
    assert again.get(video.id) == video
    assert again.get(video.id).master.rendition == "media_2_720"  # type: ignore[union-attr]
    assert again.by_slug(video.slug) == video and again.for_clip("c" * 32) == video


def test_a_write_that_fails_leaves_nothing_visible(tmp_path: Path) -> None:
    library = VideoLibrary(tmp_path)

    def broken() -> Iterator[memoryview]:
        yield memoryview(b"partial bytes")
        raise OSError("disk full")

    draft = _draft(library)
    with pytest.raises(OSError, match="disk full"):
        library.write(draft, [(_info("media_1_360"), broken())])
    assert library.get(draft.id) is None and library.by_slug(draft.slug) is None
    assert [p.name for p in (tmp_path / "videos").iterdir()] == ["next_id"]


def test_start_up_sweeps_what_a_crash_left_half_written(tmp_path: Path) -> None:
    library = VideoLibrary(tmp_path)
    kept = library.write(_draft(library), [(_info("media_1_360"), _pieces(b"ok"))])
    crashed = tmp_path / "videos" / f".{'d' * 32}.partial"
    crashed.mkdir()
    (crashed / "media_1_360.mp4").write_bytes(b"half")
    (tmp_path / "videos" / ("e" * 32)).mkdir()  # no video.json: never completed a rename
    (tmp_path / "videos" / ".next_id.partial").write_text("9")  # a counter write cut short
    reloaded = VideoLibrary(tmp_path)
    reloaded.load()
    assert list(reloaded.videos) == [kept.id]
    assert not crashed.exists() and not (tmp_path / "videos" / ".next_id.partial").exists()


def test_delete_removes_files(tmp_path: Path) -> None:
    library = VideoLibrary(tmp_path)
    video = library.write(_draft(library), [(_info("media_1_360"), _pieces(b"ok"))])
    assert library.delete(video.id)
    assert not (tmp_path / "videos" / video.slug).exists()
    assert library.by_slug(video.slug) is None and library.for_clip(video.clip_id) is None
    assert not library.delete(video.id)


def test_ids_count_up_and_are_never_reused_across_restarts(tmp_path: Path) -> None:
    library = VideoLibrary(tmp_path)
    library.load()
    first = library.write(_draft(library, "1" * 32), [(_info("media_1_360"), _pieces(b"a"))])
    second = library.write(_draft(library, "2" * 32), [(_info("media_1_360"), _pieces(b"b"))])
    assert (first.id, second.id) == (1, 2)
    assert first.slug != second.slug and len(first.slug) == 32
    library.delete(second.id)  # the highest id is gone, but the counter remembers it
    restarted = VideoLibrary(tmp_path)
    restarted.load()
    assert restarted.get(1) == first
    third = restarted.write(_draft(restarted, "3" * 32), [(_info("media_1_360"), _pieces(b"c"))])
    assert third.id == 3


def test_a_lost_counter_continues_after_the_highest_saved_id(tmp_path: Path) -> None:
    library = VideoLibrary(tmp_path)
    for n in range(3):
        library.write(_draft(library, str(n) * 32), [(_info("media_1_360"), _pieces(b"x"))])
    (tmp_path / "videos" / "next_id").unlink()
    restarted = VideoLibrary(tmp_path)
    restarted.load()
    assert restarted.reserve()[0] == 4


def test_a_video_saved_with_a_hex_id_keeps_it_as_its_slug(tmp_path: Path) -> None:
    """Videos saved before ids were integers: their links (the hex id) go on working."""
    old = tmp_path / "videos" / ("a" * 32)
    old.mkdir(parents=True)
    (old / "media_1_360.mp4").write_bytes(b"old bytes")
    meta: dict[str, object] = {
        "id": "a" * 32,
        "clip_id": "c" * 32,
        "stream_id": "demo",
        "name": None,
        "created_at": 1.0,
        "start": 2.0,
        "duration": 6.0,
        "files": [
            asdict(
                VideoFile(
                    "media_1_360", 9, hashlib.sha256(b"old bytes").hexdigest(), 640, 360, "avc1", 1
                )
            )
        ],
        "private": False,
        "spec": {},
    }
    (old / "video.json").write_text(json.dumps(meta))
    library = VideoLibrary(tmp_path)
    library.load()
    video = library.by_slug("a" * 32)
    assert video is not None and video.id == 1
    assert bytes(library.view(video, "media_1_360")) == b"old bytes"
    again = VideoLibrary(tmp_path)  # the id it got is written down: the same after a restart
    again.load()
    assert again.by_slug("a" * 32) == video
    assert again.reserve()[0] == 2


def _saved(tmp_path: Path) -> tuple[VideoLibrary, Video]:
    library = VideoLibrary(tmp_path)
    library.load()
    video = library.write(
        _draft(library),
        [(_info("media_1_360"), _pieces(b"abc" * 100)), (_info("media_2_720"), _pieces(b"x" * 99))],
    )
    return library, video


def _reloaded(tmp_path: Path, video_id: int) -> Video:
    library = VideoLibrary(tmp_path)
    library.load()
    video = library.get(video_id)
    assert video is not None
    return video


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: p.write_bytes(b""), "holds 0 bytes"),
        (lambda p: p.unlink(), "is missing"),
        (lambda p: p.write_bytes(b"abc"), "holds 3 bytes"),
    ],
    ids=["emptied", "missing", "truncated"],
)
def test_a_video_whose_files_do_not_check_out_is_damaged_at_load(
    tmp_path: Path, damage: object, problem: str
) -> None:
    library, video = _saved(tmp_path)
    damage(library.path(video, "media_2_720"))  # type: ignore[operator]
    again = _reloaded(tmp_path, video.id)
    assert again.status == "damaged" and not again.intact
    assert again.problem is not None and problem in again.problem


def test_a_manifest_without_files_is_damaged(tmp_path: Path) -> None:
    _, video = _saved(tmp_path)
    meta = tmp_path / "videos" / video.slug / "video.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "files": []}))
    again = _reloaded(tmp_path, video.id)
    assert again.status == "damaged" and again.problem == "its manifest lists no files"


def test_a_digest_mismatch_is_found_by_the_background_check(tmp_path: Path) -> None:
    library, video = _saved(tmp_path)
    path = library.path(video, "media_1_360")
    body = bytearray(path.read_bytes())
    body[150] ^= 1  # same size, one bit off: only the hash can tell
    path.write_bytes(bytes(body))
    again = VideoLibrary(tmp_path)
    again.load()
    assert again.get(video.id).intact  # type: ignore[union-attr]
    (damaged,) = again.verify()
    assert damaged.id == video.id and "sha256" in (damaged.problem or "")
    assert not again.get(video.id).intact  # type: ignore[union-attr]


def test_a_save_cut_short_by_a_stopped_process_is_listed_as_failed(tmp_path: Path) -> None:
    """As a kill -9 mid-write leaves it: the manifest, half a file, no rename."""
    library = VideoLibrary(tmp_path)
    library.load()
    draft = _draft(library)
    partial = tmp_path / "videos" / f".{draft.slug}.partial"
    partial.mkdir()
    (partial / "video.json").write_text(json.dumps(draft.to_json()))
    (partial / "media_1_360.mp4").write_bytes(b"half a fi")
    again = _reloaded(tmp_path, draft.id)
    assert again.status == "failed" and again.files == ()
    assert again.problem is not None and "interrupted" in again.problem
    assert not partial.exists() and (tmp_path / "videos" / draft.slug).is_dir()
    assert _reloaded(tmp_path, draft.id).status == "failed"  # and it stays so
