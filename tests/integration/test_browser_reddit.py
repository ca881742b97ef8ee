"""Two people in headless Debian chromium vote, sort, open a persona page and the
leaderboard; the same pages in dark mode stay legible (contrast measured in the page).

Screenshots go to ``tests/artifacts/`` (git-ignored): ``reddit-room-hot.png``,
``reddit-persona.png``, ``reddit-leaderboard.png`` and their ``-dark`` twins.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from playhouse import ids
from playhouse.personas import load_cast_strict
from playhouse.storage import Storage
from playhouse.storage.authored import of_comment
from playhouse.storage.models import Comment, Thread
from tests.awake import SHIPPED
from tests.integration.web_support import PASSWORD, build, serve

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 20_000
AA = 4.5
"""WCAG AA contrast for body text."""

# Relative luminance contrast of each matching element's text against the first opaque
# background behind it; colours come as rgb() or color(srgb ...) (what color-mix gives).
CONTRAST_JS = """(selectors) => {
  function parse(c) {
    let m = c.match(/rgba?\\(([^)]+)\\)/);
    if (m) { const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
             return [p[0] / 255, p[1] / 255, p[2] / 255, p.length > 3 ? p[3] : 1]; }
    m = c.match(/color\\(srgb ([^)]+)\\)/);
    if (m) { const p = m[1].split(/[\\s\\/]+/).filter(Boolean).map(Number);
             return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; }
    return null;
  }
  function lum(c) {
    const f = (v) => v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  }
  function background(node) {
    for (let n = node; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c[3] > 0.5) return c;
    }
    return [1, 1, 1, 1];
  }
  const out = [];
  for (const sel of selectors) {
    const nodes = Array.from(document.querySelectorAll(sel)).filter(
      (n) => n.offsetParent !== null && n.textContent.trim() && !n.disabled).slice(0, 5);
    for (const n of nodes) {
      const fg = parse(getComputedStyle(n).color), bg = background(n);
      if (!fg) { out.push([sel, 0, getComputedStyle(n).color]); continue; }
      const a = lum(fg), b = lum(bg);
      out.push([sel, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), getComputedStyle(n).color]);
    }
  }
  return out;
}"""
CHECKED = ["body", "main .meta", "a.title", ".author.bot", ".author.human", ".md p",
           "nav.sorts .tab", "nav.sorts .tab.active", "form.vote .score", ".badge.bot",
           "h1", "dl.facts dt", "table.board td", "header a", "button"]


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def legible(page: Page, what: str) -> list[Any]:
    measured = await page.evaluate(CONTRAST_JS, CHECKED)
    assert measured, what
    poor = [m for m in measured if m[1] < AA]
    assert not poor, (what, poor)
    return list(measured)


async def person(browser: Browser, base: str, name: str, scheme: str = "light") -> Page:
    context = await browser.new_context(base_url=base, viewport={"width": 900, "height": 900},
                                        color_scheme=scheme)  # type: ignore[arg-type]
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto("/register")
    await page.fill("input[name=username]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=password2]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator(".me")).to_have_text(f"u/{name}")
    return page


async def bot_thread(storage: Storage, title: str, author: str, age_s: float,
                     votes: int) -> Thread:
    now = time.time() - age_s
    thread = await storage.threads.create(Thread(
        thread_id=ids.new_id(now), room="Sports", title=title, body="", url=None,
        author=author, is_bot=True, persona=author, created_at=now, last_activity=now))
    for n in range(votes):
        cast = await storage.votes.cast(thread.thread_id, thread.thread_id, f"fan{n}", 1)
    if votes:
        await storage.listings.apply("Sports", thread.thread_id, tally=cast.tally)
        await storage.authored.apply(author, thread.thread_id, cast.tally)
    return thread


async def test_two_people_vote_sort_and_visit_the_bots(storage: Storage) -> None:
    old = await bot_thread(storage, "Old classic", "CoopBot", 2 * 86400, 30)
    await bot_thread(storage, "Yesterday news", "GoalBot", 5 * 3600, 3)
    fresh = await bot_thread(storage, "Fresh **debate**", "GoalBot", 0, 0)
    comment = await storage.comments.add(Comment(
        comment_id=ids.new_id(), thread_id=fresh.thread_id, room="Sports", parent_id=None,
        author="CoopBot", is_bot=True, persona="CoopBot",
        text="What a *match*.\n\n&gt; quoting u/GoalBot here", created_at=time.time()))
    assert not await storage.authored.add(of_comment(comment))  # indexed when stored
    del old
    app = await build(storage, cast=load_cast_strict(SHIPPED))  # their own hours: no call
    dialogs: list[str] = []
    async with serve(app) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            alice = await person(browser, base, "alice")
            bob = await person(browser, base, "bob")
            thread_path = f"/r/Sports/t/{fresh.thread_id}"
            for page in (alice, bob):
                page.on("dialog", lambda d: dialogs.append(d.message))
                await page.goto(thread_path)
                await expect(page.locator("#presence")).to_contain_text("u/")
            comment_score = f'[data-score-for="{comment.comment_id}"]'
            thread_score = f'#post [data-score-for="{fresh.thread_id}"]'
            on_comment = f'form.vote[data-item="{comment.comment_id}"]'
            # The bot's Markdown is the server's HTML: emphasis, a quote, a profile link.
            text = alice.locator(f"#c-{comment.comment_id} .text")
            await expect(text.locator("em")).to_have_text("match")
            await expect(text.locator("blockquote a.mention")).to_have_attribute(
                "href", "/u/GoalBot")
            await expect(alice.locator("#post h1 strong")).to_have_text("debate")

            # Alice up-votes the comment: both screens show 1, hers highlighted.
            await alice.locator(f"{on_comment} button.up").click()
            for page in (alice, bob):
                await expect(page.locator(comment_score)).to_have_text("1")
            await expect(alice.locator(on_comment)).to_have_class("vote up")
            await expect(bob.locator(on_comment)).to_have_class("vote")
            # Bob too: 2 on both. Bob down-votes the post: -1 on both.
            await bob.locator(f"{on_comment} button.up").click()
            await bob.locator(f'#post form.vote[data-item="{fresh.thread_id}"] button.down').click()
            for page in (alice, bob):
                await expect(page.locator(comment_score)).to_have_text("2")
                await expect(page.locator(thread_score)).to_have_text("-1")
            # Alice takes hers back: 1 on both; after a reload, the arrows are remembered.
            await alice.locator(f"{on_comment} button.up").click()
            for page in (alice, bob):
                await expect(page.locator(comment_score)).to_have_text("1")
            await bob.reload()
            await expect(bob.locator(on_comment)).to_have_class("vote up")
            await expect(bob.locator(comment_score)).to_have_text("1")

            # The room, in each order (the tabs are links: the order is in the URL).
            await alice.goto("/r/Sports")
            first = alice.locator(".thread-row .title").first
            await expect(first).to_have_text("Yesterday news")  # hot
            await shot(alice, "reddit-room-hot")
            await alice.locator("nav.sorts a.tab", has_text="New").click()
            await expect(alice).to_have_url(f"{base}/r/Sports?sort=new")
            await expect(first).to_have_text("Fresh debate")
            await alice.locator("nav.sorts a.tab", has_text="Top").click()
            await expect(first).to_have_text("Yesterday news")  # top of the day
            await expect(alice.locator(".thread-row", has_text="Old classic")).to_have_count(0)
            await alice.locator("nav.sorts a.tab", has_text="all time").click()
            await expect(first).to_have_text("Old classic")
            await alice.goto("/r/Sports")  # remembered: top of all time again
            await expect(first).to_have_text("Old classic")

            # CoopBot's persona page, from a byline; then the leaderboard from there.
            await alice.goto(thread_path)
            await alice.locator(f"#c-{comment.comment_id} a.author").click()
            await expect(alice).to_have_url(f"{base}/u/CoopBot")
            await expect(alice.locator("h1")).to_contain_text("Coop")
            await expect(alice.locator("#karma")).to_have_text("31")
            await expect(alice.locator(".schedule")).to_have_text("all day")
            await expect(alice.locator("#history .item").first).to_contain_text("What a match")
            await shot(alice, "reddit-persona")
            await alice.locator("#rank").click()
            await expect(alice).to_have_url(f"{base}/leaderboard?t=all")
            leader = alice.locator("table.board tbody tr").first
            await expect(leader).to_have_attribute("data-persona", "CoopBot")
            await expect(leader.locator(".best")).to_contain_text("What a match")
            await shot(alice, "reddit-leaderboard")
            # A bot awake only part of the day: its hours in the viewer's zone.
            await alice.goto("/u/WickBot")
            await expect(alice.locator(".schedule")).to_contain_text("your time")

            # The same pages are legible in light and in dark mode.
            dark = await person(browser, base, "carol", "dark")
            for path, name in ((thread_path, None), ("/r/Sports?sort=hot", "reddit-room-hot-dark"),
                               ("/u/CoopBot", "reddit-persona-dark"),
                               ("/leaderboard?t=all", "reddit-leaderboard-dark")):
                for page in (alice, dark):
                    await page.goto(path)
                    await expect(page.locator("main")).to_be_visible()
                    await legible(page, f"{path} {'dark' if page is dark else 'light'}")
                if name:
                    await shot(dark, name)
            assert await dark.evaluate(
                "matchMedia('(prefers-color-scheme: dark)').matches") is True
            bg = await dark.evaluate("getComputedStyle(document.body).backgroundColor")
            assert bg != await alice.evaluate("getComputedStyle(document.body).backgroundColor")
            assert dialogs == []
        finally:
            await browser.close()
