"""Signed playback links for private clips: an HMAC over the resource and an expiry time.

    .../rec_{clip}_master.m3u8?expires=1767225600&token=<base64url HMAC-SHA256>

One token covers every file of a clip (playlists carry it on each URI they list), so a
CDN can cache per URL while a leaked link stops working at `expires`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from aiohttp import web

from packager.errors import Forbidden


def token(secret: str, resource: str, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"{resource}\n{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def query(secret: str, resource: str, expires: int) -> str:
    return f"expires={expires}&token={token(secret, resource, expires)}"


def verify(request: web.Request, secret: str | None, resource: str, now: float) -> tuple[str, int]:
    """The request's signed query (to pass on to the URIs a playlist lists) and its expiry,
    or Forbidden."""
    if secret is None:
        raise Forbidden("this clip is private and the server has no playback secret")
    given = request.query.get("token")
    expires_text = request.query.get("expires", "")
    # ASCII digits only: str.isdigit() also takes '²', which int() then refuses (was a 500).
    digits = expires_text.isascii() and expires_text.isdigit()
    if given is None or not digits or len(expires_text) > 12:
        raise Forbidden("this clip is private: the link needs 'expires' and 'token'")
    expires = int(expires_text)
    expected = token(secret, resource, expires)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("the link's token is not valid")
    if expires <= now:
        raise Forbidden("the link has expired")
    return f"expires={expires}&token={given}", expires
