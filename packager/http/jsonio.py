"""JSON in and out with orjson, and typed reading of request fields."""

from __future__ import annotations

import math
from typing import Any

import orjson
from aiohttp import web

from packager.errors import BadRequest, InvalidField, TooLarge


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object; 413 past `limit`, 400 for anything else malformed."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"request body larger than {limit} bytes")
    body = await read_limited(request, limit)
    if not body.strip():
        return {}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("body must be a JSON object")
    return value


async def read_limited(request: web.Request, limit: int) -> bytes:
    """Read a body, plain or chunked, refusing it as soon as it passes `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"body of {request.content_length} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def number(body: dict[str, Any], name: str, *, required: bool = False) -> float | None:
    """A finite JSON number (not a bool, not a string)."""
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidField(name, "is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidField(name, f"must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or abs(value) > 1e13:
        raise InvalidField(name, "must be a finite number of sane size")
    return float(value)


def string(body: dict[str, Any], name: str, *, max_len: int = 256) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField(name, f"must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise InvalidField(name, f"must be at most {max_len} characters")
    return value


def boolean(body: dict[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidField(name, f"must be true or false, got {type(value).__name__}")
    return value
