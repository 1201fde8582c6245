"""A hev1 rendition over HTTP: what players are told (CODECS, the init's sample entry, the
stream's JSON) and what ffmpeg decodes of it."""

from __future__ import annotations

from typing import Any

import m3u8

from tests.conftest import Hev1
from tests.http.conftest import AUTH, PUSH, Service
from tests.media.real_media import frame_hashes, hvcc_arrays, with_hvcc_arrays


async def push(service: Service, stream: str, init: bytes, segments: list[bytes]) -> None:
    c = service.client
    assert (await c.put(f"/ingest/{stream}/v/init.mp4", data=init, headers=PUSH)).status == 201
    for k, segment in enumerate(segments):
        resp = await c.put(f"/ingest/{stream}/v/index{k}.m4s", data=segment, headers=PUSH)
        assert resp.status == 201, await resp.text()


async def stream_json(service: Service, stream: str) -> dict[str, Any]:
    resp = await service.client.get(f"/streams/{stream}", headers=AUTH)
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def get(service: Service, path: str) -> bytes:
    resp = await service.client.get(path)
    assert resp.status == 200, path
    return await resp.read()


async def test_a_hev1_stream_is_served_as_hvc1_and_decodes_whole_as_hls_and_mp4(
    service: Service, hev1: dict[str, Hev1], ffmpeg_exe: str
) -> None:
    made = hev1["with_audio"]
    await push(service, "cam", with_hvcc_arrays(made.init, []), made.segments)

    (rendition,) = (await stream_json(service, "cam"))["renditions"]
    assert rendition["codecs"].startswith("hvc1.") and rendition["note"] is None
    dvr = (await stream_json(service, "cam"))["dvr"]
    clip = await service.create_clip(
        "cam", start=dvr["start"], duration=round(dvr["end"] - dvr["start"], 3)
    )
    path = clip["hls_master"].split(str(service.client.port), 1)[1]
    base = path.rsplit("/", 1)[0]
    (variant,) = m3u8.loads((await get(service, path)).decode()).playlists
    assert variant.stream_info.codecs == rendition["codecs"]
    media = m3u8.loads((await get(service, f"{base}/{variant.uri}")).decode())
    assert len({s.init_section.uri for s in media.segments}) == 1
    init = await get(service, f"{base}/{media.segments[0].init_section.uri}")
    assert hvcc_arrays(init)[0] == b"hvc1"
    hls = init + b"".join([await get(service, f"{base}/{s.uri}") for s in media.segments])
    mp4 = await get(service, clip["mp4_master"].split(str(service.client.port), 1)[1])

    source = made.init + b"".join(made.segments)
    video = frame_hashes(ffmpeg_exe, source, "0:v")
    assert len(video) == 60  # 2 s at 30 fps
    audio = frame_hashes(ffmpeg_exe, source, "0:a")
    # Every frame, and no decoder error (frame_hashes checks).
    assert frame_hashes(ffmpeg_exe, hls, "0:v") == video
    assert frame_hashes(ffmpeg_exe, hls, "0:a") == audio
    assert frame_hashes(ffmpeg_exe, mp4, "0:v") == video
    # The MP4's edit lists trim audio to the video's span: a frame fewer at most.
    assert 0 <= len(audio) - len(frame_hashes(ffmpeg_exe, mp4, "0:a")) <= 1
    assert b"hvc1" in mp4[: mp4.index(b"mdat")] and b"hev1" not in mp4[: mp4.index(b"mdat")]


async def test_a_hev1_stream_that_cannot_be_hvc1_says_so_in_its_json(
    service: Service, hev1: dict[str, Hev1]
) -> None:
    made = hev1["entry_only"]
    await push(service, "cam", with_hvcc_arrays(made.init, []), made.segments)
    (rendition,) = (await stream_json(service, "cam"))["renditions"]
    assert rendition["codecs"].startswith("hev1.")
    assert rendition["note"] == (
        "hev1: no parameter sets in the sample entry or the first segment; "
        "Apple devices will not play this rendition"
    )
    demo = (await stream_json(service, "demo"))["renditions"]
    assert [r["note"] for r in demo] == [None, None, None]
