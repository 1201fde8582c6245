from __future__ import annotations

import math
from typing import Any

import pytest

from packager.clock import ManualClock
from packager.demo import DemoFeed, RecordedRendition
from packager.http.api import whole_seconds
from tests.conftest import MakeFed, feed_past
from tests.http.conftest import AUTH, Service


async def test_stream_first_seen_on_ingest_is_listed_with_its_ladder(service: Service) -> None:
    resp = await service.client.get("/streams/demo", headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == "demo" and body["dvr_duration"] == 3600
    assert [(r["name"], r["width"], r["height"]) for r in body["renditions"]] == [
        ("media_1_360", 640, 360),
        ("media_2_720", 1280, 720),
        ("media_3_1080", 1920, 1080),
    ]
    assert body["renditions"][0]["codecs"] == "avc1.64001e,mp4a.40.2"
    assert body["dvr"]["end"] - body["dvr"]["start"] == pytest.approx(30)
    listed = await (await service.client.get("/streams", headers=AUTH)).json()
    assert [s["id"] for s in listed] == ["demo"]


async def test_create_stream_and_conflict(service: Service) -> None:
    body = {"id": "cam-1", "name": "Camera 1", "dvr_duration": 600}
    resp = await service.client.post("/streams", json=body, headers=AUTH)
    assert resp.status == 201
    created = await resp.json()
    assert (created["id"], created["name"], created["dvr_duration"]) == ("cam-1", "Camera 1", 600)
    again = await service.client.post("/streams", json=body, headers=AUTH)
    assert again.status == 409
    assert (await again.json())["error"] == "stream_exists"


async def test_clip_response_has_every_contract_field(service: Service) -> None:
    now = service.clock()
    clip = await service.create_clip(duration=10, start=now - 15)
    assert set(clip) >= {
        "id",
        "stream_id",
        "created_at",
        "start",
        "duration",
        "start_precise",
        "duration_precise",
        "expiration",
        "renditions",
        "hls_master",
        "mp4_master",
        "vod_required",
        "video_id",
    }
    assert len(clip["id"]) == 32
    assert clip["renditions"] == ["media_1_360", "media_2_720", "media_3_1080"]
    assert clip["start"] == now - 16  # aligned to the segment holding start
    assert clip["duration"] == 12
    assert clip["expiration"] == now - 15 + 10 + 3600  # Gcore's start + duration + 3600
    for name in ("start", "duration", "expiration"):
        assert type(clip[name]) is int, (name, clip[name])  # Gcore's SDK types them int
    assert clip["vod_required"] is False and clip["video_id"] is None
    host = f"http://{service.client.host}:{service.client.port}"
    assert clip["hls_master"] == f"{host}/rec/demo/rec_{clip['id']}_master.m3u8"
    assert clip["mp4_master"] == f"{host}/rec/demo/rec_{clip['id']}_master.mp4"
    assert clip["created_at"].endswith("Z")


def test_whole_seconds_cover_the_cut_without_float_noise() -> None:
    # The numbers: 1795903415.223 + 26.777 ends at ...442.000 exactly, not past it.
    assert whole_seconds(1795903415.223, 26.777) == (1795903415, 27)
    assert whole_seconds(1795903415.223, 26.778) == (1795903415, 28)
    assert whole_seconds(10.0, 2.0) == (10, 2)
    assert whole_seconds(10.999, 0.002) == (10, 2)


async def test_integer_start_and_duration_cover_a_cut_off_the_second(
    service: Service, ladder: list[RecordedRendition]
) -> None:
    service.clock.advance(0.777)  # segments of this stream start 0.777 s past a second
    feed = DemoFeed(service.services.ingest, ladder, service.clock, "frac")
    await feed_past(feed, service.clock, 10)
    now = service.clock()
    clip = await service.create_clip("frac", duration=5, start=now - 9)
    cut = await service.stored(clip["id"], "frac")
    assert cut.start % 1 == pytest.approx(0.777)
    assert clip["start"] == math.floor(cut.start) < cut.start
    assert clip["start"] + clip["duration"] == math.ceil(cut.start + cut.duration)
    assert clip["start_precise"] == round(cut.start, 3)
    assert clip["duration_precise"] == round(cut.duration, 3)
    assert type(clip["start_precise"]) is float and type(clip["duration_precise"]) is float
    assert clip["expiration"] == math.ceil(now - 9 + 5) + 3600


async def test_default_expiration_of_a_clip_cut_long_ago_is_the_minimum(
    service: Service, ladder: list[RecordedRendition]
) -> None:
    resp = await service.client.post(
        "/streams", json={"id": "old", "name": "old", "dvr_duration": 14400}, headers=AUTH
    )
    assert resp.status == 201
    feed = DemoFeed(service.services.ingest, ladder, service.clock, "old")
    now = service.clock()
    for k in range(5):  # 10 s that ended 2 h ago
        await feed.push(k, feed.segment_start(k, now - 7200))
    two_hours_ago = await service.create_clip("old", duration=6, start=now - 7200)
    assert two_hours_ago["expiration"] == now + 60  # start + duration + 3600 is past: raised
    given = await service.create_clip("old", duration=6, start=now - 7200, expiration=now + 900)
    assert given["expiration"] == now + 900


async def test_default_expiration_is_capped_at_four_hours(
    make_fed: MakeFed, clock: ManualClock
) -> None:
    fed = await make_fed(segments=5, budget=1 << 40, dvr=14400.0)  # accounting only
    clip = await fed.clips.create_clip("demo", duration=4 * 3600 - 60, start=clock() - 2)
    assert clip.expiration == clock() + 4 * 3600


async def test_fractional_expiration_is_taken_in_whole_seconds(service: Service) -> None:
    now = service.clock()
    clip = await service.create_clip(duration=4, start=now - 10, expiration=now + 600.9)
    assert clip["expiration"] == now + 600
    assert (await service.stored(clip["id"])).expiration == now + 600


async def test_put_creates_a_clip_as_gcore_sdks_send_it(service: Service) -> None:
    resp = await service.client.put(
        "/streams/demo/clip_recording",
        json={
            "duration": 4,
            "start": int(service.clock()) - 10,
            "expiration": int(service.clock()) + 600,
        },
        headers={"Authorization": "Bearer test-key"},
    )
    assert resp.status == 201
    assert (await resp.json())["expiration"] == int(service.clock()) + 600


@pytest.mark.parametrize("prefix", ["", "/streaming"])
async def test_gcore_paths_serve_streams_and_clips(service: Service, prefix: str) -> None:
    """Gcore's SDK puts `/streaming/` in every path; today's paths stay as aliases."""
    now = service.clock()
    made = await service.client.put(
        f"{prefix}/streams/demo/clip_recording",
        json={"duration": 4, "start": int(now) - 10},
        headers={"Authorization": "APIKey test-key"},  # Gcore's SDK spells it so
    )
    assert made.status == 201
    clip = await made.json()
    posted = await service.client.post(
        f"{prefix}/streams/demo/clip_recording", json={"duration": 4}, headers=AUTH
    )
    assert posted.status == 201
    listed = await service.client.get(f"{prefix}/streams/demo/clip_recording", headers=AUTH)
    assert [c["id"] for c in await listed.json()] == [clip["id"], (await posted.json())["id"]]
    streams = await (await service.client.get(f"{prefix}/streams", headers=AUTH)).json()
    assert [s["id"] for s in streams] == ["demo"]
    one = await service.client.get(f"{prefix}/streams/demo", headers=AUTH)
    assert (await one.json())["name"] == "demo"
    missing = await service.client.get(f"{prefix}/streams/nope/clip_recording", headers=AUTH)
    assert missing.status == 404 and (await missing.json())["error"] == "stream_not_found"
    assert (await service.client.get(f"{prefix}/streams")).status == 401


async def test_streams_created_on_gcore_paths_get_integer_ids(service: Service) -> None:
    """Gcore's SDK reads a stream's `id` as an integer."""
    ids = []
    for name in ("one", "two"):
        resp = await service.client.post("/streaming/streams", json={"name": name}, headers=AUTH)
        assert resp.status == 201
        ids.append((await resp.json())["id"])
    assert ids == ["1", "2"]
    numbered = await service.client.post("/streams", json={"id": 4242, "name": "cam"}, headers=AUTH)
    assert numbered.status == 201 and (await numbered.json())["id"] == "4242"
    after = await service.client.post("/streaming/streams", json={"name": "x"}, headers=AUTH)
    assert (await after.json())["id"] == "4243"
    plain = await service.client.post("/streams", json={"name": "ours"}, headers=AUTH)
    assert not (await plain.json())["id"].isdigit()  # our own path keeps random ids


async def test_list_clips_shows_only_unexpired(service: Service) -> None:
    now = service.clock()
    a = await service.create_clip(duration=4, start=now - 10, expiration=now + 100)
    b = await service.create_clip(duration=4, start=now - 6, expiration=now + 1000)
    listed = await (await service.client.get("/streams/demo/clip_recording", headers=AUTH)).json()
    assert [c["id"] for c in listed] == [a["id"], b["id"]]
    service.clock.advance(100)
    listed = await (await service.client.get("/streams/demo/clip_recording", headers=AUTH)).json()
    assert [c["id"] for c in listed] == [b["id"]]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "apikey wrong"},
        {"Authorization": "Basic dGVzdC1rZXk="},
        {"Authorization": "apikey"},
    ],
)
async def test_management_routes_need_a_key(service: Service, headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/streams"),
        ("GET", "/streams/demo"),
        ("POST", "/streams"),
        ("POST", "/streams/demo/clip_recording"),
        ("GET", "/streams/demo/clip_recording"),
    ]:
        resp = await service.client.request(method, path, json={"duration": 5}, headers=headers)
        assert resp.status == 401, (method, path)
        body = await resp.json()
        assert body["error"] == "unauthorized" and body["detail"]


