"""`/rec/{stream_id}/rec_{clip_id}_poster.jpg`: a clip's first shown frame, cached and signed
like the clip's other files (packager.service.poster decodes it).

Served through the playback route (packager.http.playback), not a route of its own: a second
resource on `/rec/...` was tried, and failed, before every playlist and segment request."""

from __future__ import annotations

from aiohttp import web

from packager.errors import ClipNotFound
from packager.http import caching, signing
from packager.http.api import clip_resource
from packager.http.keys import CONFIG, SERVICES
from packager.http.metrics import ROUTE_KEY
from packager.package import names

SUFFIX = "_poster.jpg"


async def serve(request: web.Request) -> web.Response:
    request[ROUTE_KEY] = "/rec/{stream_id}/{poster}"
    clip_id = names.parse_poster(request.match_info["name"])
    if clip_id is None:
        raise ClipNotFound(f"no such poster {request.match_info['name']!r}")
    services = request.app[SERVICES]
    clip = await services.store.clip(request.match_info["stream_id"], clip_id)
    if clip.private:
        secret = request.app[CONFIG].playback_secret
        signing.verify(request, secret, clip_resource(clip), services.clock())
    found = await services.posters.get(clip)
    # The first frame of a clip never changes: it lives in caches as long as the clip.
    headers = caching.cache_headers(services.clock(), clip.expiration, immutable=True)
    return caching.validated(request, headers, found.etag, clip.created_at) or web.Response(
        body=found.jpeg, content_type="image/jpeg", headers=headers
    )
