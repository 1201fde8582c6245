"""The web console (`GET /`) in headless Chromium against `serve --demo`: a producer enters
the key, watches the live DVR, scrubs back, marks in and out, cuts, and plays and shares the
clip. Clicks and keys are real input events (DevTools `Input.*`), so a control hidden under
another or out of the tab order fails here as it would for a person.

A screenshot of each step is saved in the test's temporary folder (docs/console.png is one).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import Browser, BrowserError, chromium_binary
from tests.e2e.conftest import API_KEY, Server, start_server, stop_server
from tests.http.test_poster import jpeg_size

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed"),
]

HOSTILE = "<script>window.pwned=1</script>\"'"
# Windows virtual key codes and the text each key types, as DevTools wants them.
KEYS = {"Tab": (9, ""), "Enter": (13, "\r"), "i": (73, "i"), "o": (79, "o")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("packager"), "--demo")
    try:
        yield server
    finally:
        stop_server(server)


class Page:
    """One Chromium tab on the console, with the verbs a person has: click, type, press."""

    def __init__(self, browser: Browser, folder: Path, width: int, height: int) -> None:
        self.browser = browser
        self.folder = folder
        self.width = width
        self.height = height
        self.shots = 0

    async def js(self, expression: str) -> Any:
        """Evaluate, awaiting a promise if it gives one."""
        result = await self.browser.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll until `expression` is truthy; its last value either way."""
        return await self.browser.wait_for(expression, bool, timeout)

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (scrolled into view first)."""
        box = await self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.browser.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def press(self, key: str) -> None:
        code, text = KEYS[key]
        common = {"key": key, "code": key, "windowsVirtualKeyCode": code}
        if text:
            await self.browser.send("Input.dispatchKeyEvent", type="keyDown", text=text, **common)
        else:
            await self.browser.send("Input.dispatchKeyEvent", type="rawKeyDown", **common)
        await self.browser.send("Input.dispatchKeyEvent", type="keyUp", **common)

    async def type(self, text: str) -> None:
        await self.browser.send("Input.insertText", text=text)

    async def shot(self, step: str) -> Path:
        self.shots += 1
        # The whole page, not just the window: the clip list is below the fold.
        # (laid out again at the window's width, with no scrollbar then).
        metrics = await self.browser.send("Page.getLayoutMetrics")
        height = max(metrics["cssContentSize"]["height"], self.height)
        area = {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1}
        data = await self.browser.send(
            "Page.captureScreenshot", format="png", clip=area, captureBeyondViewport=True
        )
        path = self.folder / f"{self.shots:02d}-{step}.png"
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    async def connect(self, key: str = API_KEY) -> None:
        """Type the key into the (focused) key field and press Enter, as a person does."""
        await self.until("document.activeElement && document.activeElement.id === 'api-key'")
        await self.type(key)
        await self.press("Enter")

    async def wait_playing(self) -> float:
        """Until the live video plays; its currentTime."""
        playing = await self.until(
            "(() => { const v = document.getElementById('player');"
            " return v.currentTime > 0.5 && !v.paused && v.readyState >= 3 && v.currentTime; })()",
            timeout=40,
        )
        assert playing, await self.failure("the live video did not start")
        return float(playing)

    async def settled(self) -> None:
        """Until a seek is done and the frame there is decoded."""
        await self.until(
            "(() => { const v = document.getElementById('player');"
            " return !v.seeking && v.readyState >= 2; })()"
        )

    async def loaded(self) -> None:
        """Until the console's script has run (it focuses the key field, or connects)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:  # while the navigation commits, the page may not answer yet
                if await self.js("document.readyState === 'complete' && !!window.Hls"):
                    return
            except BrowserError:
                pass
            await asyncio.sleep(0.1)
        raise BrowserError(f"the console did not load\n{self.browser.diagnostics()}")

    async def failure(self, what: str) -> str:
        message = await self.js("document.getElementById('message').textContent")
        return f"{what}; page message: {message!r}\n{self.browser.diagnostics()}"


@contextlib.asynccontextmanager
async def open_console(
    server: Server, folder: Path, width: int = 1280, height: int = 1000
) -> AsyncIterator[Page]:
    browser = await Browser.launch(folder)
    try:
        await browser.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        # Headless windows are never focused; the clipboard wants a focused page.
        await browser.send("Emulation.setFocusEmulationEnabled", enabled=True)
        await browser.goto(server.base + "/")
        page = Page(browser, folder, width, height)
        await page.loaded()
        yield page
    finally:
        await browser.close()


@pytest.fixture
async def page(demo: Server, tmp_path: Path) -> AsyncIterator[Page]:
    async with open_console(demo, tmp_path) as opened:
        yield opened


