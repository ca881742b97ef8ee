"""Honest waiting: a placeholder says where its answer stands (no worker running, queued,
retrying after a rejected sample), a bot that will not answer says why (asleep, a cap
reached), a bot's "now", and the operator's view of one persona."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from playhouse import asking, ids, messages
from playhouse.constants import QUEUE_INTERACTIVE
from playhouse.generation.heartbeat import Heartbeat
from playhouse.storage import Storage
from playhouse.storage.models import Comment, Thread
from playhouse.views import PersonaNow

from .web_support import build, ctx_of, serve, socket, the_cast, user_client
from .why_support import CannedModel, answer_all, canned_worker, cast_with, persona_toml

pytestmark = pytest.mark.integration

WAIT_S = 10.0
"""The bound within which a placeholder must say there is no worker (grace + a look)."""


async def thread_in(storage: Storage, room: str = "Technology") -> Thread:
    now = time.time()
    return await storage.threads.create(Thread(
        thread_id=ids.new_id(now), room=room, title="a question", body="", url=None,
        author="ann", is_bot=False, persona=None, created_at=now, last_activity=now))


async def test_with_no_worker_the_placeholder_says_so_and_is_answered_once_one_starts(
    storage: Storage,
) -> None:
    cast = the_cast()
    app = await build(storage, cast=cast, consume=True, waiting_grace_s=0.3,
                      waiting_interval_s=0.3)
    thread = await thread_in(storage)
    async with serve(app) as base, user_client(base, "gus") as gus, socket(base, gus) as live:
        await live.subscribe("Technology", thread_id=thread.thread_id)
        await live.post("Technology", thread_id=thread.thread_id, text="u/CoopBot hello?")
        thinking = await live.expect("thinking")
        said = await live.expect("waiting", lambda e: e.comment_id == thinking.comment.id,
                                 within=WAIT_S)
        assert said.wait.state == "no_worker" and not said.wait.final
        assert "no worker running for text bots" in said.wait.text
        # The page that loads now asks, and hears the same.
        answer = await gus.get(f"/api/threads/{thread.thread_id}/waiting",
                               params={"ids": thinking.comment.id})
        assert answer.json()[thinking.comment.id]["state"] == "no_worker"
        # A worker starts (its heartbeat first): the request waited on its queue.
        model = CannedModel()
        worker = canned_worker(storage, cast, model, burst=False, heartbeat_s=0.2)
        running = asyncio.create_task(worker.main())
        try:
            replaced = await live.expect("comment_replaced",
                                         lambda e: e.comment.id == thinking.comment.id,
                                         within=30)
            assert replaced.comment.status == "ok" and replaced.comment.author == "CoopBot"
        finally:
            worker.stop()
            await running
        assert thinking.comment.id not in ctx_of(app).waiting.watched  # type: ignore[union-attr]


async def test_a_queued_placeholder_counts_whats_ahead_and_a_retry_is_told(
    storage: Storage,
) -> None:
    cast = the_cast()
    app = await build(storage, cast=cast, waiting_grace_s=3600)
    thread = await thread_in(storage)
    beat = Heartbeat(storage.workers, storage.metrics, kind="text", interval_s=30,
                     host="box")
    idle = canned_worker(storage, cast, CannedModel())
    await beat.report(idle, "running")  # a live worker that has not taken anything yet
    async with serve(app) as base, user_client(base, "hal") as hal, socket(base, hal) as live:
        await live.subscribe("Technology", thread_id=thread.thread_id)
        for n in range(3):
            await live.post("Technology", client_id=f"p{n}", thread_id=thread.thread_id,
                            text=f"question {n} for u/CoopBot")
        shown = [await live.expect("thinking") for _ in range(3)]
        waiting = ctx_of(app).waiting
        assert waiting is not None
        comments = [await storage.comments.get(thread.thread_id, t.comment.id) for t in shown]
        states = await waiting.states_of(comments)
        assert [states[c.comment_id].state for c in comments] == ["queued"] * 3
        assert sorted(states[c.comment_id].position or 0 for c in comments) == [0, 1, 2]
        assert "next in line" in states[comments[0].comment_id].text
        # The worker takes them: the first sample of each is rejected, and it says it
        # samples again (its progress row), with the reason.
        await canned_worker(storage, cast, CannedModel()).main()
        rows = await storage.progress.some([c.job_id or "" for c in comments])
        assert {r.state for r in rows} == {"retrying"}
        assert {(r.attempt, r.reason) for r in rows} == {(2, "no_end_tag")}


def asleep_now() -> str:
    hour = int(time.time() // 3600) % 24
    return f"active_hours = [{(hour + 2) % 24}, {(hour + 5) % 24}]"


async def test_a_bot_that_sleeps_or_is_capped_says_why_instead_of_staying_silent(
    storage: Storage, tmp_path: Path,
) -> None:
    cast = cast_with(tmp_path / "personas", {
        "sleepy.toml": persona_toml("Sleepy", activity=asleep_now()),
        "busy.toml": persona_toml("Busy", activity="per_room_hour_cap = 1"),
        "chatty.toml": persona_toml("Chatty", activity="per_thread_cap = 1"),
    })
    app = await build(storage, cast=cast, waiting_grace_s=3600)
    thread = await thread_in(storage)
    now = time.time()
    # Busy answered in this room ten minutes ago; Chatty once in this thread.
    await storage.rooms.touch("Technology", answers=[("Busy", now - 600)])
    await storage.threads.touch(thread.thread_id, answers=["Chatty"])
    async with serve(app) as base, user_client(base, "ivy") as ivy, socket(base, ivy) as live:
        await live.subscribe("Technology", thread_id=thread.thread_id)
        said: dict[str, object] = {}
        for n, name in enumerate(("Sleepy", "Busy", "Chatty")):
            await live.post("Technology", client_id=f"q{n}", thread_id=thread.thread_id,
                            text=f"u/{name} are you there?")
            event = await live.expect("comment", lambda e: e.comment.is_bot)
            said[name] = event.comment
        sleepy, busy, chatty = (said[n] for n in ("Sleepy", "Busy", "Chatty"))
        assert sleepy.status == "declined" and sleepy.notice.state == "asleep"  # type: ignore[attr-defined]
        assert sleepy.notice.final and sleepy.notice.wakes_at  # type: ignore[attr-defined]
        assert "is asleep" in sleepy.text and "wakes at" in sleepy.text  # type: ignore[attr-defined]
        assert busy.notice.state == "hour_cap" and busy.notice.next_at  # type: ignore[attr-defined]
        assert "within the hour" in busy.text  # type: ignore[attr-defined]
        assert chatty.notice.state == "thread_cap"  # type: ignore[attr-defined]
        # Nothing was queued, the jobs ended, the page shows the notices, the panel says why.
        assert await storage.queues.receive(QUEUE_INTERACTIVE) == []
        for comment in (sleepy, busy, chatty):
            stored = await storage.comments.get(thread.thread_id, comment.id)  # type: ignore[attr-defined]
            job = await storage.jobs.get(stored.job_id or "")
            assert job.state == "failed" and job.result_id == stored.comment_id
        page = await ivy.get(f"/r/Technology/t/{thread.thread_id}", headers={"accept": "text/html"})
        assert page.text.count('class="notice"') == 3
        assert 'data-state="asleep"' in page.text and "data-wakes-at=" in page.text
        part = await ivy.get(f"/r/Technology/t/{thread.thread_id}/why/{sleepy.id}",  # type: ignore[attr-defined]
                             params={"part": "1"}, headers={"accept": "text/html"})
        assert "It declined: asleep" in part.text and "Nothing was generated" in part.text


async def test_answers_count_towards_the_caps_and_a_bots_now_shows_them(
    storage: Storage,
) -> None:
    cast = the_cast()
    app = await build(storage, cast=cast, waiting_grace_s=3600)
    thread = await thread_in(storage)
    async with serve(app) as base, user_client(base, "joan") as jo, socket(base, jo) as live:
        await live.subscribe("Technology", thread_id=thread.thread_id)
        await live.post("Technology", thread_id=thread.thread_id, text="u/CoopBot hi")
        await live.expect("thinking")
        assert await answer_all(app, storage, cast, CannedModel()) == 1
        stored = await storage.threads.get(thread.thread_id)
        assert dict(stored.bot_replies) == {"CoopBot": 1}
        room = await storage.rooms.get("Technology")
        assert [name for name, _ in room.bot_recent] == ["CoopBot"]
        answer = await jo.get("/api/personas/coopbot/now")
        assert answer.status_code == 200
        now = PersonaNow(**answer.json())
        coop = cast.personas["CoopBot"].activity
        assert now.awake and now.wakes_at is None and now.replies_last_hour == 1
        assert now.replies_left == coop.per_hour_cap - 1
        assert now.next_post_at is not None
        assert (await jo.get("/api/personas/NoSuchBot/now")).status_code == 404
        # The room's page shows each of its bots' "now" (Technology's: not CoopBot).
        room_page = (await jo.get("/r/Technology", headers={"accept": "text/html"})).text
        here = [p.name for p in cast.in_room("Technology")]
        assert here and all(f'<p class="now" data-persona="{name}">' in room_page
                            for name in here)
        assert "replies left this hour" in room_page


async def test_the_operator_sees_a_personas_decisions_and_rejection_rate(
    storage: Storage, tmp_path: Path,
) -> None:
    cast = cast_with(tmp_path / "personas", {
        "sleepy.toml": persona_toml("Sleepy", activity=asleep_now())})
    app = await build(storage, cast=cast, admins=("boss",), waiting_grace_s=3600)
    thread = await thread_in(storage)
    async with serve(app) as base, user_client(base, "boss") as boss, \
            user_client(base, "kim") as kim, socket(base, boss) as live:
        await live.subscribe("Technology", thread_id=thread.thread_id)
        await live.post("Technology", client_id="a", thread_id=thread.thread_id,
                        text="u/CoopBot hi")
        await live.post("Technology", client_id="b", thread_id=thread.thread_id,
                        text="u/Sleepy hi")
        await live.expect("thinking")
        assert await answer_all(app, storage, cast, CannedModel(), heartbeat_s=0.2) == 1
        data = (await boss.get("/status/data")).json()
        coop = next(p for p in data["personas"] if p["name"] == "CoopBot")
        assert coop["samples"] == 2 and coop["rejections"] == {"no_end_tag": 1}
        assert coop["rejection_rate"] == 0.5 and coop["failing"] is False  # too few samples
        mine = (await boss.get("/status/personas/CoopBot/data")).json()
        assert mine["rates"] == {"no_end_tag": 0.5}
        (decision,) = mine["decisions"]
        assert decision["outcome"] == "replied" and "u/boss mentioned it" in decision["why"]
        sleepy = (await boss.get("/status/personas/Sleepy/data")).json()
        (skipped,) = sleepy["decisions"]
        assert skipped["outcome"] == "skipped" and "asleep" in skipped["why"]
        page = await boss.get("/status/personas/CoopBot", headers={"accept": "text/html"})
        assert 'data-reason="no_end_tag"' in page.text and "u/boss mentioned it" in page.text
        assert (await kim.get("/status/personas/CoopBot/data")).status_code == 403
        status = await boss.get("/status", headers={"accept": "text/html"})
        assert 'href="/status/personas/CoopBot"' in status.text


async def test_a_model_that_keeps_failing_the_grammar_stands_out(storage: Storage) -> None:
    cast = the_cast()
    app = await build(storage, cast=cast, admins=("boss",), waiting_grace_s=3600)
    async with serve(app) as base, user_client(base, "boss") as boss, \
            socket(base, boss) as live:
        for n in range(3):
            thread = await thread_in(storage)
            await live.subscribe("Technology", thread_id=thread.thread_id)
            await storage.comments.add(Comment(
                comment_id=ids.new_id(), thread_id=thread.thread_id, room="Technology",
                parent_id=None, author="ann", is_bot=False, persona=None, text=f"n{n}",
                created_at=time.time()))
            await live.post("Technology", client_id=f"c{n}", thread_id=thread.thread_id,
                            text=f"u/CoopBot number {n}")
            await live.expect("thinking")
        assert await answer_all(app, storage, cast, CannedModel(), heartbeat_s=0.2) == 3
        coop = next(p for p in (await boss.get("/status/data")).json()["personas"]
                    if p["name"] == "CoopBot")
        assert coop["samples"] == 6 and coop["failing"] is True
        status = await boss.get("/status", headers={"accept": "text/html"})
        rows = re.findall(r'<tr data-persona="([^"]+)" class="([^"]*)"', status.text)
        assert {name for name, classes in rows if "failing" in classes.split()} == {"CoopBot"}


class _SlowFirstWrite:
    """The storage's progress rows, the first write held back a while (a slow request to
    the table): the rows told after it must still land after it."""

    def __init__(self, storage: Storage) -> None:
        self.inner = storage.progress
        self.calls = 0

    async def mark(self, rows: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(0.5)  # the fault: this write is slow, not a wait for a state
        await self.inner.mark(rows)


async def test_a_slow_progress_write_never_undoes_the_later_one(storage: Storage) -> None:
    """The worker wrote each progress row in its own task: a slow "generating" write
    landed after the "retrying" told after it, and the placeholder said "generating"
    again (seen under load in test_a_queued_placeholder_counts_whats_ahead...)."""
    cast = the_cast()
    thread = await thread_in(storage)
    request = asking.reply_request(persona=cast.personas["CoopBot"], thread=thread, chain=[],
                                   parent_id=None, queue=QUEUE_INTERACTIVE)
    await storage.queues.send(QUEUE_INTERACTIVE, messages.encode(request))
    worker = canned_worker(storage, cast, CannedModel())
    slow = _SlowFirstWrite(storage)
    worker.progress = slow  # type: ignore[assignment]
    await worker.main()
    assert slow.calls >= 2  # "generating", then "retrying" after the rejected sample
    (row,) = await storage.progress.some([request.request_id])
    assert row.state == "retrying" and row.attempt == 2, row
