"""Asking again meets "why this reply?" and honest waiting: an answer asked again has its
own explanation and its placeholder says where it stands; a bot asleep is not asked
again, and a declined call is asked again once it wakes; an explanation never shows the
words an edit or a deletion took away."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from playhouse import asking, ids
from playhouse.constants import QUEUE_INTERACTIVE
from playhouse.explain import Explanation
from playhouse.storage import Storage
from playhouse.storage.models import Thread

from .web_support import build, ctx_of, json_post, serve, socket, the_cast, user_client
from .why_support import CannedModel, answer_all, cast_with, persona_toml

pytestmark = pytest.mark.integration

HTML = {"accept": "text/html"}


async def thread_in(storage: Storage, author: str = "ann") -> Thread:
    now = time.time()
    return await storage.threads.create(Thread(
        thread_id=ids.new_id(now), room="Technology", title="a question", body="", url=None,
        author=author, is_bot=False, persona=None, created_at=now, last_activity=now))


async def why(client: object, thread_id: str, comment_id: str,
              answer: int | None = None) -> Explanation:
    params = {"answer": str(answer)} if answer is not None else {}
    got = await client.get(f"/api/threads/{thread_id}/comments/{comment_id}/why",  # type: ignore[attr-defined]
                           params=params)
    assert got.status_code == 200, got.text
    return msgspec.json.decode(got.content, type=Explanation)


def asleep_now() -> str:
    hour = int(time.time() // 3600) % 24
    return f"active_hours = [{(hour + 2) % 24}, {(hour + 5) % 24}]"


async def test_an_answer_asked_again_has_its_own_explanation_and_waiting_notice(
    storage: Storage,
) -> None:
    cast = the_cast()
    model = CannedModel()
    app = await build(storage, cast=cast, waiting_grace_s=0.3, waiting_interval_s=0.3)
    thread = await thread_in(storage)
    async with serve(app) as base, user_client(base, "bea") as bea, \
            socket(base, bea) as live:
        await live.subscribe("Technology", thread_id=thread.thread_id)
        asked = await live.post("Technology", thread_id=thread.thread_id,
                                text="what do you say, u/CoopBot?")
        await live.expect("thinking")
        assert await answer_all(app, storage, cast, model) == 1
        first = await live.expect("comment_replaced")
        bot = first.comment.id

        again = await json_post(bea, f"/t/{thread.thread_id}/c/{bot}/again")
        assert again.status_code == 200, again.text
        await live.expect("thinking", lambda e: e.comment.id == bot and e.comment.rerolls == 1)
        # No worker runs: the placeholder asked again says so, from its own job.
        said = await live.expect("waiting", lambda e: e.comment_id == bot, within=10)
        assert said.wait.state == "no_worker"
        watched = ctx_of(app).waiting.watched[bot]  # type: ignore[union-attr]
        assert watched.request_id == asking.request_id_for(asked.comment_id, "CoopBot", 1)
        shown = await bea.get(f"/api/threads/{thread.thread_id}/waiting",
                              params={"ids": bot})
        assert shown.json()[bot]["state"] == "no_worker"
        # While it waits, its explanation is the new call's: asked again, not answered.
        pending = await why(bea, thread.thread_id, bot)
        assert pending.call is not None and pending.call.reason == "again"
        assert pending.state in ("called", "pending") and pending.trace is None

        assert await answer_all(app, storage, cast, model) == 1
        second = await live.expect("comment_replaced", lambda e: e.comment.id == bot)
        assert second.comment.shown == 1 and len(second.comment.alternatives) == 2

        x = await why(bea, thread.thread_id, bot)  # the answer shown: the second
        assert x.request_id == asking.request_id_for(asked.comment_id, "CoopBot", 1)
        assert x.call is not None and x.call.reason == "again" and x.call.by == "bea"
        assert x.call.again == 1 and x.call.answered == asked.comment_id
        assert x.trace is not None and x.trace.prompt == model.prompts[-1]
        # The same prompt a third time: accepted at once (the first answer needed two).
        assert [a.accepted for a in x.trace.attempts] == [True]
        original = await why(bea, thread.thread_id, bot, answer=1)
        assert original.request_id == asking.request_id_for(asked.comment_id, "CoopBot")
        assert original.call is not None and original.call.reason == "mention"
        assert original.trace is not None
        assert [a.accepted for a in original.trace.attempts] == [False, True]
        assert (await why(bea, thread.thread_id, bot, answer=2)).request_id == x.request_id
        beyond = await bea.get(f"/api/threads/{thread.thread_id}/comments/{bot}/why",
                               params={"answer": "3"})
        assert beyond.status_code == 400 and "no answer 3" in beyond.text

        part = await bea.get(f"/r/Technology/t/{thread.thread_id}/why/{bot}",
                             params={"part": "1"}, headers=HTML)
        assert 'data-reason="again"' in part.text
        assert "u/bea asked it for another answer (asked again 1 time)." in part.text


async def test_a_bot_asleep_is_not_asked_again_and_a_declined_call_is_once_it_wakes(
    storage: Storage, tmp_path: Path,
) -> None:
    asleep = cast_with(tmp_path / "asleep", {
        "sleepy.toml": persona_toml("Sleepy", activity=asleep_now())})
    awake = cast_with(tmp_path / "awake", {
        "sleepy.toml": persona_toml("Sleepy", activity="active_hours = [0, 24]")})
    app = await build(storage, cast=asleep, waiting_grace_s=3600)
    ctx = ctx_of(app)
    thread = await thread_in(storage)
    async with serve(app) as base, user_client(base, "ivy") as ivy, \
            socket(base, ivy) as live:
        await live.subscribe("Technology", thread_id=thread.thread_id)
        await live.post("Technology", thread_id=thread.thread_id, text="u/Sleepy there?")
        declined = (await live.expect("comment", lambda e: e.comment.is_bot)).comment
        assert declined.status == "declined"

        # Asleep: asking again is refused, saying why and when; nothing changes.
        refused = await json_post(ivy, f"/t/{thread.thread_id}/c/{declined.id}/again")
        assert refused.status_code == 409, refused.text
        assert "is asleep" in refused.text and "ask it again then" in refused.text
        kept = await storage.comments.get(thread.thread_id, declined.id)
        assert kept.status == "declined" and kept.rerolls == 0 and kept.notice
        assert await storage.queues.receive(QUEUE_INTERACTIVE) == []

        # It wakes: asking again asks it for its first answer.
        ctx.cast = awake
        again = await json_post(ivy, f"/t/{thread.thread_id}/c/{declined.id}/again")
        assert again.status_code == 200, again.text
        placeholder = again.json()["comment"]
        assert placeholder["status"] == "placeholder" and placeholder["notice"] is None
        assert placeholder["text"] == ""
        await live.expect("thinking", lambda e: e.comment.id == declined.id)
        assert await answer_all(app, storage, awake, CannedModel()) == 1
        answered = await live.expect("comment_replaced", lambda e: e.comment.id == declined.id)
        assert answered.comment.status == "ok" and answered.comment.notice is None
        assert "canned answer" in answered.comment.text
        assert answered.comment.alternatives == ()  # one answer: the notice was none
        # A first answer: it counts towards the caps, as any answer does.
        assert dict((await storage.threads.get(thread.thread_id)).bot_replies) == {"Sleepy": 1}
        x = await why(ivy, thread.thread_id, declined.id)
        assert x.call is not None and x.call.reason == "again" and x.call.declined is None

        # Asleep again: its answer is not asked again, and stays as it is.
        ctx.cast = asleep
        refused = await json_post(ivy, f"/t/{thread.thread_id}/c/{declined.id}/again")
        assert refused.status_code == 409 and "is asleep" in refused.text
        still = await storage.comments.get(thread.thread_id, declined.id)
        assert still.status == "ok" and still.text == answered.comment.text
        assert still.rerolls == 1


async def test_an_explanation_never_shows_words_edited_or_deleted_since(
    storage: Storage,
) -> None:
    cast = the_cast()
    app = await build(storage, cast=cast, waiting_grace_s=3600)
    thread = await thread_in(storage, author="kai")
    async with serve(app) as base, user_client(base, "kai") as kai, \
            user_client(base, "lou") as lou, socket(base, lou) as live:
        await live.subscribe("Technology", thread_id=thread.thread_id)
        asked = await live.post("Technology", thread_id=thread.thread_id,
                                text="u/CoopBot my locker code is 7319, keep it")
        await live.expect("thinking")
        assert await answer_all(app, storage, cast, CannedModel()) == 1
        bot = (await live.expect("comment_replaced")).comment.id
        before = await why(lou, thread.thread_id, bot)
        assert before.trace is not None and "7319" in before.trace.prompt
        assert before.withheld == ""

        edited = await json_post(lou, f"/t/{thread.thread_id}/c/{asked.comment_id}/edit",
                                 {"text": "u/CoopBot never mind"})
        assert edited.status_code == 200, edited.text
        for reader in (lou, kai):
            x = await why(reader, thread.thread_id, bot)
            assert x.withheld and x.ancestors == ()
            assert x.trace is not None and x.trace.prompt == ""
            assert all(a.output == "" for a in x.trace.attempts)
            assert [a.accepted for a in x.trace.attempts] == [False, True]  # verdicts stay
            assert x.call is not None and x.call.reason == "mention"
            got = await reader.get(f"/api/threads/{thread.thread_id}/comments/{bot}/why")
            assert "7319" not in got.text
        part = await lou.get(f"/r/Technology/t/{thread.thread_id}/why/{bot}",
                             params={"part": "1"}, headers=HTML)
        assert "7319" not in part.text and "has since been edited or deleted" in part.text

        # The thread's author deletes the bot's reply: nothing of it is explained.
        gone = await json_post(kai, f"/t/{thread.thread_id}/c/{bot}/delete")
        assert gone.status_code == 200, gone.text
        answer = await lou.get(f"/api/threads/{thread.thread_id}/comments/{bot}/why")
        assert answer.status_code == 404 and "deleted" in answer.text
        page = await lou.get(f"/r/Technology/t/{thread.thread_id}", headers=HTML)
        assert f"/why/{bot}" not in page.text
