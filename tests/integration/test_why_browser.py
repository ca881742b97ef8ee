""""Why this reply?" and honest waiting in headless Debian chromium, with the real worker
and the session's tiny demo models.

A deep chain of long comments waits in r/AskCoopAnything. The scheduler (one round, an
eager CoopBot with a small prompt budget) asks CoopBot to answer its deepest comment; a
person mentions CoopBot under it too. No worker runs yet: both placeholders must say so on
the page. Then a worker starts and answers both; the person opens "why this reply?" on
each and finds the prompt with its tags, the ancestors dropped to fit the budget, and —
for the scheduled one — the score term by term. A moderator then removes the person's
comment and the scheduled answer: the open panel loses the removed words, the removed
answer its disclosure. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from pathlib import Path

import pytest
from playwright.async_api import Locator, async_playwright, expect

from playhouse import ids
from playhouse.config import SchedulerSettings
from playhouse.generation.engines import make_engine
from playhouse.generation.heartbeat import Heartbeat
from playhouse.generation.worker import Worker
from playhouse.personas import load_cast_strict
from playhouse.scheduling.scheduler import Scheduler
from playhouse.storage import Storage
from playhouse.storage.models import Comment, Thread
from tests.awake import awake_copy

from .test_browser import ARGS, ARTIFACTS, BOT_WAIT_MS, CHROMIUM, WAIT_MS, register, shot
from .web_support import build, ctx_of, serve
from .why_support import WORKER

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

ROOM = "AskCoopAnything"
DEPTH = 7


def eager_coop(folder: Path) -> Path:
    """The shipped cast with a CoopBot that answers whatever it sees, on a small budget."""
    awake_copy(folder)
    path = folder / "coopbot.toml"
    text = path.read_text(encoding="utf-8")
    budget = "[generation]\nmax_attempts = 8\nmax_prompt_tokens = 300\n"
    for old, new in (("[activity.weights]\n", "[activity.weights]\nbase = 10.0\n"),
                     ("[generation]\n", budget)):
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return folder


async def deep_chain(storage: Storage) -> tuple[Thread, Comment]:
    """A thread whose comments are old (past every bot's reply age) but its deepest."""
    now = time.time()
    old = now - 3 * 86400
    thread = await storage.threads.create(Thread(
        thread_id=ids.new_id(old), room=ROOM, title="How do lighthouses work?",
        body="Asking for a friend.", url=None, author="ann", is_bot=False, persona=None,
        created_at=old, last_activity=now, comment_count=DEPTH))
    parent: Comment | None = None
    for level in range(DEPTH):
        at = now if level == DEPTH - 1 else old + level
        words = " ".join(f"lamp{level} keeper{level} light{level} tower{level}" for _ in range(6))
        parent = await storage.comments.add(Comment(
            comment_id=ids.new_id(at), thread_id=thread.thread_id, room=ROOM,
            parent_id=parent.comment_id if parent else None,
            author=("ann", "bob")[level % 2], is_bot=False, persona=None,
            text=f"level {level}: {words}", created_at=at, depth=level,
            path=(*parent.path, parent.comment_id)[-14:] if parent else ()))
    assert parent is not None
    return thread, parent


async def open_why(comment: Locator) -> Locator:
    why = comment.locator(":scope > details > details.why")
    await why.locator("summary").click()
    panel = why.locator(".why-panel")
    await expect(panel).to_be_visible()
    return panel


async def test_why_this_reply_on_a_scheduled_and_a_mentioned_answer(
    storage: Storage, models_dir: Path, tmp_path: Path,
) -> None:
    cast = load_cast_strict(eager_coop(tmp_path / "personas"))
    app = await build(storage, cast=cast, consume=True, waiting_grace_s=0.5,
                      waiting_interval_s=0.5, admins=("root",))
    thread, deepest = await deep_chain(storage)
    ctx = ctx_of(app)
    scheduler = Scheduler(
        storage, cast, SchedulerSettings(reply_delay_s=0.0, seed=2),
        on_placeholder=ctx.broadcast.thinking,
        on_asked=partial(app.state["consumer"].expect, interactive=False))
    engine = make_engine("text", models_dir, device="cpu", max_models=4, max_bytes=1 << 30)
    worker = Worker(queues=storage.queues, blobs=storage.blobs, cast=cast, engine=engine,
                    settings=WORKER, seed=5, progress=storage.progress,
                    reporter=Heartbeat(storage.workers, storage.metrics, kind="text",
                                       interval_s=0.5, host="test-box"))
    running: asyncio.Task[None] | None = None
    errors: list[str] = []
    async with serve(app) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await register(browser, base, "pat")
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"/r/{ROOM}/t/{thread.thread_id}")
            await expect(page.locator("#presence")).to_contain_text("u/pat")

            # The scheduler asks CoopBot; no worker runs: the placeholder says so.
            report = await scheduler.run_round()
            (scheduled,) = [r for r in report.replies if r.persona == "CoopBot"]
            assert scheduled.parent_id == deepest.comment_id
            planned = page.locator(".comment.placeholder", has=page.locator(
                ".author", has_text="u/CoopBot"))
            await expect(planned.first.locator(".wait")).to_contain_text(
                "no worker running", timeout=WAIT_MS)

            # A person mentions CoopBot under the same comment: that one says so too.
            target = page.locator(f"#c-{deepest.comment_id}")
            await target.locator(":scope > details > .actions button.reply-btn").click()
            await page.fill("form.inline-reply textarea", "What do you say, u/CoopBot?")
            await page.click("form.inline-reply button[type=submit]")
            mention = page.locator(".text", has_text="What do you say, u/CoopBot?").locator(
                "xpath=ancestor::div[contains(concat(' ', @class, ' '), ' comment ')][1]")
            await expect(mention).to_be_visible()
            asked = mention.locator(":scope > details > .replies > .comment.placeholder")
            await expect(asked.locator(".wait")).to_contain_text("no worker running",
                                                                timeout=WAIT_MS)
            await shot(page, "why-1-no-worker")
            slot_mention = await asked.get_attribute("id")
            slot_scheduled = await target.locator(
                ":scope > details > .replies > .comment.bot").first.get_attribute("id")
            assert slot_mention and slot_scheduled and slot_mention != slot_scheduled

            # A worker starts and answers both (whatever the tiny model manages to say).
            running = asyncio.create_task(worker.main())
            for slot in (slot_scheduled, slot_mention):
                await expect(page.locator(f"#{slot}")).not_to_have_class(
                    "comment bot placeholder", timeout=BOT_WAIT_MS)

            # Why the scheduled one: the score term by term, the prompt, the dropped ones.
            panel = await open_why(page.locator(f"#{slot_scheduled}"))
            await expect(panel.locator(".why-reason")).to_contain_text("The scheduler chose it")
            for term in ("base", "human", "mention", "question", "depth", "score", "decay",
                         "probability", "draw"):
                await expect(panel.locator(f'tr[data-term="{term}"]')).to_have_count(1)
            await expect(panel.locator('tr[data-term="base"]')).to_contain_text("+10.00")
            await expect(panel.locator("pre.why-prompt-text")).to_contain_text(
                "<|sor u/CoopBot|>")
            await expect(panel.locator("pre.why-prompt-text")).to_contain_text(
                "<|soss r/AskCoopAnything|>")
            dropped = panel.locator(".why-dropped li.dropped")
            assert await dropped.count() >= 1
            await expect(dropped.first).to_contain_text("level 0")
            await expect(panel.locator("mark.why-cut")).to_contain_text("dropped here")
            await expect(panel.locator(".why-attempts li").first).to_be_visible()
            await expect(panel.locator(".why-params")).to_contain_text("seed")
            await expect(panel.locator(".why-times")).to_contain_text("generating")
            await shot(page, "why-2-scheduled")
            (ARTIFACTS / "why-scheduled.txt").write_text(await panel.inner_text(),
                                                         encoding="utf-8")

            # Why the mentioned one: who called it, and its prompt with what was dropped.
            panel = await open_why(page.locator(f"#{slot_mention}"))
            await expect(panel.locator(".why-reason")).to_have_text("u/pat mentioned it.")
            prompt = panel.locator("pre.why-prompt-text")
            await expect(prompt).to_contain_text("What do you say, u/CoopBot?")
            await expect(prompt).to_contain_text("<|sor u/CoopBot|>")
            assert await panel.locator(".why-dropped li.dropped").count() >= 1
            await expect(panel.locator(".why-call table.why-terms")).to_have_count(0)
            await shot(page, "why-3-mentioned")
            (ARTIFACTS / "why-mentioned.txt").write_text(await panel.inner_text(),
                                                         encoding="utf-8")

            # After a reload, the disclosures are server-rendered the same way.
            await page.reload()
            panel = await open_why(page.locator(f"#{slot_mention}"))
            await expect(panel.locator(".why-reason")).to_have_text("u/pat mentioned it.")

            # A moderator removes pat's comment, then the scheduled answer, while the page
            # is open: the open panel loads again without the removed words, and the
            # removed answer keeps no disclosure.
            asking_id = await mention.get_attribute("id")
            assert asking_id is not None
            await ctx.moderation.remove("root", thread.thread_id, asking_id[2:], "off topic")
            await expect(page.locator(f"#{asking_id} > details > .text")).to_have_text(
                "[removed]")
            panel = page.locator(f"#{slot_mention} > details > details.why .why-panel")
            await expect(panel.locator(".why-hidden")).to_contain_text(
                "removed by a moderator since")
            await expect(panel.locator(".why-reason")).to_have_text(
                "u/[removed] mentioned it.")
            await expect(panel).not_to_contain_text("What do you say")
            await ctx.moderation.remove("root", thread.thread_id, slot_scheduled[2:], "")
            await expect(page.locator(f"#{slot_scheduled} > details > .text")).to_have_text(
                "[removed]")
            await expect(page.locator(f"#{slot_scheduled} > details > details.why")
                         ).to_have_count(0)
            await expect(page.locator(f"#{slot_scheduled} > details > summary .badge")
                         ).to_have_count(0)  # a tombstone is nobody's, no bot's either
            await expect(panel.locator(".why-hidden")).to_be_visible()  # loaded again
            await shot(page, "why-4-removed")
        finally:
            await browser.close()
            worker.stop()
            if running is not None:
                await running
            engine.close()
    assert errors == []
