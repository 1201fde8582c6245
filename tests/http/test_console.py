"""The console's own files: served from the package, locked down by their headers."""

from __future__ import annotations

import pytest

from tests.http.conftest import Service


async def test_console_page_runs_only_its_own_scripts(service: Service) -> None:
    resp = await service.client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    policy = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    page = await resp.text()
    for asset in ("/console/console.js", "/console/console.css", "/console/hls.min.js"):
        assert f'"{asset}"' in page
        got = await service.client.get(asset)
        assert got.status == 200, asset
        assert got.headers["X-Content-Type-Options"] == "nosniff"
        again = await service.client.get(asset, headers={"If-None-Match": got.headers["ETag"]})
        assert again.status == 304
    hls = await service.client.get("/console/hls.min.js")
    assert hls.content_type == "text/javascript"
    assert b"1.7.4" in await hls.read()


@pytest.mark.parametrize(
    "name", ["README.md", "nothing.js", ".hidden.js", "..%2Fhttp%2Fconsole.py", "console"]
)
async def test_console_serves_nothing_but_its_files(service: Service, name: str) -> None:
    resp = await service.client.get(f"/console/{name}")
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
