"""Headless Chromium, driven over the Chrome DevTools Protocol with aiohttp's WebSocket client.

Debian's chromium and aiohttp (already a dependency) are all it takes: no Playwright, no
Selenium, no browser download. The tests need three verbs: open a page, evaluate an expression,
poll one until it says yes. What the page logs and throws is kept for failure messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

# What this machine's Chromium needs as root in a container with no network but loopback:
# without the background-networking flags it keeps dialling Google's hosts.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--mute-audio",
    # A muted <video> may autoplay anyway; this also covers hls.js calling play() itself.
    "--autoplay-policy=no-user-gesture-required",
)


def chromium_binary() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (found := shutil.which(name)):
            return found
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(
        self,
        process: subprocess.Popen[bytes],
        session: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        log: Path,
    ) -> None:
        self.process = process
        self.session = session
        self.ws = ws
        self.log_path = log
        self.console: list[str] = []  # console messages and uncaught exceptions, in order
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def launch(cls, folder: Path) -> Browser:
        binary = chromium_binary()
        if binary is None:
            raise BrowserError("chromium is not installed")
        profile = folder / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        log = folder / "chromium.log"
        process = subprocess.Popen(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",  # Chromium picks; it writes the port down below
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
            start_new_session=True,  # its own process group: renderers and zygote end with it
        )
        try:
            port = await _devtools_port(process, profile / "DevToolsActivePort", log)
            session = aiohttp.ClientSession()
            try:
                page_ws = await _page_websocket(session, port)
                ws = await session.ws_connect(page_ws, max_msg_size=0)
            except BaseException:
                await session.close()
                raise
        except BaseException:
            _kill(process)
            raise
        browser = cls(process, session, ws, log)
        await browser.send("Runtime.enable")
        await browser.send("Page.enable")
        return browser

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(BrowserError(str(data["error"])))
                    else:
                        future.set_result(data.get("result", {}))
            elif data.get("method") == "Runtime.consoleAPICalled":
                params = data["params"]
                text = " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params["args"]
                )
                self.console.append(f"console.{params['type']}: {text}")
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                exc = details.get("exception", {}).get("description", details.get("text"))
                self.console.append(f"exception: {exc}")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BrowserError("the DevTools connection closed"))

    async def send(self, method: str, **params: Any) -> Any:
        msg_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        return await asyncio.wait_for(future, 30)

    async def goto(self, url: str) -> None:
        result = await self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(
        self,
        expression: str,
        done: Callable[[Any], bool],
        timeout: float,
        fail: Callable[[Any], bool] = lambda _: False,
    ) -> Any:
        """Evaluate `expression` every 200 ms until `done(value)` or `fail(value)` or the deadline;
        returns the last value either way, for the caller's assertion to show."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if done(value) or fail(value):
                return value
            await asyncio.sleep(0.2)
        return value

    def diagnostics(self) -> str:
        # Chromium complains about the missing D-Bus at every start: noise, not a clue.
        lines = self.log_path.read_text(errors="replace").splitlines()
        stderr = "\n".join(line for line in lines if "dbus" not in line)[-3000:]
        return "\n".join([*self.console[-40:], "--- chromium stderr (tail) ---", stderr])

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send("Browser.close"), 5)
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.session.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.process.wait, 10)
        _kill(self.process)  # and whatever helper outlived it


async def _devtools_port(process: subprocess.Popen[bytes], path: Path, log: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrowserError(f"chromium exited: {log.read_text(errors='replace')[-3000:]}")
        if path.exists():
            first = path.read_text().split("\n", 1)[0].strip()
            if first.isdigit():
                return int(first)
        await asyncio.sleep(0.1)
    raise BrowserError(f"chromium did not open DevTools: {log.read_text(errors='replace')[-3000:]}")


async def _page_websocket(session: aiohttp.ClientSession, port: int) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json(content_type=None)
        pages = [t for t in targets if t.get("type") == "page" and "webSocketDebuggerUrl" in t]
        if pages:
            url: str = pages[0]["webSocketDebuggerUrl"]
            return url
        await asyncio.sleep(0.1)
    raise BrowserError("chromium opened no page")


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
