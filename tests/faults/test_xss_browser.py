"""XSS: classic payloads posted as thread titles and comments, rendered by the server (page
load) and by ``live.js`` (live events) in headless Debian chromium: none executes, each
shows as text. Markdown payloads (script links, handlers inside code and links, quotes in
autolinks, 1,000-deep quotes and lists, 10,000 ``*``) render to bounded, inert HTML."""

from __future__ import annotations

import time

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


MARKDOWN_PAYLOADS = [
    f"[x](javascript:{MARK})",
    f"[x](JaVaScRiPt:{MARK})",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    f"[x](vbscript:{MARK})",
    f"`<img src=x onerror={MARK}>`",
    f"    <img src=x onerror={MARK}>",
    f"[<img src=x onerror={MARK}>](https://example.com/)",
    f'<https://example.com/"onmouseover="{MARK}">',
    f"<javascript:{MARK}>",
    f'[t](https://example.com/ "a\\" onmouseover=\\"{MARK}")',
    f"![pic](javascript:{MARK})",
    "![pic](https://evil.example/tracker.png)",
    "&lt;script&gt;" + MARK + "&lt;/script&gt;",
    "> " * 1000 + "deep quote",
    "- " * 1000 + "deep list",
    "".join(">" * i + " nested\n" for i in range(1, 130)),
    "*" * 10_000,
    "**a " * 2500,
    "[" * 5000 + "x" + "]" * 4000,
    "_" * 4000 + "x" + "_" * 4000,
]

# Every element under the comments: no handler attribute, no script link, no image from
# elsewhere, and a bounded depth.
AUDIT_JS = """() => {
  const all = Array.from(document.querySelectorAll("#comments *, #post *, #threads *"));
  const handlers = all.filter(
    (n) => Array.from(n.attributes).some((a) => a.name.startsWith("on")));
  const links = Array.from(document.querySelectorAll("a[href]")).map(
    (a) => a.getAttribute("href"));
  const bad = links.filter((h) => !/^(https?:|mailto:|\\/(?!\\/)|#)/i.test(h));
  const images = Array.from(document.querySelectorAll("img")).map((i) => i.getAttribute("src"))
    .filter((s) => !s.startsWith("/images/"));
  function depth(n) {
    let d = 0;
    for (const c of n.children) d = Math.max(d, depth(c));
    return d + 1;
  }
  const texts = Array.from(document.querySelectorAll(".text"));
  return { handlers: handlers.length, bad: bad, images: images,
           depth: Math.max(0, ...texts.map(depth)), scripts: document.scripts.length };
}"""


async def test_markdown_payloads_never_execute_nor_stall_the_page(storage: Storage) -> None:
    app = await build(storage, posts_per_minute=1000)
    async with serve(app) as base, user_client(base, "mallory") as client, \
            socket(base, client) as live:
        await live.subscribe("Sports")
        rendered = await live.post("Sports", client_id="t0", title=f"[x](javascript:{MARK}) **t**",
                                   text=MARKDOWN_PAYLOADS[0])
        streamed = await live.post("Sports", client_id="t1", title="live markdown", text="")
        await live.subscribe("Sports", thread_id=rendered.thread_id)
        for i, payload in enumerate(MARKDOWN_PAYLOADS):
            ack = await live.post("Sports", client_id=f"c{i}", thread_id=rendered.thread_id,
                                  text=payload)
            assert type(ack).__name__ == "Ack", (payload[:40], ack)
        await live.subscribe("Sports", thread_id=streamed.thread_id)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                context = await browser.new_context()
                cookies = [{"name": c.name, "value": c.value, "url": base}
                           for c in client.cookies.jar]
                await context.add_cookies(cookies)  # type: ignore[arg-type]
                page = await context.new_page()
                page.set_default_timeout(20_000)
                dialogs: list[str] = []
                page.on("dialog", lambda d: dialogs.append(d.message))
                # Rendered by the server on page load.
                await page.goto(f"{base}/r/Sports/t/{rendered.thread_id}")
                await page.wait_for_function("document.querySelectorAll('.comment').length >= 20")
                loaded = await page.evaluate(AUDIT_JS)
                loaded_text = await page.inner_text("#comments")
                # The same payloads live, into an open page (the server's HTML, inserted).
                await page.goto(f"{base}/r/Sports/t/{streamed.thread_id}")
                await page.wait_for_function("document.body.dataset.page === 'thread'")
                for i, payload in enumerate(MARKDOWN_PAYLOADS):
                    await live.post("Sports", client_id=f"l{i}", thread_id=streamed.thread_id,
                                    text=payload)
                await page.wait_for_function(
                    f"document.querySelectorAll('.comment').length >= {len(MARKDOWN_PAYLOADS)}")
                started = time.monotonic()
                assert await page.evaluate("1 + 1") == 2  # the page still answers
                answered_s = time.monotonic() - started
                streamed_audit = await page.evaluate(AUDIT_JS)
                executed = await page.evaluate("window.__xss || 0")
                await page.goto(f"{base}/r/Sports")
                room_audit = await page.evaluate(AUDIT_JS)
                executed += await page.evaluate("window.__xss || 0")
            finally:
                await browser.close()
    assert executed == 0 and not dialogs
    for audit in (loaded, streamed_audit, room_audit):
        assert audit["handlers"] == 0 and audit["bad"] == [] and audit["images"] == [], audit
        assert audit["depth"] <= 24, audit  # quotes and lists nest to a bound, not to 1,000
    assert answered_s < 5.0
    assert "deep quote" in loaded_text and "deep list" in loaded_text  # nothing lost
    assert "<script>" + MARK in loaded_text  # Reddit's escapes undone, shown as text


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
                             "/login", "/register", "/r/NoSuchRoom", "/r/Sports?sort=top",
                             "/u/framed", "/u/CoopBot", "/leaderboard"):
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
