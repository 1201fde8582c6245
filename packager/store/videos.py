"""Durable VOD copies of clips (`vod_required`): MP4 files on disk that outlive the clip.

A video is written into a hidden `.{id}.partial/` directory (each file fsynced), then the
directory is renamed into place and its parent fsynced: a crash at any moment leaves either
the whole video or nothing visible, and start-up sweeps away what a crash left half done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

VIDEO_ID = re.compile(r"[0-9a-f]{32}")
META = "video.json"


@dataclass(frozen=True, slots=True)
class VideoFile:
    rendition: str  # "media_{n}_{height}"
    size: int
    sha256: str
    width: int
    height: int
    codecs: str
    bandwidth: int  # average bits per second


@dataclass(frozen=True, slots=True)
class Video:
    id: str
    clip_id: str
    stream_id: str
    name: str | None
    created_at: float
    start: float
    duration: float
    files: tuple[VideoFile, ...] = ()
    private: bool = False  # downloads need a signed link, as the clip's playback did
    spec: dict[str, Any] = field(default_factory=dict)  # the clip's videoSpec, for listings

    @property
    def master(self) -> VideoFile:
        """The highest rendition, as `mp4_master` serves it."""
        return self.files[-1]

    def file(self, rendition: str) -> VideoFile | None:
        return next((f for f in self.files if f.rendition == rendition), None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Video:
        files = tuple(VideoFile(**f) for f in data.pop("files"))
        return Video(files=files, **data)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class VideoLibrary:
    """The saved videos under `<data dir>/videos/`, indexed in memory."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "videos"
        self.videos: dict[str, Video] = {}
        self._mapped: dict[tuple[str, str], memoryview] = {}

    def load(self) -> None:
        """Index what is on disk; drop what a crash left half written."""
        self.root.mkdir(parents=True, exist_ok=True)
        for entry in self.root.iterdir():
            if entry.name.endswith(".partial"):
                shutil.rmtree(entry, ignore_errors=True)
                log.warning("removed a half-written video %s", entry.name)
            elif VIDEO_ID.fullmatch(entry.name) and (entry / META).is_file():
                try:
                    video = Video.from_json(json.loads((entry / META).read_text()))
                except (OSError, ValueError, TypeError, KeyError) as exc:
                    log.error("unreadable video %s: %s", entry.name, exc)
                    continue
                self.videos[video.id] = video

    def get(self, video_id: str) -> Video | None:
        return self.videos.get(video_id)

    def path(self, video: Video, rendition: str) -> Path:
        return self.root / video.id / f"{rendition}.mp4"

    def view(self, video: Video, rendition: str) -> memoryview:
        """The saved file mapped read-only: served as views, like a clip's segments, so a
        download or a Range costs pages the kernel already caches, not reads into buffers."""
        key = (video.id, rendition)
        mapped = self._mapped.get(key)
        if mapped is None:
            with self.path(video, rendition).open("rb") as f:
                mapped = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
            self._mapped[key] = mapped
        return mapped

    def write(
        self, video: Video, bodies: Iterable[tuple[VideoFile, Iterator[memoryview]]]
    ) -> Video:
        """Write every rendition, then make the whole video visible at once. Blocking: run it
        in a thread. `bodies` give each file's description (size and hash are filled here)."""
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.root / f".{video.id}.partial"
        partial.mkdir()
        try:
            files = [self._write_file(partial, info, pieces) for info, pieces in bodies]
            done = Video(**{**video.to_json(), "files": tuple(files)})
            meta = partial / META
            with meta.open("w") as f:
                json.dump(done.to_json(), f)
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(partial)
            os.rename(partial, self.root / video.id)
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        self.videos[done.id] = done
        return done

    @staticmethod
    def _write_file(directory: Path, info: VideoFile, pieces: Iterator[memoryview]) -> VideoFile:
        digest = hashlib.sha256()
        size = 0
        with (directory / f"{info.rendition}.mp4").open("wb") as f:
            for piece in pieces:
                f.write(piece)
                digest.update(piece)
                size += len(piece)
            f.flush()
            os.fsync(f.fileno())
        return VideoFile(**{**asdict(info), "size": size, "sha256": digest.hexdigest()})

    def delete(self, video_id: str) -> bool:
        video = self.videos.pop(video_id, None)
        if video is None:
            return False
        for f in video.files:  # a download under way keeps its mapping until it ends
            self._mapped.pop((video_id, f.rendition), None)
        # Rename first so a crash mid-delete leaves a partial that start-up removes.
        doomed = self.root / f".{video_id}.deleting.partial"
        os.rename(self.root / video_id, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return True
