"""Two people in headless Debian chromium: register, post, see each other and the bots live.

The bots are real: ``playhouse worker --kind text`` and ``--kind image`` run as
subprocesses on the test's Azurite namespace with the session's tiny demo models, and
the app's own results consumer applies what they answer. Each worker loads its model
on its first request (seconds on this machine), so a bot's "thinking" placeholder is
on the page long enough to be seen before the reply replaces it. The tiny model's words
are unpredictable: the test checks that a reply by the bot replaces the placeholder,
not what it says. Screenshots go to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from playhouse import ids, messages
from playhouse.constants import DEFAULT_ROOM, QUEUE_RESULTS
from playhouse.messages import GenerationResult
from playhouse.storage import Storage
from tests.awake import awake_copy
from tests.integration.web_support import PASSWORD, ROOT, build, serve

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 20_000
BOT_WAIT_MS = 150_000
"""A bot's answer: the worker imports torch and loads the model on its first request."""
IMAGE_SIZE = 64


def fast_personas(folder: Path) -> Path:
    """The shipped cast with a small, quick ImageBot (64x64, 2 steps) and a patient CoopBot
    (more re-samples, so the barely trained model closes its tags in time)."""
    awake_copy(folder)
    image = (folder / "imagebot.toml").read_text(encoding="utf-8")
    for old, new in (("steps = 25", "steps = 2"), ("width = 512", f"width = {IMAGE_SIZE}"),
                     ("height = 512", f"height = {IMAGE_SIZE}")):
        assert old in image, old
        image = image.replace(old, new)
    (folder / "imagebot.toml").write_text(image, encoding="utf-8")
    coop = (folder / "coopbot.toml").read_text(encoding="utf-8")
    assert "[generation]\n" in coop
    coop = coop.replace("[generation]\n", "[generation]\nmax_attempts = 8\n")
    (folder / "coopbot.toml").write_text(coop, encoding="utf-8")
    return folder


@contextlib.contextmanager
def workers(connection_string: str, namespace: str, models_dir: Path, personas: Path,
            logs: Path) -> Iterator[list[Path]]:
    """A text and an image ``playhouse worker`` on ``namespace``; stopped (SIGTERM) after.

    Yields the workers' log files (their output goes to files, never to an unread pipe).
    """
    env = {
        **os.environ,
        "PLAYHOUSE_STORAGE": connection_string,
        "PLAYHOUSE_STORAGE_NAMESPACE": namespace,
        "PLAYHOUSE_MODELS_DIR": str(models_dir),
        "PLAYHOUSE_PERSONAS_DIR": str(personas),
        "PLAYHOUSE_WORKER_DEVICE": "cpu",
        "PLAYHOUSE_WORKER_THREADS": "1",
        "PLAYHOUSE_WORKER_GATHER_MS": "20",
        "PLAYHOUSE_WORKER_POLL_MAX_S": "0.2",
        "PLAYHOUSE_LOG_FORMAT": "json",
        "PLAYHOUSE_LOG_LEVEL": "info",
    }
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    paths: list[Path] = []
    try:
        for kind in ("text", "image"):
            path = logs / f"worker-{kind}.log"
            with path.open("wb") as out:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "playhouse", "--config", "/dev/null", "worker",
                     "--kind", kind],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                ))
            paths.append(path)
        yield paths
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def tails(paths: list[Path], lines: int = 25) -> str:
    return "\n".join(
        f"--- {p.name} ---\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
        for p in paths if p.exists()
    )


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


async def test_two_people_chat_with_each_other_and_the_bots(
    storage: Storage, connection_string: str, models_dir: Path, tmp_path: Path
) -> None:
    personas = fast_personas(tmp_path / "personas")
    with workers(connection_string, storage.namespace, models_dir, personas,
                 tmp_path / "logs") as logs:
        try:
            await _chat(storage)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{tails(logs)}") from exc


