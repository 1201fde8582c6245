from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from packager.store.videos import Video, VideoFile, VideoLibrary


def _draft(video_id: str = "a" * 32) -> Video:
    return Video(video_id, "c" * 32, "demo", "goal", 1.0, 2.0, 6.0, spec={"format": "mp4"})


def _info(name: str) -> VideoFile:
    return VideoFile(name, 0, "", 640, 360, "avc1.64001e,mp4a.40.2", 300_000)


def _pieces(*chunks: bytes) -> Iterator[memoryview]:
    return (memoryview(c) for c in chunks)


def test_written_video_has_sizes_hashes_and_survives_a_reload(tmp_path: Path) -> None:
    library = VideoLibrary(tmp_path)
    video = library.write(
        _draft(),
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


def test_a_write_that_fails_leaves_nothing_visible(tmp_path: Path) -> None:
    library = VideoLibrary(tmp_path)

    def broken() -> Iterator[memoryview]:
        yield memoryview(b"partial bytes")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        library.write(_draft(), [(_info("media_1_360"), broken())])
    assert library.get("a" * 32) is None
    assert list((tmp_path / "videos").iterdir()) == []


def test_start_up_sweeps_what_a_crash_left_half_written(tmp_path: Path) -> None:
    library = VideoLibrary(tmp_path)
    library.write(_draft("b" * 32), [(_info("media_1_360"), _pieces(b"ok"))])
    crashed = tmp_path / "videos" / f".{'d' * 32}.partial"
    crashed.mkdir()
    (crashed / "media_1_360.mp4").write_bytes(b"half")
    (tmp_path / "videos" / ("e" * 32)).mkdir()  # no video.json: never completed a rename
    reloaded = VideoLibrary(tmp_path)
    reloaded.load()
    assert list(reloaded.videos) == ["b" * 32]
    assert not crashed.exists()


def test_delete_removes_files(tmp_path: Path) -> None:
    library = VideoLibrary(tmp_path)
    video = library.write(_draft(), [(_info("media_1_360"), _pieces(b"ok"))])
    assert library.delete(video.id)
    assert not (tmp_path / "videos" / video.id).exists()
    assert not library.delete(video.id)
