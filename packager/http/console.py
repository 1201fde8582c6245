"""`GET /`: the web console, plain files shipped in the package (packager/web/), no build step.

The page asks for the API key and keeps it in the tab's sessionStorage; nothing it serves is
secret, so these routes are public. Its Content-Security-Policy lets only its own scripts run:
a stream or clip name that carries markup can at worst show as text.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass

from aiohttp import web

from packager.errors import NotFound
from packager.http import caching

routes = web.RouteTableDef()

ASSETS = "/console/"
_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".txt": "text/plain",
    ".LICENSE": "text/plain",
}
# Media and API links may point at a CDN (--public-base-url): fetches, media and images go
# anywhere; scripts come only from here (hls.js starts its worker from a blob: URL).
POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "worker-src 'self' blob:",
        "style-src 'self'",
        "img-src * data: blob:",
        "media-src * blob:",
        "connect-src * blob:",  # blob: the page reading back its own posters
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    content_type: str
    etag: str


_files: dict[str, _File] = {}


def _file(name: str) -> _File:
    """A file of packager/web/, read once; only names that are there (no paths)."""
    found = _files.get(name)
    if found is not None:
        return found
    folder = importlib.resources.files("packager") / "web"
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in _TYPES:
        raise NotFound(f"no console file {name!r}")
    resource = folder / name
    if not resource.is_file():
        raise NotFound(f"no console file {name!r}")
    body = resource.read_bytes()
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    found = _files[name] = _File(body, _TYPES[suffix], etag)
    return found


def _serve(request: web.Request, name: str) -> web.Response:
    file = _file(name)
    # Revalidated every time: an upgraded packager serves its new console at once.
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if file.content_type == "text/html":
        headers["Content-Security-Policy"] = POLICY
        headers["Referrer-Policy"] = "no-referrer"
    return caching.validated(request, headers, file.etag, None) or web.Response(
        body=file.body, content_type=file.content_type, charset="utf-8", headers=headers
    )


@routes.get("/")
async def console(request: web.Request) -> web.Response:
    return _serve(request, "index.html")


@routes.get(ASSETS + "{name}")
async def asset(request: web.Request) -> web.Response:
    return _serve(request, request.match_info["name"])