def _clips(server: Server) -> list[dict[str, Any]]:
    status, clips = server.request("GET", "/streams/demo/clip_recording")
    assert status == 200, clips
    return list(clips)


async def test_a_producer_cuts_a_clip_from_the_live_dvr_plays_and_shares_it(
    demo: Server, page: Page, ffmpeg_exe: str
) -> None:
    earlier = {c["id"] for c in _clips(demo)}
    await page.shot("start")
    await page.connect()
    first = await page.wait_playing()
    await asyncio.sleep(1.5)
    later = await page.js("document.getElementById('player').currentTime")
    assert later > first + 0.5, await page.failure("the live video does not advance")
    assert await page.js("sessionStorage.getItem('packager.apiKey')") == API_KEY
    assert API_KEY not in await page.js("location.href")
    await page.shot("live")

    # Scrub back 10 s, pause there, mark in; 4 s on, mark out.
    before = await page.js("document.getElementById('player').currentTime")
    await page.click("#back-10")
    await page.settled()
    back = await page.js("document.getElementById('player').currentTime")
    assert back == pytest.approx(before - 10, abs=1.5)
    await page.click("#play-pause")
    await page.until("document.getElementById('player').paused")
    await page.settled()
    await page.click("#mark-in")
    for _ in range(4):
        await page.click("#fwd-1")
        await page.settled()
    await page.click("#mark-out")
    marks = await page.js(
        "[document.getElementById('in-time').dataset.ms,"
        " document.getElementById('out-time').dataset.ms]"
    )
    mark_in, mark_out = (float(m) / 1000 for m in marks)
    assert mark_out - mark_in == pytest.approx(4.0, abs=0.1)
    # The player's position maps to the stream's wall clock: 10 s back from a live edge that
    # is itself a few segments behind now.
    assert 10 <= time.time() - mark_in <= 40, (mark_in, time.time())
    await page.shot("marked")

    await page.click("#clip-name")
    await page.type("Opening goal")
    await page.click("#cut-button")
    card = await page.until("document.querySelector('li.clip.new') !== null")
    assert card, await page.failure("no clip appeared")
    clips = [c for c in _clips(demo) if c["id"] not in earlier]
    assert len(clips) == 1, clips
    clip = clips[0]
    # The cut holds what was marked (segment-aligned: it may begin and end a little wider).
    assert clip["start_precise"] <= mark_in + 0.01
    assert clip["start_precise"] + clip["duration_precise"] >= mark_out - 0.01
    assert clip["name"] == "Opening goal"
    selector = f"li.clip[data-clip-id='{clip['id']}']"
    shown_name = await page.js(
        f"document.querySelector({json.dumps(selector + ' h3')}).textContent"
    )
    assert shown_name == "Opening goal"

    # Its poster: the JPEG the page shows, decoded by ffmpeg, has the top rendition's shape.
    poster = f"document.querySelector({json.dumps(selector + ' img.poster')})"
    shown = await page.until(f"{poster}.naturalWidth > 0 && {poster}.complete")
    assert shown, await page.failure("the poster did not show")
    jpeg_b64 = await page.js(
        f"fetch({poster}.src).then(r => r.arrayBuffer()).then(b => {{"
        " let s = ''; for (const x of new Uint8Array(b)) s += String.fromCharCode(x);"
        " return btoa(s); })"
    )
    width, height = jpeg_size(ffmpeg_exe, base64.b64decode(jpeg_b64))
    status, stream = demo.request("GET", "/streams/demo")
    assert status == 200
    top = stream["renditions"][-1]
    assert width * top["height"] == height * top["width"], (width, height, top)
    await page.shot("cut")

    # It plays in place, to its end.
    await page.click(f"{selector} button.play")
    video = f"document.querySelector({json.dumps(selector + ' video')})"
    ended = await page.until(f"{video} && {video}.ended", timeout=clip["duration_precise"] + 30)
    assert ended, await page.failure("the clip did not play to its end")
    played = await page.js(f"{video}.currentTime")
    assert played == pytest.approx(clip["duration_precise"], abs=0.5)
    await page.shot("played")

    # Its copied links are the API's links.
    await page.browser.send(
        "Browser.grantPermissions",
        permissions=["clipboardReadWrite", "clipboardSanitizedWrite"],
        origin=demo.base,
    )
    for button, field in (("copy-hls", "hls_master"), ("copy-mp4", "mp4_master")):
        await page.click(f"{selector} button.{button}")
        copied = f"document.querySelector({json.dumps(selector + ' .copied')}).textContent"
        assert "copied" in await page.until(f"{copied}.includes('copied') && {copied}"), button
        assert await page.js("navigator.clipboard.readText()") == clip[field], button
    download = await page.js(f"document.querySelector({json.dumps(selector + ' a.download')}).href")
    assert download == clip["mp4_master"]
    await page.shot("shared")