def _ago(service: Service, s: float) -> float:
    return service.clock() - s


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "duration"),
        ({"duration": "10"}, "duration"),
        ({"duration": True}, "duration"),
        ({"duration": 0}, "duration"),
        ({"duration": 3601}, "duration"),
        ({"duration": 1e308}, "duration"),
        ({"duration": 5, "start": "yesterday"}, "start"),
        ({"duration": 5, "start": 1_900_000_000}, "start"),
        ({"duration": 5, "expiration": 10}, "expiration"),
        ({"duration": 5, "expiration": [1]}, "expiration"),
        ({"duration": 5, "vod_required": "yes"}, "vod_required"),
    ],
)
async def test_bad_clip_fields_answer_400_naming_the_field(
    service: Service, body: dict[str, Any], field: str
) -> None:
    resp = await service.client.post("/streams/demo/clip_recording", json=body, headers=AUTH)
    assert resp.status == 400
    error = await resp.json()
    assert error["error"] == "invalid_field" and error["field"] == field
    assert field in error["detail"]


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_malformed_json_is_400(service: Service, raw: bytes) -> None:
    resp = await service.client.post("/streams/demo/clip_recording", data=raw, headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["error"] == "bad_request"


async def test_oversized_api_body_is_413(service: Service) -> None:
    raw = b'{"duration": 5, "pad": "' + b"x" * (70 << 10) + b'"}'
    resp = await service.client.post("/streams/demo/clip_recording", data=raw, headers=AUTH)
    assert resp.status == 413
    assert (await resp.json())["error"] == "too_large"


async def test_unknown_stream_is_404(service: Service) -> None:
    for method in ("GET", "POST"):
        resp = await service.client.request(
            method, "/streams/nope/clip_recording", json={"duration": 5}, headers=AUTH
        )
        assert resp.status == 404
        assert (await resp.json())["error"] == "stream_not_found"
    assert (await service.client.get("/streams/nope", headers=AUTH)).status == 404


async def test_range_no_longer_in_dvr_is_422(service: Service) -> None:
    resp = await service.client.post(
        "/streams/demo/clip_recording",
        json={"duration": 10, "start": service.origin - 600},
        headers=AUTH,
    )
    assert resp.status == 422
    assert (await resp.json())["error"] == "range_not_in_dvr"


async def test_stream_without_media_is_409(service: Service) -> None:
    await service.client.post("/streams", json={"id": "idle", "name": "idle"}, headers=AUTH)
    resp = await service.client.post(
        "/streams/idle/clip_recording", json={"duration": 5}, headers=AUTH
    )
    assert resp.status == 409
    assert (await resp.json())["error"] == "no_media_in_dvr"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"id": "bad id!"}, "id"),
        ({"id": 5.5}, "id"),
        ({"id": 0}, "id"),
        ({"id": True}, "id"),
        ({"id": 10**18}, "id"),
        ({"name": ["x"]}, "name"),
        ({"dvr_duration": -5}, "dvr_duration"),
        ({"dvr_duration": 99999}, "dvr_duration"),
    ],
)
async def test_bad_stream_fields_are_named(
    service: Service, body: dict[str, Any], field: str
) -> None:
    resp = await service.client.post("/streams", json=body, headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["field"] == field


async def test_unknown_route_and_method_answer_json(service: Service) -> None:
    resp = await service.client.get("/nothing/here")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    resp = await service.client.delete("/streams", headers=AUTH)
    assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
