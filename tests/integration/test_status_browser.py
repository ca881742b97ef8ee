"""The admin status page in headless Debian chromium, with a real worker running.

A text worker (real small models, heartbeat every 0.3 s) answers three requests, one of
them for a persona whose model does not exist; the admin's page must show the worker,
the unavailable persona and charts with points, and refresh itself from /status/data.
A screenshot goes to ``tests/artifacts/status.png`` (git-ignored).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from playhouse.personas import load_cast_strict
from playhouse.storage import Storage

from .conftest import add_persona
from .test_ops import make_worker, submit_posts
from .web_support import PASSWORD, build, serve

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 20_000


async def register(browser: Browser, base: str, name: str, errors: list[str]) -> Page:
    context = await browser.new_context(base_url=base, viewport={"width": 1200, "height": 1400})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith(("/favicon.ico", "/status")) else None)
    await page.goto("/register")
    await page.fill("input[name=username]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=password2]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator(".me")).to_have_text(f"u/{name}")
    return page


async def test_admin_sees_workers_personas_and_live_charts(
    storage: Storage, models_dir: Path, persona_dir: Path
) -> None:
    add_persona(persona_dir, "GhostBot", model="/nonexistent/model/folder")
    cast = load_cast_strict(persona_dir)
    app = await build(storage, cast=cast, consume=True, admins=("boss",),
                      sample_interval_s=0.5)
    await submit_posts(storage, cast, ["GhostBot", "CoopBot", "CoopBot"])
    worker = make_worker(storage, cast, models_dir, burst=False, interval_s=0.3)
    running = asyncio.create_task(worker.main())
    errors: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while worker.stats.answered + worker.stats.failed < 3:
            assert time.monotonic() < deadline, "the worker did not finish three requests"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # a heartbeat and a depth sample after the work
        async with serve(app) as base, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                                               headless=True)
            try:
                other = await register(browser, base, "someone", errors)
                answer = await other.goto("/status")
                assert answer is not None and answer.status == 403
                await expect(other.locator("main")).to_contain_text("admins")

                page = await register(browser, base, "boss", errors)
                await page.goto("/status")
                status = page.locator("#status")
                await expect(status).to_have_attribute("data-rendered", "1")
                await expect(page.locator("#storage-state")).to_have_text("up")
                ghost = page.locator('#personas tr[data-persona="GhostBot"]')
                await expect(ghost).to_have_class("state-unavailable")
                await expect(ghost.locator(".model")).to_contain_text("unavailable")
                coop = page.locator('#personas tr[data-persona="CoopBot"]')
                await expect(coop.locator(".model")).to_have_text("loaded")
                row = page.locator("#workers tr[data-worker]")
                await expect(row).to_have_count(1)
                await expect(row).to_contain_text("test-box")
                await expect(row).to_contain_text("running")
                lines = "polyline, circle"
                assert await page.locator(f"#chart-throughput :is({lines})").count() >= 1
                await expect(page.locator("#legend-throughput")).to_contain_text("answers/min")
                # The page refreshes itself from /status/data (every 5 s). Queue depths are
                # sampled only while someone watches: this visit started it, and the next
                # refresh charts the first samples.
                await expect(status).to_have_attribute("data-rendered", "2", timeout=15_000)
                await expect(row).to_contain_text("test-box")
                await expect(page.locator(f"#chart-depth :is({lines})").first).to_be_attached(
                    timeout=15_000)
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "status.png"), full_page=True)
                # Each persona's share of rejected samples, and its own page.
                samples = await coop.locator("td.rejected").text_content() or ""
                assert re.fullmatch(r"\d+% of \d+", samples), samples  # two answers drew some
                await coop.locator("a", has_text="CoopBot").click()
                await expect(page.locator("h1")).to_contain_text("u/CoopBot")
                await expect(page.locator('#rejections tr[data-reason="all"]')).to_be_visible()
                await expect(page.locator("#decisions")).to_be_visible()
                await page.screenshot(path=str(ARTIFACTS / "status-persona.png"),
                                      full_page=True)
            finally:
                await browser.close()
    finally:
        worker.stop()
        await running
    assert errors == []  # no script error, no failed request but the 403 above
