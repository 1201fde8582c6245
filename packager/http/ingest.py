"""Ingest routes: what ffmpeg's HLS muxer sends with `-method PUT`."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from packager.config import Config
from packager.errors import NotFound, PackagerError, RequestTimeout, TooLarge
from packager.http.auth import bearer_token
from packager.http.jsonio import json_response
from packager.http.keys import CONFIG, SERVICES
from packager.http.metrics import METRICS
from packager.service.clips import STREAM_ID
from packager.service.ingest import Received, parse_playlist
from packager.store.base import Store

routes = web.RouteTableDef()

_RENDITION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_PATH = "/ingest/{stream_id}/{rendition}/{file}"


def _check_path(request: web.Request) -> tuple[str, str, str]:
    stream_id = request.match_info["stream_id"]
    rendition = request.match_info["rendition"]
    file = request.match_info["file"]
    if not (
        STREAM_ID.fullmatch(stream_id) and _RENDITION.fullmatch(rendition) and _FILE.fullmatch(file)
    ):
        raise NotFound(
            "ingest path must be /ingest/{stream_id}/{rendition}/{file} of [A-Za-z0-9_-.]"
        )
    return stream_id, rendition, file


async def read_upload(request: web.Request, config: Config, store: Store) -> bytes:
    """The body, plain or chunked, counted against the memory budget as it arrives (an upload
    in flight costs memory too), refused past max_segment_bytes, and given up when the
    client stops sending for body_timeout. Whatever happens, its bytes are let go at once:
    an aborted upload leaves no chunk behind waiting for the garbage collector."""
    limit = config.max_segment_bytes
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"body of {request.content_length} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    held = 0
    try:
        while True:
            try:
                # In this task (asyncio.timeout, not wait_for): reading aiohttp's payload from
                # another task lost ffmpeg's chunked PUTs mid-body.
                async with asyncio.timeout(config.body_timeout):
                    chunk = await request.content.readany()
            except TimeoutError:
                raise RequestTimeout(
                    f"no byte of the body for {config.body_timeout:g} s: the upload is dropped"
                ) from None
            if not chunk:
                break
            if held + len(chunk) > limit:
                raise TooLarge(f"body exceeds the limit of {limit} bytes")
            store.reserve_upload(len(chunk))
            held += len(chunk)
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        chunks.clear()
        store.release_upload(held)


@routes.put(_PATH)
@routes.post(_PATH)
async def receive(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    stream_id, rendition, file = _check_path(request)
    ingest = request.app[SERVICES].ingest
    # Before a byte of the body is read: a push without the right key costs nothing.
    may_create = await ingest.authorize(stream_id, bearer_token(request))
    body = await read_upload(request, config, ingest.store)
    metrics = request.app[METRICS]
    try:
        result = await ingest.receive(stream_id, rendition, file, body, may_create)
    except PackagerError:
        metrics.ingest.labels("rejected").inc()
        raise
    metrics.ingest.labels(result.kind.value).inc()
    metrics.ingest_bytes.inc(len(body))
    status = 201 if result.kind in (Received.INIT, Received.SEGMENT) else 200
    return json_response({"received": result.kind.value}, status=status)


@routes.put("/ingest/{stream_id}/{file}")
@routes.post("/ingest/{stream_id}/{file}")
async def master_playlist(request: web.Request) -> web.Response:
    """ffmpeg's `-master_pl_name master.m3u8` PUTs the encoder's master playlist beside the
    renditions. The ladder comes from the media itself, so it is taken (keyed, bounded) and
    set aside."""
    stream_id = request.match_info["stream_id"]
    file = request.match_info["file"]
    if not (STREAM_ID.fullmatch(stream_id) and file.endswith(".m3u8") and _FILE.fullmatch(file)):
        raise NotFound("ingest path must be /ingest/{stream_id}/{rendition}/{file}")
    ingest = request.app[SERVICES].ingest
    await ingest.authorize(stream_id, bearer_token(request))
    body = await read_upload(request, request.app[CONFIG], ingest.store)
    parse_playlist(body)  # well-formed, or 400
    return json_response({"received": "master playlist"}, status=200)


@routes.delete(_PATH)
async def delete(request: web.Request) -> web.Response:
    """ffmpeg deletes old segments with `hls_flags delete_segments`; the DVR rolls on its own."""
    stream_id, _, _ = _check_path(request)
    await request.app[SERVICES].ingest.authorize(stream_id, bearer_token(request))
    return web.Response(status=204)
