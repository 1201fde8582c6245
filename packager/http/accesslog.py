"""Structured access logs: one JSON object a request, with no secrets in it; a client's
malformed request is an INFO line, not an ERROR with a traceback."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError


class JsonAccessLogger(AbstractAccessLogger):
    """Logs the path without its query string (ingest keys may ride there), never headers
    that carry credentials."""

    @property
    def enabled(self) -> bool:
        """Below INFO nothing is logged, so nothing is built (1-2% of a request's CPU)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        record = {
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "bytes": response.body_length,
            "ms": round(time * 1000, 2),
            "remote": request.remote,
            "agent": request.headers.get("User-Agent", ""),
        }
        range_header = request.headers.get("Range")
        if range_header:
            record["range"] = range_header[:64]
        self.logger.info(orjson.dumps(record).decode())


class ClientErrorFilter(logging.Filter):
    """aiohttp logs a request its own parser refuses (a bad header, a request line over 8 KiB)
    with `logger.exception`: an ERROR and a traceback for what is the client's mistake, which
    would page an operator for every port scanner. Such records become one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.getMessage()}: {exc.code} {exc.message}"[:300]
            record.args = ()
            record.exc_info = record.exc_text = None
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def quiet_client_errors(logger: logging.Logger | None = None) -> None:
    """Install ClientErrorFilter on aiohttp's server logger, once."""
    logger = logger or logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
        logger.addFilter(ClientErrorFilter())
