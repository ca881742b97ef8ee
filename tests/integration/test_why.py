""""Why this reply?" end to end: a person's call and the scheduler's, answered by the real
worker over a canned model (real prompts, real re-sampling), applied by the app's own
consumer, explained by the pages and the API under the room's access rule."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from playhouse import asking, ids
from playhouse.config import SchedulerSettings
from playhouse.constants import CONTAINER_EXPLANATIONS, TABLE_PROPERTY_MAX_CHARS
from playhouse.explain import MISSING, Explanation
from playhouse.scheduling.scheduler import Scheduler
from playhouse.storage import Storage
from playhouse.storage.models import Comment, Room, Thread

from .web_support import build, serve, socket, the_cast, user_client
from .why_support import REJECTED, CannedModel, answer_all, cast_with, persona_toml

pytestmark = pytest.mark.integration

HTML = {"accept": "text/html"}


async def chain(storage: Storage, room: str, depth: int, *, words: int = 60,
                chars: int | None = None) -> tuple[Thread, Comment]:
    """A thread and a chain of ``depth`` people's comments (as posting stores them)."""
    now = time.time()
    thread = await storage.threads.create(Thread(
        thread_id=ids.new_id(now), room=room, title="Which editor?", body="vim or emacs?",
        url=None, author="ann", is_bot=False, persona=None, created_at=now,
        last_activity=now, comment_count=depth))
    parent: Comment | None = None
    for level in range(depth):
        text = (f"level{level} " + ("x" * (chars - 8) if chars else "word " * words)).strip()
        parent = await storage.comments.add(Comment(
            comment_id=ids.new_id(), thread_id=thread.thread_id, room=room,
            parent_id=parent.comment_id if parent else None, author=("ann", "bob")[level % 2],
            is_bot=False, persona=None, text=text, created_at=time.time(), depth=level,
            path=(*parent.path, parent.comment_id)[-14:] if parent else ()))
    assert parent is not None
    return thread, parent


async def why(client: object, thread_id: str, comment_id: str) -> Explanation:
    answer = await client.get(f"/api/threads/{thread_id}/comments/{comment_id}/why")  # type: ignore[attr-defined]
    assert answer.status_code == 200, answer.text
    return msgspec.json.decode(answer.content, type=Explanation)


async def test_a_mentioned_reply_explains_its_call_prompt_attempts_and_timings(
    storage: Storage,
) -> None:
    cast = the_cast()
    model = CannedModel()
    app = await build(storage, cast=cast, waiting_grace_s=3600)
    thread, deepest = await chain(storage, "Technology", 8)
    async with serve(app) as base, user_client(base, "cleo") as cleo, \
            socket(base, cleo) as live:
        await live.subscribe("Technology", thread_id=thread.thread_id)
        ack = await live.post("Technology", thread_id=thread.thread_id,
                              parent_id=deepest.comment_id, text="and you, u/CoopBot?")
        thinking = await live.expect("thinking")
        assert await answer_all(app, storage, cast, model) == 1
        replaced = await live.expect("comment_replaced")
        assert replaced.comment.id == thinking.comment.id and replaced.comment.status == "ok"

        x = await why(cleo, thread.thread_id, replaced.comment.id)
        assert x.missing == "" and x.persona == "CoopBot" and x.state == "done"
        assert x.call is not None and x.call.reason == "mention" and x.call.by == "cleo"
        assert x.call.answered == ack.comment_id
        trace = x.trace
        assert trace is not None
        # The prompt exactly as the model saw it, tags and all.
        assert model.prompts[0] == trace.prompt
        assert trace.prompt.startswith("<|soss r/Technology|><|sot|>Which editor?<|eot|>")
        assert trace.prompt.endswith("<|sor u/CoopBot|>")
        # CoopBot's budget (400 tokens of 4 characters) cannot hold 8 long comments.
        assert trace.chain == 9 and trace.dropped > 0
        assert [a.dropped for a in x.ancestors] == [i < trace.dropped for i in range(9)]
        for a in x.ancestors:
            assert (a.text in trace.prompt) is not a.dropped
        assert [(a.accepted, a.reason) for a in trace.attempts] == [
            (False, "no_end_tag"), (True, "")]
        assert trace.attempts[0].output == REJECTED
        assert trace.seed is not None and trace.attempts[1].seed == trace.seed + 7919
        assert dict(trace.params)["temperature"] == cast.personas["CoopBot"].generation.temperature
        assert (trace.engine, trace.device, trace.batch) == ("canned", "cpu", 1)
        t = x.timings
        assert t.queued_s is not None and t.queued_s >= 0
        assert t.generating_s is not None and t.applying_s is not None
        assert t.total_s is not None and t.total_s >= t.queued_s

        # The thread page offers the disclosure; its panel is the page's, server-rendered.
        page = await cleo.get(f"/r/Technology/t/{thread.thread_id}", headers=HTML)
        assert f'/why/{replaced.comment.id}?part=1' in page.text
        part = await cleo.get(f"/r/Technology/t/{thread.thread_id}/why/{replaced.comment.id}",
                              params={"part": "1"}, headers=HTML)
        assert part.status_code == 200
        assert "&lt;|sor u/CoopBot|&gt;" in part.text  # the tags, shown as text
        assert 'data-reason="mention"' in part.text and "u/cleo mentioned it" in part.text
        assert part.text.count('class="dropped"') == trace.dropped
        assert "rejected: no end tag" in part.text and "accepted" in part.text
        assert "<html" not in part.text  # the panel alone
        full = await cleo.get(f"/r/Technology/t/{thread.thread_id}/why/{replaced.comment.id}",
                              headers=HTML)
        assert "<html" in full.text and "dropped to fit the token budget" in full.text


