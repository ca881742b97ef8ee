""""Why this reply?" meets moderation: what a moderator removed shows nothing of itself
through an explanation (the page, the panel, the API) to anyone but the room's
moderators, and a thread the word filter holds is not there for the why and waiting API.

root is a site admin (``web.admins``), so a moderator of every room."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from playhouse import asking, ids
from playhouse.config import ModerationSettings
from playhouse.explain import GONE, Explanation
from playhouse.storage import Storage
from playhouse.storage.models import Thread

from .test_why import HTML, chain, why
from .web_support import build, ctx_of, serve, socket, the_cast, user_client
from .why_support import CannedModel, answer_all

pytestmark = pytest.mark.integration

SECRET = "zanzibar"


def paths(room: str, thread_id: str, comment_id: str) -> list[str]:
    return [f"/api/threads/{thread_id}/comments/{comment_id}/why",
            f"/r/{room}/t/{thread_id}/why/{comment_id}",
            f"/r/{room}/t/{thread_id}/why/{comment_id}?part=1"]


async def test_a_removed_comment_shows_nothing_of_itself_through_the_why_of_its_answer(
    storage: Storage,
) -> None:
    cast = the_cast()
    model = CannedModel()
    app = await build(storage, cast=cast, waiting_grace_s=3600, admins=("root",))
    thread, deepest = await chain(storage, "Technology", 2, words=5)
    async with serve(app) as base, user_client(base, "cleo") as cleo, \
            user_client(base, "eve") as eve, user_client(base, None) as nobody, \
            user_client(base, "root") as root, socket(base, cleo) as live:
        await live.subscribe("Technology", thread_id=thread.thread_id)
        ack = await live.post("Technology", thread_id=thread.thread_id,
                              parent_id=deepest.comment_id,
                              text=f"my plan for {SECRET}, u/CoopBot?")
        await live.expect("thinking")
        assert await answer_all(app, storage, cast, model) == 1
        bot_id = (await live.expect("comment_replaced")).comment.id
        before = await why(eve, thread.thread_id, bot_id)
        assert before.trace is not None and SECRET in before.trace.prompt  # shown, so far
        assert before.call is not None and before.call.by == "cleo"

        await ctx_of(app).moderation.remove("root", thread.thread_id, ack.comment_id, "spam")
        for client in (eve, nobody):
            for path in paths("Technology", thread.thread_id, bot_id):
                answer = await client.get(path, headers=HTML if "/r/" in path else {})
                assert answer.status_code == 200, (path, answer.text)
                for leaked in (SECRET, "cleo"):
                    assert leaked not in answer.text, (path, leaked)
            x = await why(client, thread.thread_id, bot_id)
            assert x.withheld and x.trace is not None and x.trace.prompt == ""
            assert x.trace.attempts and all(a.output == "" for a in x.trace.attempts)
            assert x.call is not None and x.call.by == x.call.answered_author == "[removed]"
            assert [(a.author, a.text) for a in x.ancestors] == [
                ("ann", "level0 word word word word word"),
                ("bob", "level1 word word word word word"), ("[removed]", "[removed]")]
            part = await client.get(f"/r/Technology/t/{thread.thread_id}/why/{bot_id}",
                                    params={"part": "1"}, headers=HTML)
            assert "removed by a moderator since" in part.text
        # The room's moderators see it all (they read it in the mod log too).
        mine = await why(root, thread.thread_id, bot_id)
        assert mine.withheld == "" and mine.trace is not None and SECRET in mine.trace.prompt

        # The answer itself removed: its explanation tells nothing of it.
        answer_text = (await storage.comments.get(thread.thread_id, bot_id)).text
        await ctx_of(app).moderation.remove("root", thread.thread_id, bot_id, "rude")
        for client in (eve, nobody):
            for path in paths("Technology", thread.thread_id, bot_id):
                answer = await client.get(path, headers=HTML if "/r/" in path else {})
                assert answer.status_code == 200, (path, answer.text)
                for leaked in (answer_text, SECRET, "&lt;|sor", "<|sor", "level0"):
                    assert leaked not in answer.text, (path, leaked)
            x = await why(client, thread.thread_id, bot_id)
            assert x.missing == GONE and x.call is None and x.trace is None
            assert x.ancestors == () and x.persona == "[removed]"
        assert (await why(root, thread.thread_id, bot_id)).trace is not None


async def test_a_removed_post_hides_the_prompts_of_its_answers_and_a_bots_own_thread(
    storage: Storage,
) -> None:
    cast = the_cast()
    model = CannedModel()
    app = await build(storage, cast=cast, waiting_grace_s=3600, admins=("root",))
    async with serve(app) as base, user_client(base, "cleo") as cleo, \
            user_client(base, "eve") as eve, socket(base, cleo) as live:
        await live.subscribe("Technology")
        ack = await live.post("Technology", title=f"off to {SECRET}",
                              text="what should I pack, u/CoopBot")
        request_id = asking.request_id_for(ack.thread_id, "CoopBot")
        deadline = time.monotonic() + 10
        while (await storage.jobs.get(request_id)).state != "pending":  # queued after the ack
            assert time.monotonic() < deadline, "the call was not queued"
            await asyncio.sleep(0.05)
        assert await answer_all(app, storage, cast, model) == 1
        job = await storage.jobs.get(request_id)
        assert job.state == "done" and job.result_id
        before = await why(eve, ack.thread_id, job.result_id)
        assert before.trace is not None and SECRET in before.trace.prompt
        await ctx_of(app).moderation.remove("root", ack.thread_id, None, "spam")
        for path in paths("Technology", ack.thread_id, job.result_id):
            answer = await eve.get(path, headers=HTML if "/r/" in path else {})
            assert answer.status_code == 200, (path, answer.text)
            assert SECRET not in answer.text and "cleo" not in answer.text, path
        x = await why(eve, ack.thread_id, job.result_id)
        assert x.withheld and x.trace is not None and x.trace.prompt == ""
        assert x.call is not None and x.call.by == "[removed]"

        # A bot's own thread, removed: nothing of how it was made.
        now = time.time()
        bot_thread = await storage.threads.create(Thread(
            thread_id=ids.new_id(now), room="Technology", title=f"CoopBot on {SECRET}",
            body="", url=None, author="CoopBot", is_bot=True, persona="CoopBot",
            created_at=now, last_activity=now, job_id=request_id))  # its job: any with a trace
        shown = await eve.get(f"/api/threads/{bot_thread.thread_id}/why")
        assert shown.status_code == 200
        await ctx_of(app).moderation.remove("root", bot_thread.thread_id, None, "spam")
        for path in (f"/api/threads/{bot_thread.thread_id}/why",
                     f"/r/Technology/t/{bot_thread.thread_id}/why",
                     f"/r/Technology/t/{bot_thread.thread_id}/why?part=1"):
            answer = await eve.get(path, headers=HTML if "/r/" in path else {})
            assert answer.status_code == 200, (path, answer.text)
            assert SECRET not in answer.text and "&lt;|so" not in answer.text, path
        x = msgspec.json.decode(
            (await eve.get(f"/api/threads/{bot_thread.thread_id}/why")).content,
            type=Explanation)
        assert x.missing == GONE and x.trace is None


async def test_a_held_thread_is_not_there_for_the_why_and_waiting_api(
    storage: Storage,
) -> None:
    app = await build(storage, waiting_grace_s=3600, admins=("root",),
                      moderation=ModerationSettings(blocked_words=(SECRET,),
                                                    filter_mode="hold"))
    async with serve(app) as base, user_client(base, "cleo") as cleo, \
            user_client(base, "eve") as eve, user_client(base, "root") as root, \
            socket(base, cleo) as live:
        await live.subscribe("Technology")
        ack = await live.post("Technology", title=f"trip to {SECRET}", text="hm")
        assert (await storage.threads.get(ack.thread_id)).held
        some = ids.new_id()
        waiting = f"/api/threads/{ack.thread_id}/waiting?ids={some}"
        for client, status in ((eve, 404), (cleo, 200), (root, 200)):
            answer = await client.get(waiting)
            assert answer.status_code == status, (answer.status_code, answer.text)
        answer = await eve.get(f"/api/threads/{ack.thread_id}/why")
        assert answer.status_code == 404 and SECRET not in answer.text
