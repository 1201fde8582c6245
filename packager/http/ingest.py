"""Ingest routes: what ffmpeg's HLS muxer sends with `-method PUT`."""

from __future__ import annotations

import re

from aiohttp import web

from packager.errors import NotFound, PackagerError
from packager.http.auth import bearer_token
from packager.http.jsonio import json_response, read_limited
from packager.http.keys import CONFIG, SERVICES
from packager.http.metrics import METRICS
from packager.service.clips import STREAM_ID
from packager.service.ingest import Received

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


@routes.put(_PATH)
@routes.post(_PATH)
async def receive(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    stream_id, rendition, file = _check_path(request)
    ingest = request.app[SERVICES].ingest
    # Before a byte of the body is read: a push without the right key costs nothing.
    may_create = await ingest.authorize(stream_id, bearer_token(request))
    body = await read_limited(request, config.max_segment_bytes)
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


@routes.delete(_PATH)
async def delete(request: web.Request) -> web.Response:
    """ffmpeg deletes old segments with `hls_flags delete_segments`; the DVR rolls on its own."""
    stream_id, _, _ = _check_path(request)
    await request.app[SERVICES].ingest.authorize(stream_id, bearer_token(request))
    return web.Response(status=204)