async def test_a_scheduled_reply_shows_its_score_term_by_term_and_who_was_held_back(
    storage: Storage, tmp_path: Path,
) -> None:
    cast = cast_with(tmp_path / "personas", {
        "eager.toml": persona_toml("Eager", activity="per_thread_cap = 5\nper_hour_cap = 50\n"
                                   "per_room_hour_cap = 50", weights="base = 10.0"),
        "capped.toml": persona_toml("Capped", activity="per_thread_cap = 0",
                                    weights="base = 10.0"),
    })
    model = CannedModel()
    app = await build(storage, cast=cast, waiting_grace_s=3600)
    now = time.time()
    thread = await storage.threads.create(Thread(
        thread_id=ids.new_id(now), room="Technology", title="Tabs or spaces?", body="",
        url=None, author="ann", is_bot=False, persona=None, created_at=now, last_activity=now))
    asked = await storage.comments.add(Comment(
        comment_id=ids.new_id(), thread_id=thread.thread_id, room="Technology",
        parent_id=None, author="ann", is_bot=False, persona=None,
        text="why does anyone use tabs?", created_at=time.time()))
    scheduler = Scheduler(storage, cast, SchedulerSettings(reply_delay_s=0.0, seed=4))
    report = await scheduler.run_round()
    mine = [r for r in report.replies if r.persona == "Eager" and r.parent_id == asked.comment_id]
    assert len(mine) == 1, report
    async with serve(app) as base, user_client(base, "dora") as dora:
        assert await answer_all(app, storage, cast, model) >= 1
        job = await storage.jobs.get(mine[0].request_id)
        assert job.state == "done" and job.result_id
        x = await why(dora, thread.thread_id, job.result_id)
        call = x.call
        assert call is not None and call.reason == "scheduler"
        terms = dict(call.terms)
        assert terms["base"] == 10.0
        assert terms["human"] == cast.personas["Eager"].activity.weights.human
        assert terms["question"] == cast.personas["Eager"].activity.weights.question
        assert {"mention", "keyword_positive", "keyword_negative", "own_thread", "depth",
                "score", "decay"} <= set(terms)
        assert call.probability is not None and call.draw is not None
        assert call.draw < call.probability
        assert [(h.persona, h.reason) for h in call.held_back] == [("Capped", "per_thread_cap")]
        assert x.trace is not None and x.trace.prompt.endswith("<|sor u/Eager|>")
        part = await dora.get(f"/r/Technology/t/{thread.thread_id}/why/{job.result_id}",
                              params={"part": "1"}, headers=HTML)
        for term in ("base", "human", "question", "depth", "score", "decay", "probability",
                     "draw"):
            assert f'data-term="{term}"' in part.text, term
        assert 'data-persona="Capped"' in part.text and "per thread cap" in part.text
    # The operator sees the decisions on /status.
    verdicts = await storage.decisions.recent("Eager")
    assert any(v.outcome == "reply" and v.target == asked.comment_id for v in verdicts)
    held = await storage.decisions.recent("Capped")
    assert any(v.outcome == "blocked" and v.reason == "per_thread_cap" for v in held)


