"""Durable VOD copies of clips (`vod_required`): MP4 files on disk that outlive the clip.

A video is written into a hidden `.{slug}.partial/` directory (each file fsynced), then the
directory is renamed into place and its parent fsynced: a crash at any moment leaves either
the whole video or nothing visible, and start-up sweeps away what a crash left half done.

A video on disk is trusted only as far as it checks out: at load, a manifest with no files, a
file missing or of another size than recorded (0 bytes included) marks it `damaged`, and a
background pass compares every file's sha256 with the manifest's; a damaged video is listed
with what is wrong and its downloads answer 410, never a 500 or bytes that are not it. A save
a stopped process left half done (its `.partial` directory holds the manifest written first)
is listed as `failed` after a restart, not silently forgotten.

A video has two names. `id` is an integer, as Gcore's API types `video_id`: handed out in
order from a counter kept on disk beside the videos, so it is stable across restarts and
never reused. `slug` is 128 random bits (Gcore's name for the same thing): the public
download links carry it, so knowing one id tells nothing about another video's files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SLUG = re.compile(r"[0-9a-f]{32}")
VIDEO_ID = re.compile(r"[1-9][0-9]{0,17}")  # an int64 in decimal, as a path segment
META = "video.json"
NEXT_ID = "next_id"  # the counter: the id the next video gets
READY, DAMAGED, FAILED = "ready", "damaged", "failed"


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
    id: int
    slug: str  # the capability in public download links
    clip_id: str
    stream_id: str
    name: str | None
    created_at: float
    start: float
    duration: float
    files: tuple[VideoFile, ...] = ()
    private: bool = False  # downloads need a signed link, as the clip's playback did
    spec: dict[str, Any] = field(default_factory=dict)  # the clip's videoSpec, for listings
    status: str = READY  # READY, DAMAGED or FAILED
    problem: str | None = None  # what is wrong with a damaged or failed video

    @property
    def intact(self) -> bool:
        return self.status == READY

    @property
    def master(self) -> VideoFile | None:
        """The highest rendition, as `mp4_master` serves it (none for a failed save)."""
        return self.files[-1] if self.files else None

    def file(self, rendition: str) -> VideoFile | None:
        return next((f for f in self.files if f.rendition == rendition), None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Video:
        files = tuple(VideoFile(**f) for f in data.pop("files"))
        return Video(files=files, **data)


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` whole or not at all (a crash leaves the old or the new text)."""
    tmp = path.with_name(f".{path.name}.partial")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    _fsync_dir(path.parent)


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
        self.videos: dict[int, Video] = {}
        self._by_slug: dict[str, Video] = {}
        self._by_clip: dict[str, Video] = {}
        self._mapped: dict[tuple[str, str], memoryview] = {}
        self._next_id = 1
        self._id_lock = threading.Lock()  # reserve() runs in worker threads
        self._stop_verify = threading.Event()  # shutdown does not wait for a long hash

    def load(self) -> None:
        """Index what is on disk; drop what a crash left half written."""
        self.root.mkdir(parents=True, exist_ok=True)
        legacy: list[tuple[Path, dict[str, Any]]] = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.endswith(".partial"):
                self._interrupted(entry)
            elif SLUG.fullmatch(entry.name) and (entry / META).is_file():
                try:
                    data = json.loads((entry / META).read_text())
                    if isinstance(data.get("id"), str):  # saved before ids were integers
                        legacy.append((entry, data))
                        continue
                    video = self._checked(Video.from_json(data))
                except (OSError, ValueError, TypeError, KeyError) as exc:
                    log.error("unreadable video %s: %s", entry.name, exc)
                    continue
                self._index(video)
        self._next_id = max([self._read_counter(), *(v.id + 1 for v in self.videos.values())])
        for entry, data in legacy:
            self._upgrade(entry, data)

    def _interrupted(self, partial: Path) -> None:
        """A `.partial` left by a save a stopped process did not finish: if its manifest made
        it to disk, the video is kept as FAILED (listed, saying why); else nothing is left."""
        data: dict[str, Any] | None = None
        if partial.is_dir() and not partial.name.endswith(".deleting.partial"):
            try:
                data = json.loads((partial / META).read_text())
            except (OSError, ValueError):
                data = None
        try:
            if data is None:
                raise ValueError("no manifest")
            video = Video.from_json(data)
            failed = replace(
                video,
                files=(),
                status=FAILED,
                problem="the save was interrupted: the process stopped before it was done",
            )
            final = self.root / failed.slug
            for leftover in partial.iterdir():
                leftover.unlink()
            _write_atomically(partial / META, json.dumps(failed.to_json()))
            os.rename(partial, final)
            _fsync_dir(self.root)
            self._index(failed)
            log.warning("video %s: its save was interrupted; listed as failed", failed.id)
        except (OSError, ValueError, TypeError, KeyError):
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink(missing_ok=True)
            log.warning("removed a half-written %s", partial.name)

    def _checked(self, video: Video) -> Video:
        """The video as its files on disk say: damaged if one is missing or of the wrong size."""
        if not video.intact:
            return video
        problem = None
        if not video.files:
            problem = "its manifest lists no files"
        for f in video.files:
            try:
                size = self.path(video, f.rendition).stat().st_size
            except OSError:
                problem = f"{f.rendition}.mp4 is missing"
                break
            if size == 0 or size != f.size:
                problem = f"{f.rendition}.mp4 holds {size} bytes, not the {f.size} saved"
                break
        if problem is None:
            return video
        log.error("video %s is damaged: %s", video.id, problem)
        return replace(video, status=DAMAGED, problem=problem)

    def verify(self) -> list[Video]:
        """Hash every intact video's files against their manifest (blocking: a thread's work,
        once after start-up); what does not match is marked damaged. Returns those."""
        damaged: list[Video] = []
        for video in list(self.videos.values()):
            if not video.intact:
                continue
            for f in video.files:
                digest = hashlib.sha256()
                try:
                    with self.path(video, f.rendition).open("rb") as fh:
                        while block := fh.read(1 << 20):
                            if self._stop_verify.is_set():
                                return damaged
                            digest.update(block)
                except OSError as exc:
                    problem = f"{f.rendition}.mp4 cannot be read: {exc.strerror}"
                else:
                    if digest.hexdigest() == f.sha256:
                        continue
                    problem = f"{f.rendition}.mp4 does not match its sha256"
                bad = replace(video, status=DAMAGED, problem=problem)
                if self.videos.get(video.id) is video:  # not deleted meanwhile
                    self._index(bad)
                    self._mapped.pop((video.slug, f.rendition), None)
                    damaged.append(bad)
                log.error("video %s is damaged: %s", video.id, problem)
                break
        return damaged

    def stop_verifying(self) -> None:
        self._stop_verify.set()

    def _read_counter(self) -> int:
        try:
            return max(1, int((self.root / NEXT_ID).read_text()))
        except FileNotFoundError:
            return 1
        except ValueError:
            log.error("unreadable %s: ids continue after the highest saved video", NEXT_ID)
            return 1

    def _upgrade(self, entry: Path, data: dict[str, Any]) -> None:
        """A video saved with a hex id keeps it as its slug, so its links go on working,
        and gets the next integer id, written back so it stays the same."""
        try:
            video = Video.from_json({**data, "id": self.reserve()[0], "slug": data["id"]})
            if video.slug != entry.name:
                raise ValueError(f"its id {video.slug!r} is not its directory's name")
            _write_atomically(entry / META, json.dumps(video.to_json()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.error("unreadable video %s: %s", entry.name, exc)
            return
        self._index(video)

    def _index(self, video: Video) -> None:
        self.videos[video.id] = video
        self._by_slug[video.slug] = video
        self._by_clip[video.clip_id] = video

    def reserve(self) -> tuple[int, str]:
        """A new video's id and slug. The counter is on disk before the id is used, so no
        id is handed out twice, even after a crash or a delete."""
        with self._id_lock:
            self.root.mkdir(parents=True, exist_ok=True)
            video_id = self._next_id
            _write_atomically(self.root / NEXT_ID, str(video_id + 1))
            self._next_id = video_id + 1
        return video_id, secrets.token_hex(16)

    def get(self, video_id: int) -> Video | None:
        return self.videos.get(video_id)

    def by_slug(self, slug: str) -> Video | None:
        return self._by_slug.get(slug)

    def for_clip(self, clip_id: str) -> Video | None:
        """The saved copy of a clip, if it has one."""
        return self._by_clip.get(clip_id)

    def path(self, video: Video, rendition: str) -> Path:
        return self.root / video.slug / f"{rendition}.mp4"

    def view(self, video: Video, rendition: str) -> memoryview:
        """The saved file mapped read-only: served as views, like a clip's segments, so a
        download or a Range costs pages the kernel already caches, not reads into buffers."""
        key = (video.slug, rendition)
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
        in a thread. `video`'s id and slug come from `reserve()`; `bodies` give each file's
        description (size and hash are filled here)."""
        if not SLUG.fullmatch(video.slug):
            raise ValueError(f"not a slug from reserve(): {video.slug!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.root / f".{video.slug}.partial"
        partial.mkdir()
        try:
            # The manifest first: a save cut short is then known after a restart (failed).
            _write_atomically(partial / META, json.dumps(video.to_json()))
            files = [self._write_file(partial, info, pieces) for info, pieces in bodies]
            done = replace(video, files=tuple(files))
            meta = partial / META
            with meta.open("w") as f:
                json.dump(done.to_json(), f)
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(partial)
            os.rename(partial, self.root / video.slug)
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        self._index(done)
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

    def delete(self, video_id: int) -> bool:
        video = self.videos.pop(video_id, None)
        if video is None:
            return False
        self._by_slug.pop(video.slug, None)
        if self._by_clip.get(video.clip_id) is video:
            del self._by_clip[video.clip_id]
        for f in video.files:  # a download under way keeps its mapping until it ends
            self._mapped.pop((video.slug, f.rendition), None)
        # Rename first so a crash mid-delete leaves a partial that start-up removes.
        doomed = self.root / f".{video.slug}.deleting.partial"
        os.rename(self.root / video.slug, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return True
