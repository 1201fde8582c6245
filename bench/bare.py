"""The per-core ceiling for a playlist: a bare aiohttp + uvloop handler that answers every GET
with the same bytes from memory: the packager's own playlist and the headers it came with
(caching, validators, CORS), fetched once. One process, like the packager; the efficiency
section holds our playlist route against it.

    python bench/bare.py PORT FILE [HEADERS_JSON]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import uvloop
from aiohttp import web


def main() -> None:
    port, body = int(sys.argv[1]), Path(sys.argv[2]).read_bytes()
    headers = json.loads(Path(sys.argv[3]).read_text()) if len(sys.argv) > 3 else {}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=body, content_type="application/vnd.apple.mpegurl", headers=headers
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=1024)


if __name__ == "__main__":
    main()