async def test_a_private_rooms_explanations_are_for_its_members_only(storage: Storage) -> None:
    cast = the_cast()
    model = CannedModel()
    app = await build(storage, cast=cast, waiting_grace_s=3600)
    now = time.time()
    await storage.rooms.create(Room(name="Secrets", description="hush", public=False,
                                    default_bot=None, bots=(), created_by="owner",
                                    created_at=now, last_activity=now))
    async with serve(app) as base, user_client(base, "owner") as owner, \
            user_client(base, "eve") as eve, user_client(base, None) as nobody, \
            socket(base, owner) as live:
        await storage.members.join("Secrets", "owner", role="owner")
        await live.subscribe("Secrets")
        ack = await live.post("Secrets", title="the plan", text="u/CoopBot keep it quiet")
        request_id = asking.request_id_for(ack.thread_id, "CoopBot")
        deadline = time.monotonic() + 10
        while (await storage.jobs.get(request_id)).state != "pending":  # queued after the ack
            assert time.monotonic() < deadline, "the call was not queued"
            await asyncio.sleep(0.05)
        assert await answer_all(app, storage, cast, model) == 1
        comments = (await storage.comments.list(ack.thread_id)).items
        (bot,) = [c for c in comments if c.is_bot]
        secret = bot.text
        mine = await why(owner, ack.thread_id, bot.comment_id)
        assert mine.trace is not None and "the plan" in mine.trace.prompt
        paths = [f"/api/threads/{ack.thread_id}/comments/{bot.comment_id}/why",
                 f"/api/threads/{ack.thread_id}/waiting?ids={bot.comment_id}",
                 f"/r/Secrets/t/{ack.thread_id}/why/{bot.comment_id}",
                 f"/r/Secrets/t/{ack.thread_id}/why/{bot.comment_id}?part=1",
                 # a made-up comment id answers the same: nothing tells what exists
                 f"/api/threads/{ack.thread_id}/comments/{ids.new_id()}/why"]
        for client in (eve, nobody):
            for path in paths:
                answer = await client.get(path, headers=HTML if "/r/" in path else {})
                # A private room's thread is, to others, one that does not exist (issue 12),
                # on a page as through the API.
                assert answer.status_code == 404, (path, answer.status_code)
                for leaked in ("the plan", secret, "CoopBot", "<|sor"):
                    assert leaked not in answer.text, (path, leaked)
        # The trace's blob has no address: the images route serves images only.
        for client in (owner, eve):
            answer = await client.get(f"/images/Secrets/{request_id}.json")
            assert answer.status_code in (403, 404)
            assert "<|sor" not in answer.text


async def test_a_prompt_larger_than_a_table_property_is_kept_in_a_blob_and_shown_whole(
    storage: Storage,
) -> None:
    cast = the_cast()
    model = CannedModel(chars_per_token=200)  # so that CoopBot's budget takes it all
    app = await build(storage, cast=cast, waiting_grace_s=3600)
    thread, deepest = await chain(storage, "Technology", 4, chars=9000)
    async with serve(app) as base, user_client(base, "finn") as finn, \
            socket(base, finn) as live:
        await live.subscribe("Technology", thread_id=thread.thread_id)
        await live.post("Technology", thread_id=thread.thread_id,
                        parent_id=deepest.comment_id, text="summarise, u/CoopBot")
        await live.expect("thinking")
        assert await answer_all(app, storage, cast, model) == 1
        replaced = await live.expect("comment_replaced")
        stored = await storage.comments.get(thread.thread_id, replaced.comment.id)
        assert stored.job_id is not None
        job = await storage.jobs.get(stored.job_id)
        assert job.trace == "" and job.trace_blob == f"Technology/{job.request_id}.json"
        assert await storage.blobs.exists(CONTAINER_EXPLANATIONS, job.trace_blob)
        x = await why(finn, thread.thread_id, replaced.comment.id)
        assert x.trace is not None and not x.trace.truncated
        assert len(x.trace.prompt) > TABLE_PROPERTY_MAX_CHARS
        assert x.trace.prompt == model.prompts[0]  # whole
        assert x.trace.dropped == 0


