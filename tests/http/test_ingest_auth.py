"""Ingest is a trust boundary: every push needs the stream's own key or the operator's."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import RecordedRendition
from packager.http.app import create_app
from tests.http.conftest import API_KEY, AUTH, AiohttpClient

INGEST_KEY = "operator-ingest-key"
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, clock: ManualClock, tmp_path: Path) -> Client:
    config = Config(api_keys=(API_KEY,), ingest_key=INGEST_KEY, data_dir=tmp_path)
    return await aiohttp_client(create_app(config, clock=clock, timers=False))


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _stream(client: Client, name: str) -> dict[str, str]:
    resp = await client.post("/streams", json={"id": name, "name": name}, headers=AUTH)
    assert resp.status == 201
    body: dict[str, str] = await resp.json()
    return body


async def test_a_new_stream_hands_out_its_push_url_and_key_once(client: Client) -> None:
    made = await _stream(client, "cam")
    assert made["push_url"].endswith("/ingest/cam") and len(made["push_key"]) >= 32
    again = await (await client.get("/streams/cam", headers=AUTH)).json()
    assert "push_key" not in again  # only its hash is kept


@pytest.mark.parametrize("verb", ["PUT", "POST", "DELETE"])
async def test_pushes_without_the_right_key_are_401_and_change_nothing(
    client: Client, ladder: list[RecordedRendition], verb: str
) -> None:
    cam = await _stream(client, "cam")
    other = await _stream(client, "other")
    r = ladder[0]
    for headers in (
        {},  # no key
        _bearer("wrong"),
        _bearer(other["push_key"]),  # another stream's key
        {"Authorization": f"apikey {API_KEY}"},  # the API key is not an ingest key
        _bearer(API_KEY),
    ):
        for name, body in (("init_0.mp4", r.init), ("index0.m4s", r.segments[0])):
            resp = await client.request(verb, f"/ingest/cam/0/{name}", data=body, headers=headers)
            assert resp.status == 401, (verb, headers)
            assert (await resp.json())["error"] == "unauthorized"
        resp = await client.request(
            verb, "/ingest/cam/0/index.m3u8?key=" + cam["push_key"], data=b"#EXTM3U\n"
        )
        assert resp.status == 401  # a key in the query is not taken: ffmpeg drops it anyway
    listed = await (await client.get("/streams/cam", headers=AUTH)).json()
    assert listed["renditions"] == []
    stats = await (await client.get("/stats", headers=AUTH)).json()
    assert stats["memory"]["held_bytes"] == 0


async def test_the_streams_own_key_and_the_ingest_key_both_push(
    client: Client, ladder: list[RecordedRendition]
) -> None:
    cam = await _stream(client, "cam")
    r = ladder[0]
    own = _bearer(cam["push_key"])
    assert (await client.put("/ingest/cam/0/init_0.mp4", data=r.init, headers=own)).status == 201
    resp = await client.put("/ingest/cam/0/index0.m4s", data=r.segments[0], headers=own)
    assert resp.status == 201
    operator = _bearer(INGEST_KEY)
    resp = await client.put("/ingest/cam/0/index1.m4s", data=r.segments[1], headers=operator)
    assert resp.status == 201
    assert (await client.delete("/ingest/cam/0/index0.m4s", headers=own)).status == 204
    listed = await (await client.get("/streams/cam", headers=AUTH)).json()
    assert listed["renditions"][0]["segments"] == 2


async def test_only_the_ingest_key_creates_a_stream_by_pushing(
    client: Client, ladder: list[RecordedRendition]
) -> None:
    r = ladder[0]
    assert (await client.put("/ingest/new/0/init_0.mp4", data=r.init)).status == 401
    assert (await client.get("/streams/new", headers=AUTH)).status == 404
    resp = await client.put("/ingest/new/0/init_0.mp4", data=r.init, headers=_bearer(INGEST_KEY))
    assert resp.status == 201
    assert (await client.get("/streams/new", headers=AUTH)).status == 200


async def test_anonymous_ingest_is_a_flag_and_never_reaches_keyed_streams(
    aiohttp_client: AiohttpClient,
    clock: ManualClock,
    tmp_path: Path,
    ladder: list[RecordedRendition],
) -> None:
    config = Config(api_keys=(API_KEY,), anonymous_ingest=True, data_dir=tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock, timers=False))
    r = ladder[0]
    assert (await client.put("/ingest/open/0/init_0.mp4", data=r.init)).status == 201
    await _stream(client, "keyed")
    assert (await client.put("/ingest/keyed/0/init_0.mp4", data=r.init)).status == 401


async def test_deleting_a_stream_frees_its_dvr_and_its_id(
    client: Client, ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    cam = await _stream(client, "cam")
    own = _bearer(cam["push_key"])
    r = ladder[0]
    await client.put("/ingest/cam/0/init_0.mp4", data=r.init, headers=own)
    for k in range(3):
        await client.put(f"/ingest/cam/0/index{k}.m4s", data=r.segments[k], headers=own)
    clip = await client.post(
        "/streams/cam/clip_recording", json={"duration": 2, "start": clock() - 2}, headers=AUTH
    )
    assert clip.status == 201
    held = (await (await client.get("/stats", headers=AUTH)).json())["memory"]["held_bytes"]
    assert (await client.delete("/streams/cam")).status == 401
    assert (await client.delete("/streams/cam", headers=AUTH)).status == 204
    assert (await client.get("/streams/cam", headers=AUTH)).status == 404
    after = await (await client.get("/stats", headers=AUTH)).json()
    assert after["streams"] == 0 and 0 < after["memory"]["held_bytes"] < held
    memory = after["memory"]
    assert memory["held_bytes"] == memory["pinned_bytes"] + memory["init_bytes"]  # the clip's
    clip_id = (await clip.json())["id"]
    assert (await client.get(f"/rec/cam/rec_{clip_id}_master.m3u8")).status == 200
    # The id is free again, with a new key: the old one pushes nothing.
    again = await _stream(client, "cam")
    assert again["push_key"] != cam["push_key"]
    assert (await client.put("/ingest/cam/0/init_0.mp4", data=r.init, headers=own)).status == 401
