"""Two people in headless Debian chromium: register, post, see each other and the bots live.

The test plays the GPU worker: it takes each generation request off its queue and puts
a result on ``gen-results``; the app's own results consumer applies it and the pages
update over the websocket. Screenshots go to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from playhouse.constants import CONTAINER_IMAGES, DEFAULT_ROOM, QUEUE_IMAGE, QUEUE_INTERACTIVE
from playhouse.storage import Storage
from tests.integration.test_web_live import answer, take_request
from tests.integration.web_support import PASSWORD, build, serve

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 20_000


def png(width: int = 96, height: int = 64) -> bytes:
    """A small orange-and-blue striped PNG, made without an imaging library."""
    rows = b"".join(
        b"\x00" + b"".join(
            (b"\xff\x80\x20" if (x // 8 + y // 8) % 2 else b"\x20\x60\xff") for x in range(width)
        )
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


async def register(browser: Browser, base: str, name: str) -> Page:
    context = await browser.new_context(base_url=base, viewport={"width": 420, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto("/register")
    await page.fill("input[name=username]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=password2]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator(".me")).to_have_text(f"u/{name}")
    return page


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_two_people_chat_with_each_other_and_the_bots(storage: Storage) -> None:
    app = await build(storage, consume=True)
    dialogs: list[str] = []
    async with serve(app) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            alice = await register(browser, base, "alice")
            bob = await register(browser, base, "bob")
            for page in (alice, bob):
                page.on("dialog", lambda d: dialogs.append(d.message))
                await page.goto(f"/r/{DEFAULT_ROOM}")
                await expect(page.locator("#presence")).to_contain_text("u/")

            # Alice starts a thread; Bob sees it appear without reloading.
            await alice.fill("#new-thread input[name=title]", "A lighthouse at dusk")
            await alice.fill("#new-thread textarea[name=text]", "Paint it, please.")
            await alice.click("#new-thread button[type=submit]")
            await expect(alice.locator("#new-thread input[name=title]")).to_have_value("")
            row = bob.locator(".thread-row", has_text="A lighthouse at dusk")
            await expect(row).to_be_visible()
            await shot(bob, "1-room-live-thread")

            # Both open it: ImageBot (the room's default bot) is thinking.
            await row.locator("a.title").click()
            await alice.locator(".thread-row a.title", has_text="A lighthouse").click()
            for page in (alice, bob):
                await expect(page.locator(".comment.placeholder")).to_contain_text("thinking")
            request = await take_request(storage, QUEUE_IMAGE)
            blob = f"{request.request_id}.png"
            await storage.blobs.put(CONTAINER_IMAGES, blob, png(), "image/png")
            await answer(storage, request, text="A lighthouse at dusk", image_blob=blob)
            image = bob.locator(".comment.bot img.generated")
            await expect(image).to_be_visible()
            assert await image.evaluate("img => img.complete && img.naturalWidth") == 96
            await shot(bob, "2-imagebot-image")

            # Bob mentions CoopBot; Alice sees Bob's comment, then CoopBot thinking, then it.
            await bob.fill("#reply-top textarea", "Lovely. What do you think, u/CoopBot?")
            await bob.click("#reply-top button[type=submit]")
            await expect(alice.locator(".comment", has_text="What do you think")).to_be_visible()
            thinking = alice.locator(".comment.placeholder", has_text="thinking")
            await expect(thinking).to_be_visible()
            await shot(alice, "3-coopbot-thinking")
            request = await take_request(storage, QUEUE_INTERACTIVE)
            assert request.persona == "CoopBot"
            await answer(storage, request, text="Needs more seagulls.")
            for page in (alice, bob):
                await expect(page.locator(".comment.bot", has_text="Needs more seagulls.")
                             ).to_be_visible()
            await expect(alice.locator(".comment.placeholder")).to_have_count(0)

            # Alice replies to Bob's comment with markup: it shows as text, nothing runs.
            bobs = alice.locator(".comment", has_text="What do you think").first
            await bobs.locator("button.reply-btn").first.click()
            box = alice.locator("form.inline-reply textarea")
            await box.fill("<script>alert(1)</script>")
            await alice.locator("form.inline-reply button[type=submit]").click()
            shown = bob.locator(".comment .text", has_text="<script>alert(1)</script>")
            await expect(shown).to_be_visible()
            await expect(bob.locator(".comment .text script")).to_have_count(0)
            await shot(bob, "4-script-as-text")

            # Bob's connection drops; what Alice says meanwhile arrives once on reconnect.
            await bob.evaluate("window.playhouse.drop()")
            await expect(bob.locator("#banner")).to_have_text("reconnecting…")
            await alice.fill("#reply-top textarea", "said while bob was away")
            await alice.click("#reply-top button[type=submit]")
            away = bob.locator(".comment", has_text="said while bob was away")
            await expect(away).to_have_count(1)
            await expect(bob.locator("#banner")).to_be_hidden()
            await bob.wait_for_timeout(300)
            await expect(away).to_have_count(1)

            # A post the server refuses keeps its text and says why.
            await bob.fill("#reply-top textarea", "   ")
            await bob.click("#reply-top button[type=submit]")
            await expect(bob.locator("#reply-top .status.error")).to_contain_text("empty")
            await expect(bob.locator("#reply-top textarea")).to_have_value("   ")

            # After a reload the whole tree is server-rendered the same way.
            await bob.reload()
            await expect(bob.locator(".comment.bot img.generated")).to_be_visible()
            bot_reply = bob.locator(".comment.bot", has_text="Needs more seagulls.")
            await expect(bot_reply).to_be_visible()
            await expect(bob.locator(".comment .text", has_text="<script>")).to_be_visible()
            await shot(bob, "5-thread-after-reload")
            assert dialogs == []
        finally:
            await browser.close()