async def test_a_wrong_key_shows_a_readable_error(page: Page) -> None:
    await page.connect("not-the-key")
    message = await page.until(
        "!document.getElementById('message').hidden && document.getElementById('message').innerText"
    )
    assert message and "API key was not accepted" in message and "401" in message, message
    assert "the API key is not valid" in message  # the API's own detail
    assert await page.js("document.getElementById('workspace').hidden") is True
    assert await page.js("sessionStorage.getItem('packager.apiKey')") is None
    await page.shot("wrong-key")


async def test_every_control_is_reached_with_tab_and_enter_cuts(demo: Server, page: Page) -> None:
    status, _ = demo.request(
        "POST", "/streams/demo/clip_recording", {"duration": 4, "start": time.time() - 20}
    )
    assert status == 201  # a clip card, so its buttons are in the tab order too
    await page.connect()
    await page.wait_playing()
    await page.until("document.querySelector('li.clip button.copy-mp4') !== null")

    controls = await page.js(
        "[...document.querySelectorAll('button, input, select, a[href], video[controls]')]"
        ".filter(e => !e.disabled && e.getClientRects().length > 0)"
        ".map((e, i) => (e.dataset.probe = String(i), i))"
    )
    assert len(controls) >= 20, controls  # the page's own, and a clip card's
    reached: set[int] = set()
    for _ in range(3 * len(controls) + 10):
        await page.press("Tab")
        probe = await page.js("document.activeElement && document.activeElement.dataset.probe")
        if probe is not None:
            reached.add(int(probe))
    missing = await page.js(
        f"[...document.querySelectorAll('[data-probe]')].filter(e => !{json.dumps(sorted(reached))}"
        ".includes(Number(e.dataset.probe))).map(e => e.outerHTML.slice(0, 80))"
    )
    assert not missing, missing

    # Mark with the keys, then Enter cuts (focus on the page, not on a button).
    before = len(_clips(demo))
    await page.js("document.activeElement.blur()")
    await page.press("i")
    await asyncio.sleep(2.5)
    await page.press("o")
    span = await page.js("document.getElementById('span').textContent")
    assert "marked" in span, span
    await page.press("Enter")
    cut = await page.until(f"document.querySelectorAll('li.clip').length > {before}")
    assert cut, await page.failure("Enter did not cut")
    assert len(_clips(demo)) == before + 1
    await page.shot("keyboard-cut")


async def test_a_400_px_wide_screen_needs_no_sideways_scroll(demo: Server, tmp_path: Path) -> None:
    status, _ = demo.request(
        "POST",
        "/streams/demo/clip_recording",
        {"duration": 4, "start": time.time() - 20, "name": "a-long-clip-name-" * 6},
    )
    assert status == 201
    async with open_console(demo, tmp_path, width=400, height=900) as page:
        await page.connect()
        await page.wait_playing()
        await page.until("document.querySelector('li.clip img.poster[src]') !== null")
        widths = await page.js("[document.documentElement.scrollWidth, innerWidth]")
        assert widths[0] <= widths[1], widths
        await page.shot("400px")


async def test_hostile_stream_and_clip_names_show_as_text_and_never_run(
    demo: Server, page: Page
) -> None:
    status, made = demo.request("POST", "/streams", {"id": "hostile", "name": HOSTILE})
    assert status == 201, made
    status, clip = demo.request(
        "POST",
        "/streams/demo/clip_recording",
        {"duration": 4, "start": time.time() - 20, "name": HOSTILE},
    )
    assert status == 201, clip
    await page.connect()
    await page.until("document.querySelector('li.clip') !== null")
    options = await page.js("[...document.getElementById('stream').options].map(o => o.text)")
    assert f"{HOSTILE} (hostile)" in options, options
    name = f"li.clip[data-clip-id='{clip['id']}'] .clip-name"
    assert await page.until(f"document.querySelector({json.dumps(name)})?.textContent") == HOSTILE

    await page.js(
        "(() => { const s = document.getElementById('stream'); s.value = 'hostile';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    info = await page.until(
        "(t => t.includes('(hostile)') && t)(document.getElementById('stream-info').textContent)"
    )
    assert HOSTILE in info and "no media" in info, info
    assert await page.js("typeof window.pwned") == "undefined"
    assert await page.js("document.scripts.length") == 2  # hls.js and the console, nothing more
    assert HOSTILE in await page.js("document.body.innerText")
    await page.shot("hostile-names")