async def test_an_answer_without_an_explanation_says_so(storage: Storage) -> None:
    app = await build(storage, waiting_grace_s=3600)
    now = time.time()
    thread = await storage.threads.create(Thread(
        thread_id=ids.new_id(now), room="Technology", title="old times", body="",
        url=None, author="ann", is_bot=False, persona=None, created_at=now, last_activity=now))
    old = await storage.comments.add(Comment(
        comment_id=ids.new_id(), thread_id=thread.thread_id, room="Technology",
        parent_id=None, author="CoopBot", is_bot=True, persona="CoopBot",
        text="from before explanations", created_at=now, job_id=None))
    lost = await storage.comments.add(Comment(
        comment_id=ids.new_id(), thread_id=thread.thread_id, room="Technology",
        parent_id=None, author="CoopBot", is_bot=True, persona="CoopBot",
        text="its job is gone", created_at=now, job_id=ids.new_id()))
    person = await storage.comments.add(Comment(
        comment_id=ids.new_id(), thread_id=thread.thread_id, room="Technology",
        parent_id=None, author="ann", is_bot=False, persona=None, text="mine",
        created_at=now))
    async with serve(app) as base, user_client(base, None) as anyone:
        for comment in (old, lost):
            x = await why(anyone, thread.thread_id, comment.comment_id)
            assert x.missing == MISSING and x.trace is None and x.call is None
            part = await anyone.get(
                f"/r/Technology/t/{thread.thread_id}/why/{comment.comment_id}",
                params={"part": "1"}, headers=HTML)
            assert part.status_code == 200 and "no record of how this was made" in part.text
        answer = await anyone.get(
            f"/api/threads/{thread.thread_id}/comments/{person.comment_id}/why")
        assert answer.status_code == 404


async def test_a_bots_own_thread_explains_the_schedulers_draw(
    storage: Storage, tmp_path: Path,
) -> None:
    cast = cast_with(tmp_path / "personas", {
        "poster.toml": persona_toml("Poster", activity="posts_per_day = 200").replace(
            "posts_per_day = 0\n", "")})
    model = CannedModel()
    app = await build(storage, cast=cast, waiting_grace_s=3600)
    scheduler = Scheduler(storage, cast, SchedulerSettings(time_scale=1000.0, seed=1))
    report = await scheduler.run_round()
    (posted,) = [r for r in report.posts if r.persona == "Poster"]
    async with serve(app) as base, user_client(base, None) as anyone:
        assert await answer_all(app, storage, cast, model) >= 1
        thread = await storage.threads.get(asking.thread_id_for(posted.request_id))
        assert thread.is_bot and thread.job_id == posted.request_id
        answer = await anyone.get(f"/api/threads/{thread.thread_id}/why")
        assert answer.status_code == 200, answer.text
        x = msgspec.json.decode(answer.content, type=Explanation)
        assert x.kind == "post" and x.call is not None and x.call.reason == "scheduler"
        assert x.call.probability == 1.0 and dict(x.call.terms)["cap"] == 200
        assert x.trace is not None and x.trace.prompt == "<|soss r/Technology|><|sot|>"
        page = await anyone.get(f"/r/Technology/t/{thread.thread_id}", headers=HTML)
        assert f"/t/{thread.thread_id}/why?part=1" in page.text
        part = await anyone.get(f"/r/Technology/t/{thread.thread_id}/why",
                                params={"part": "1"}, headers=HTML)
        assert "start a thread in r/Technology" in part.text
        assert 'data-term="posts_in_day"' in part.text