async def _chat(storage: Storage) -> None:
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

            # Both open it: ImageBot (the room's default bot) is thinking, then paints.
            await row.locator("a.title").click()
            await alice.locator(".thread-row a.title", has_text="A lighthouse").click()
            for page in (alice, bob):
                await expect(page.locator(".comment.placeholder")).to_contain_text("thinking")
            image = bob.locator(".comment.bot img.generated")
            await expect(image).to_be_visible(timeout=BOT_WAIT_MS)
            await expect(image).to_have_js_property("complete", True)
            assert await image.evaluate("img => img.naturalWidth") == IMAGE_SIZE
            painter = bob.locator(".comment.bot", has=bob.locator("img.generated"))
            await expect(painter.locator(".author").first).to_contain_text("u/ImageBot")
            await expect(alice.locator(".comment.bot img.generated")).to_be_visible()
            await expect(alice.locator(".comment.placeholder")).to_have_count(0)
            await shot(bob, "2-imagebot-image")

            # Bob mentions CoopBot; Alice sees Bob's comment, then CoopBot thinking, then it.
            await bob.fill("#reply-top textarea", "Lovely. What do you think, u/CoopBot?")
            await bob.click("#reply-top button[type=submit]")
            await expect(alice.locator(".comment", has_text="What do you think")).to_be_visible()
            thinking = alice.locator(".comment.placeholder", has_text="thinking")
            await expect(thinking).to_be_visible()
            await expect(thinking.locator(".author").first).to_contain_text("u/CoopBot")
            slot = await thinking.get_attribute("id")
            assert slot is not None
            await shot(alice, "3-coopbot-thinking")
            # The worker's answer replaces the placeholder in place, on both pages.
            reply_text = ""
            for page in (alice, bob):
                reply = page.locator(f"#{slot}")
                await expect(reply).not_to_have_class("comment bot placeholder",
                                                      timeout=BOT_WAIT_MS)
                await expect(reply).to_have_class("comment bot")  # not "failed"
                await expect(reply.locator(".author").first).to_contain_text("u/CoopBot")
                text = reply.locator(":scope > details > .text")
                await expect(text).not_to_have_text("thinking…")
                shown = (await text.text_content() or "").strip()
                assert shown, "CoopBot's reply is empty"
                assert reply_text in ("", shown)
                reply_text = shown
            await expect(alice.locator(".comment.placeholder")).to_have_count(0)
            await shot(alice, "3b-coopbot-reply")

            # Alice replies to Bob's comment with markup: it shows as text, nothing runs.
            bobs = alice.locator(".comment", has_text="What do you think").first
            await bobs.locator("button.reply-btn").first.click()
            box = alice.locator("form.inline-reply textarea")
            await box.fill("<script>alert(1)</script>")
            await alice.locator("form.inline-reply button[type=submit]").click()
            shown_markup = bob.locator(".comment .text", has_text="<script>alert(1)</script>")
            await expect(shown_markup).to_be_visible()
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
            bot_reply = bob.locator(f"#{slot}")
            await expect(bot_reply).to_have_class("comment bot")
            await expect(bot_reply.locator(":scope > details > .text")).to_have_text(reply_text)
            await expect(bob.locator(".comment .text", has_text="<script>")).to_be_visible()
            await shot(bob, "5-thread-after-reload")

            # A picture thread of ImageBot's own (what the scheduler asks it for) appears
            # live in the room with its thumbnail.
            src = await bob.locator(".comment.bot img.generated").first.get_attribute("src")
            assert src is not None and src.startswith("/images/")
            await alice.goto(f"/r/{DEFAULT_ROOM}")
            await expect(alice.locator("#presence")).to_contain_text("u/")
            await storage.queues.send(QUEUE_RESULTS, messages.encode(GenerationResult(
                request_id=ids.new_id(), kind="post", persona="ImageBot", room=DEFAULT_ROOM,
                ok=True, title="ImageBot's own lighthouse",
                image_blob=src.removeprefix("/images/"))))
            own = alice.locator(".thread-row", has_text="ImageBot's own lighthouse")
            thumb = own.locator("img.thumb")
            await expect(thumb).to_be_visible()
            await expect(thumb).to_have_js_property("complete", True)
            assert await thumb.evaluate("img => img.naturalWidth") == IMAGE_SIZE
            await shot(alice, "6-imagebot-thread-thumbnail")
            assert dialogs == []
        finally:
            await browser.close()
