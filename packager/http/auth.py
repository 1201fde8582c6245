"""API and ingest keys: `Authorization: apikey <t>` or `Bearer <t>` (ingest also `?key=`)."""

from __future__ import annotations

import hmac

from aiohttp import web

from packager.errors import Unauthorized


def _token(request: web.Request, allow_query: bool) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() in ("apikey", "bearer") and value.strip():
        return value.strip()
    if allow_query:
        return request.query.get("key")
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
    token = _token(request, allow_query=False)
    if token is None:
        raise Unauthorized("send 'Authorization: apikey <key>' or 'Authorization: Bearer <key>'")
    if not _matches(token, keys):
        raise Unauthorized("the API key is not valid")


def require_ingest_key(request: web.Request, key: str | None) -> None:
    if key is None:
        return
    token = _token(request, allow_query=True)
    if token is None or not _matches(token, (key,)):
        raise Unauthorized("ingest needs the ingest key (?key= or Authorization: Bearer)")
