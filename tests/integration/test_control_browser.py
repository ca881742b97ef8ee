"""A person in headless Debian chromium takes control (issue 17): a bot's answer raises the
inbox badge on another open page; she edits and deletes her words; she asks the bot
again and steps through its answers; she mutes it. Another person watches live.

The bot's answers come through the real queues and the app's own results consumer; the
test plays the worker's part (takes the request, puts a result), so each answer is known
and the alternatives can be told apart.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Locator, Page, async_playwright, expect

from playhouse import messages
from playhouse.constants import QUEUE_INTERACTIVE, results_queue
from playhouse.messages import GenerationResult
from playhouse.storage import Storage
from tests.integration.test_browser import ARGS, CHROMIUM, WAIT_MS, register, shot
from tests.integration.test_web_live import take_request
from tests.integration.web_support import build, serve

pytestmark = [pytest.mark.integration, pytest.mark.browser]


async def _bot_answers(storage: Storage, text: str) -> None:
    """What the worker does: take the request, put its result where a person's go."""
    request = await take_request(storage, QUEUE_INTERACTIVE)
    result = GenerationResult.success(request, text=text)
    await storage.queues.send(results_queue(request.queue), messages.encode(result))


def _comment(page: Page, text: str) -> Locator:
    return page.locator(".comment", has=page.locator(":scope > details > .text",
                                                      has_text=text)).first


async def test_a_person_edits_deletes_asks_again_and_mutes(storage: Storage) -> None:
    app = await build(storage, consume=True)
    dialogs: list[str] = []
    async with serve(app) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            alice = await register(browser, base, "alice")
            bob = await register(browser, base, "bob")
            elsewhere = await alice.context.new_page()  # another tab of hers
            elsewhere.set_default_timeout(WAIT_MS)
            for page in (alice, bob, elsewhere):
                page.on("dialog", lambda d: dialogs.append(d.message))
            await elsewhere.goto("/")
            badge = elsewhere.locator("#inbox-badge")
            await expect(badge).to_be_hidden()

            await alice.goto("/r/Technology")
            await expect(alice.locator("#presence")).to_contain_text("u/alice")
            await alice.fill("#new-thread input[name=title]", "Which editor?")
            await alice.click("#new-thread button[type=submit]")
            await alice.locator(".thread-row a.title", has_text="Which editor?").click()
            await expect(alice.locator("#presence")).to_contain_text("u/alice")
            await bob.goto(alice.url)
            await expect(bob.locator("#presence")).to_contain_text("u/bob")

            # She asks CoopBot; its answer raises the badge on her other page.
            await alice.fill("#reply-top textarea", "vim or emacs, u/CoopBot?")
            await alice.click("#reply-top button[type=submit]")
            await expect(alice.locator(".comment.placeholder")).to_contain_text("thinking")
            await _bot_answers(storage, "vim, for its modes")
            reply = _comment(alice, "vim, for its modes")
            await expect(reply).to_have_class("comment bot")
            await expect(badge).to_have_text("1")
            await expect(badge).to_be_visible()
            await shot(elsewhere, "17-1-badge-raised")

            # She edits her question; Bob's page shows the edit live.
            mine = _comment(alice, "vim or emacs")
            await mine.locator(":scope > details > .actions .edit-btn").click()
            box = mine.locator("form.edit-form textarea")
            await box.fill("vim or emacs or nano, u/CoopBot?")
            await mine.locator("form.edit-form button[type=submit]").click()
            await expect(mine.locator(":scope > details > .text")).to_have_text(
                "vim or emacs or nano, u/CoopBot?")
            await expect(mine.locator(":scope > details > summary .edited")).to_be_visible()
            seen = _comment(bob, "or nano")
            await expect(seen.locator(":scope > details > summary .edited")).to_be_visible()
            await shot(bob, "17-2-edited-live")

            # She asks CoopBot again, then steps through its two answers.
            await reply.locator(":scope > details > .actions .again-btn").click()
            await expect(alice.locator(".comment.bot.placeholder")).to_contain_text("thinking")
            await _bot_answers(storage, "emacs, for its lisp")
            again = alice.locator(".comment.bot").first
            text = again.locator(":scope > details > .text")
            await expect(text).to_have_text("emacs, for its lisp")
            which = again.locator(":scope > details > .swipe .which")
            await expect(which).to_have_text("2/2")
            # Each answer has its own "why this reply?": the one the page shows.
            why = again.locator(":scope > details > details.why")
            await why.locator(":scope > summary").click()
            await expect(why.locator(".why-reason")).to_have_text(
                "u/alice asked it for another answer (asked again 1 time).")
            await again.locator(":scope > details > .swipe .prev-answer").click()
            await expect(text).to_have_text("vim, for its modes")
            await expect(which).to_have_text("1/2")
            await expect(why.locator(".why-reason")).to_have_text("u/alice mentioned it.")
            # Her choice is what Bob sees too; he may step through them on his page only.
            his = bob.locator(".comment.bot").first
            await expect(his.locator(":scope > details > .text")).to_have_text(
                "vim, for its modes")
            his_why = his.locator(":scope > details > details.why")
            await his_why.locator(":scope > summary").click()
            await expect(his_why.locator(".why-reason")).to_have_text("u/alice mentioned it.")
            await his.locator(":scope > details > .swipe .next-answer").click()
            await expect(his.locator(":scope > details > .text")).to_have_text(
                "emacs, for its lisp")
            await expect(his_why.locator(".why-reason")).to_have_text(  # the one he sees
                "u/alice asked it for another answer (asked again 1 time).")
            await expect(text).to_have_text("vim, for its modes")
            await again.locator(":scope > details > .swipe .next-answer").click()
            await expect(text).to_have_text("emacs, for its lisp")
            await shot(alice, "17-3-answers-stepped")

            # She writes something and deletes it: a tombstone, on both pages.
            await alice.fill("#reply-top textarea", "a thought I regret")
            await alice.click("#reply-top button[type=submit]")
            regret = _comment(alice, "a thought I regret")
            delete = regret.locator(":scope > details > .actions .delete-btn")
            await delete.click()
            await expect(delete).to_have_text("really delete?")
            await delete.click()
            await expect(regret).to_have_count(0)
            for page in (alice, bob):
                await expect(page.locator(".comment.gone")).to_have_count(1)
                await expect(page.locator(".comment.gone > details > .text")).to_have_text(
                    "[deleted]")
                await expect(page.locator(".comment .text", has_text="regret")).to_have_count(0)
            await shot(bob, "17-4-deleted-live")

            # She mutes CoopBot: its reply is a stub for her, not for Bob; her settings
            # list it.
            await again.locator(":scope > details > .actions .mute-form button").click()
            await expect(alice.locator(".comment.bot.hidden")).to_contain_text("whom you muted")
            await expect(alice.locator(".comment .text", has_text="emacs, for its lisp")
                         ).to_have_count(0)
            await expect(bob.locator(".comment.bot > details > .text")).to_have_text(
                "emacs, for its lisp")
            await alice.goto("/settings")
            await expect(alice.locator("#muted-bots .muted-bot")).to_contain_text("u/CoopBot")
            await shot(alice, "17-5-muted")
            assert dialogs == []
        finally:
            await browser.close()
