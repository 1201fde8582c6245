"""API and ingest keys: `Authorization: apikey <t>` or `Bearer <t>`.

Ingest keys travel in the header only: ffmpeg's HLS muxer sends `-headers` on every PUT but
drops a `?key=` query from segment PUTs, and a key in a URL ends up in logs."""

from __future__ import annotations

import hmac

from aiohttp import web

from packager.errors import Unauthorized


def bearer_token(request: web.Request) -> str | None:
    """The key of `Authorization: Bearer <key>` (or `apikey <key>`), if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() in ("apikey", "bearer") and value.strip():
        return value.strip()
    return None


def _matches(token: str, keys: tuple[str, ...]) -> bool:
    # Compare against every key so timing says nothing about which (or whether one) matched.
    found = False
    # A header byte that is not UTF-8 arrives as a lone surrogate: encode it, don't fail on it.
    given = token.encode("utf-8", "surrogatepass")
    for key in keys:
        found |= hmac.compare_digest(given, key.encode("utf-8", "surrogatepass"))
    return found


def require_api_key(request: web.Request, keys: tuple[str, ...]) -> None:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("send 'Authorization: apikey <key>' or 'Authorization: Bearer <key>'")
    if not _matches(token, keys):
        raise Unauthorized("the API key is not valid")
