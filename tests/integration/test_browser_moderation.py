"""Moderation in headless Debian chromium: a report, the queue, a removal and bans, seen
live on the author's open page.

olga owns r/Tea and makes mia a moderator; alice writes a rude comment, bob reports it
and alice's post; mia bans alice from the room and removes the comment from the queue
while alice's page is open (it shows the ban and the tombstone without a reload); root,
a site admin, then bans alice from the site from the queue (her page's socket closes,
saying why). No bots are needed. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from playhouse.storage import Storage
from tests.integration.test_browser import ARGS, CHROMIUM, register, shot
from tests.integration.web_support import build, serve

pytestmark = [pytest.mark.integration, pytest.mark.browser]

RUDE = "you are all idiots who cannot brew"


async def _open(browser: Browser, base: str, name: str) -> Page:
    page = await register(browser, base, name)
    page.on("dialog", lambda d: pytest.fail(f"unexpected dialog: {d.message}"))
    return page


async def test_a_moderator_removes_a_reported_comment_and_bans_its_author_live(
    storage: Storage,
) -> None:
    app = await build(storage, admins=("root",), logins_per_minute=60)
    async with serve(app) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            olga, mia, alice, bob, root = [await _open(browser, base, n)
                                           for n in ("olga", "mia", "alice", "bob", "root")]
            # olga makes the room and its moderator
            await olga.goto("/rooms/new")
            await olga.fill("input[name=name]", "Tea")
            await olga.fill("input[name=description]", "Leaves only")
            await olga.click("button[type=submit]")
            await expect(olga.locator("h1")).to_contain_text("r/Tea")
            await olga.fill("form.add-moderator input[name=username]", "mia")
            await olga.click("form.add-moderator button")
            await expect(olga.locator(".moderators")).to_contain_text("u/mia")

            # alice posts and is rude under her own post
            await alice.goto("/r/Tea")
            await alice.fill("#new-thread input[name=title]", "Tea time")
            await alice.click("#new-thread button[type=submit]")
            await alice.locator(".thread-row a.title", has_text="Tea time").click()
            await expect(alice.locator("#presence")).to_contain_text("u/alice")
            await alice.fill("#reply-top textarea", RUDE)
            await alice.click("#reply-top button[type=submit]")
            rude = alice.locator(".comment", has_text=RUDE)
            await expect(rude).to_be_visible()
            slot = await rude.get_attribute("id")
            assert slot is not None

            # bob reports the comment, and the post
            await bob.goto(alice.url)
            await bob.locator(f"#{slot} button.report-btn").click()
            form = bob.locator(f"#{slot} form.report-form")
            await form.locator("select[name=reason]").select_option("harassment")
            await form.locator("textarea[name=details]").fill("insults everyone")
            await form.locator("button[type=submit]").click()
            await expect(bob.locator("#reported")).to_contain_text("moderators of r/Tea")
            await bob.goto(alice.url)
            await bob.locator("#post button.report-btn").click()
            await bob.locator("#post form.report-form select[name=reason]").select_option(
                "spam")
            await bob.locator("#post form.report-form button[type=submit]").click()
            await expect(bob.locator("#reported")).to_be_visible()

            # mia sees it in context, bans alice from the room, then removes the comment
            await mia.goto("/mod")
            item = mia.locator(".queue-item", has_text=RUDE)
            await expect(item).to_contain_text("insults everyone")
            await expect(item).to_contain_text("Tea time")
            await shot(mia, "mod-1-queue")
            await item.locator("form.mod-ban input[name=reason]").fill("rudeness")
            await item.locator("form.mod-ban button").click()
            await expect(alice.locator("#live-notice")).to_contain_text(
                "You are banned from r/Tea (rudeness)")
            await expect(alice.locator("#reply-top")).to_have_count(0)
            await mia.goto("/mod")
            item = mia.locator(".queue-item", has_text=RUDE)
            await item.locator("form.mod-remove input[name=reason]").fill("insults")
            await item.locator("form.mod-remove button").click()
            await expect(mia.locator(".queue-item", has_text=RUDE)).to_have_count(0)
            text = alice.locator(f"#{slot} > details > .text")
            await expect(text).to_have_text("[removed]")  # live, no reload
            await expect(alice.locator(f"#{slot} .author")).to_have_text("[removed]")
            await expect(alice.locator(f"#{slot}")).to_have_class("comment gone")
            await shot(alice, "mod-2-author-banned-and-removed")
            await bob.goto(alice.url)
            await expect(bob.locator(f"#{slot} > details > .text")).to_have_text("[removed]")
            await expect(bob.locator("body")).not_to_contain_text(RUDE)

            # the mod log keeps what was removed
            await mia.goto("/mod/log")
            await expect(mia.locator(".entry[data-action=remove]")).to_contain_text("insults")
            await mia.locator(".entry[data-action=remove] details.kept summary").click()
            await expect(mia.locator(".entry[data-action=remove] .kept-text")).to_have_text(
                RUDE)

            # root bans alice from the site from her reported post: her socket closes
            await root.goto("/mod")
            post = root.locator(".queue-item", has_text="Tea time")
            await post.locator("form.mod-site-ban input[name=reason]").fill("abuse")
            await post.locator("form.mod-site-ban button").click()
            await expect(alice.locator("#banner")).to_have_text(
                "Disconnected: you are banned from the site.")
            await expect(alice.locator("#live-notice")).to_contain_text(
                "You are banned from the site (abuse)")
            await shot(alice, "mod-3-author-site-banned")
            await alice.reload()
            await expect(alice.locator(".me")).to_have_count(0)  # logged out for good
        finally:
            await browser.close()
