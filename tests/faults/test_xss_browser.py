"""XSS: classic payloads posted as thread titles and comments, rendered by the server (page
load) and by ``live.js`` (live events) in headless Debian chromium: none executes, each
shows as text."""

from __future__ import annotations

import pytest
from litestar import Litestar, MediaType, get
from playwright.async_api import async_playwright

from playhouse.storage import Storage
from tests.integration.web_support import build, serve, socket, user_client

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MARK = "window.__xss=(window.__xss||0)+1"
PAYLOADS = [
    f"<script>{MARK}</script>",
    f'<img src=x onerror="{MARK}">',
    f"<svg onload={MARK}>",
    f'"><script>{MARK}</script>',
    f"'><img src=x onerror={MARK}>",
    f"</textarea><script>{MARK}</script>",
    f'<a href="javascript:{MARK}">click</a>',
    f'<iframe srcdoc="<script>parent.{MARK}</script>"></iframe>',
    f"<details open ontoggle={MARK}>",
    f"<body onload={MARK}>",
    f"javascript:{MARK}",
    f"u/CoopBot <img src=x onerror={MARK}>",
]


async def test_classic_payloads_never_execute(storage: Storage) -> None:
    app = await build(storage, posts_per_minute=1000)
    async with serve(app) as base, user_client(base, "mallory") as client, \
            socket(base, client) as live:
        await live.subscribe("Sports")
        first = await live.post("Sports", client_id="t0", title=PAYLOADS[0], text=PAYLOADS[1])
        await live.subscribe("Sports", thread_id=first.thread_id)
        for i, payload in enumerate(PAYLOADS):
            ack = await live.post("Sports", client_id=f"c{i}", thread_id=first.thread_id,
                                  text=payload)
            assert type(ack).__name__ == "Ack", ack
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                context = await browser.new_context()
                cookies = [{"name": c.name, "value": c.value, "url": base}
                           for c in client.cookies.jar]
                await context.add_cookies(cookies)  # type: ignore[arg-type]
                page = await context.new_page()
                dialogs: list[str] = []
                page.on("dialog", lambda d: dialogs.append(d.message))
                await page.goto(f"{base}/r/Sports")
                await page.goto(f"{base}/r/Sports/t/{first.thread_id}")
                await page.wait_for_function("document.body.innerText.length > 0")
                # Live rendering: the same payloads arrive over the socket while it is open.
                for i, payload in enumerate(PAYLOADS):
                    await live.post("Sports", client_id=f"l{i}", thread_id=first.thread_id,
                                    text=payload + " (live)")
                    await live.post("Sports", client_id=f"n{i}", title=payload + " (live)")
                await live.post("Sports", client_id="done", thread_id=first.thread_id,
                                text="live payloads sent")
                await page.wait_for_function(
                    "(text) => document.body.innerText.includes(text)",
                    arg="live payloads sent", timeout=20_000)
                await page.wait_for_timeout(500)
                executed_live = await page.evaluate("window.__xss || 0")
                await page.goto(f"{base}/r/Sports")
                await page.wait_for_timeout(500)
                room_text = await page.inner_text("body")
                await page.goto(f"{base}/r/Sports/t/{first.thread_id}")
                await page.wait_for_timeout(500)
                executed = await page.evaluate("window.__xss || 0")
                thread_text = await page.inner_text("body")
            finally:
                await browser.close()
    assert executed_live == 0 and executed == 0 and not dialogs
    for payload in PAYLOADS:  # shown as the text people typed, live and after a reload
        assert payload in thread_text, payload
        assert payload + " (live)" in thread_text, payload
    assert PAYLOADS[0] in room_text


WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
    (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));
"""


def _framing_site(target: str) -> Litestar:
    """Another origin of the same site (another port of 127.0.0.1) that frames ``target``."""

    @get("/evil.html", media_type=MediaType.HTML)
    async def evil() -> str:
        return f'<!doctype html><iframe id="f" src="{target}" width="800"></iframe>'

    return Litestar(route_handlers=[evil])


async def test_the_policy_fits_the_pages_and_no_other_origin_frames_them(
    storage: Storage,
) -> None:
    """Issue 12: pages had no Content-Security-Policy and no X-Frame-Options, so another
    origin of the same site could frame them. The policy must not break the pages: each
    page loads with no violation, and live updates (a script from this origin over the
    websocket) still render, in the persona's colour."""
    app = await build(storage)
    async with serve(app) as base, user_client(base, "framed") as client, \
            socket(base, client) as live:
        await live.subscribe("Sports")
        first = await live.post("Sports", client_id="t0", title="under a policy")
        async with serve(_framing_site(f"{base}/r/Sports")) as evil, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                context = await browser.new_context()
                await context.add_cookies([{"name": c.name, "value": c.value, "url": base}
                                           for c in client.cookies.jar])  # type: ignore[misc]
                await context.add_init_script(WATCH_CSP)
                page = await context.new_page()
                for path in ("/", "/r/Sports", f"/r/Sports/t/{first.thread_id}", "/rooms/new",
                             "/login", "/register", "/r/NoSuchRoom"):
                    await page.goto(base + path)
                    await page.wait_for_load_state("load")
                    assert await page.evaluate("window.__csp") == [], path
                # The thread page is live under the policy: a bot's placeholder shows up
                # in the persona's colour, live and after a reload (a style attribute).
                await page.goto(f"{base}/r/Sports/t/{first.thread_id}")
                await page.wait_for_function("document.body.dataset.page === 'thread'")
                await live.subscribe("Sports", thread_id=first.thread_id)
                await live.post("Sports", client_id="c1", thread_id=first.thread_id,
                                text="u/CoopBot are you there?")
                bot = page.locator(".comment.bot .author.bot").first
                await bot.wait_for(timeout=15_000)
                human = await page.locator(".author.human").first.evaluate(
                    "e => getComputedStyle(e).color")
                assert await bot.evaluate("e => getComputedStyle(e).color") != human
                await page.reload()
                bot = page.locator(".comment.bot .author.bot").first
                await bot.wait_for(timeout=15_000)
                assert await bot.evaluate("e => getComputedStyle(e).color") != human
                assert await page.evaluate("window.__csp") == []
                # Another origin of the same site frames a page: the browser refuses.
                await page.goto(f"{evil}/evil.html")
                await page.wait_for_load_state("load")
                frames = [f for f in page.frames if f is not page.main_frame]
                assert frames, "the frame was not even attempted"
                for frame in frames:
                    text = await frame.evaluate("document.body ? document.body.innerText : ''")
                    assert "under a policy" not in text and "log out" not in text, text[:200]
            finally:
                await browser.close()
