"""What a deleted or edited item shows, what bots read of it, and the ids of re-rolls
(issue 17)."""

from __future__ import annotations

import msgspec

from playhouse import asking, views
from playhouse.personas import load_cast_strict, mentioned
from playhouse.scheduling.policy import ThreadView
from playhouse.storage.models import Alternative, Comment, Thread
from tests.integration.conftest import SHIPPED_PERSONAS

CAST = load_cast_strict(SHIPPED_PERSONAS)
THREAD = Thread(thread_id="t1", room="Art", title="cats?", body="which cat", url=None,
                author="olga", is_bot=False, persona=None, created_at=1.0, last_activity=1.0)


def _comment(cid: str, author: str, text: str, parent: str | None = None, **kw: object
             ) -> Comment:
    return msgspec.convert({"comment_id": cid, "thread_id": "t1", "room": "Art",
                            "parent_id": parent, "author": author, "is_bot": False,
                            "persona": None, "text": text, "created_at": 1.0, **kw}, Comment)


def test_a_gone_comment_shows_its_tombstone_and_nothing_of_its_author() -> None:
    for gone, mark in (("deleted", "[deleted]"), ("removed", "[removed]")):
        stored = _comment("c1", "alice", "", gone=gone, image_blob="Art/x.png")
        out = views.comment_out(stored)
        assert (out.text, out.author, out.image_url, out.gone) == (mark, mark, None, gone)
    bot = _comment("c2", "CoopBot", "", is_bot=True, persona="CoopBot", gone="deleted",
                   alternatives=[{"text": "a"}, {"text": "b"}])
    out = views.comment_out(bot)
    assert (out.is_bot, out.persona, out.alternatives) == (False, None, ())
    assert views.comment_out(_comment("c3", "bob", "hi")).text == "hi"  # untouched


def test_a_declined_calls_notice_goes_with_its_comment() -> None:
    notice = msgspec.json.encode(views.WaitState(state="asleep", text="asleep",
                                                 final=True)).decode()
    declined = _comment("c1", "CoopBot", "u/CoopBot is asleep", is_bot=True,
                        persona="CoopBot", status="declined", notice=notice)
    shown = views.comment_out(declined)
    assert shown.notice is not None and shown.notice.state == "asleep"
    assert views.comment_out(declined, hidden="muted").notice is None  # muted: says nothing
    gone = views.comment_out(msgspec.structs.replace(declined, gone="deleted"))
    assert (gone.text, gone.status, gone.notice) == ("[deleted]", "ok", None)


def test_a_gone_thread_keeps_its_place_and_shows_its_tombstone() -> None:
    gone = msgspec.structs.replace(THREAD, title="", body="", gone="deleted")
    out = views.thread_out(gone)
    assert (out.title, out.body, out.author, out.id) == ("[deleted]", "", "[deleted]", "t1")
    assert views.thread_out(THREAD).title == "cats?"


def test_an_edit_shows_when_and_answers_asked_again_are_all_shown() -> None:
    edited = _comment("c1", "alice", "new", edited_at=2.5)
    assert views.comment_out(edited).edited_at == "1970-01-01T00:00:02.500Z"
    again = _comment("c2", "CoopBot", "b", is_bot=True, persona="CoopBot", shown=1,
                     rerolls=1, alternatives=[{"text": "a"}, {"text": "b"}])
    out = views.comment_out(again)
    assert [a.text for a in out.alternatives] == ["a", "b"] and out.shown == 1
    hidden = views.comment_out(again, hidden="muted")
    assert (hidden.text, hidden.alternatives, hidden.hidden) == ("", (), "muted")


def test_who_a_viewer_hides() -> None:
    assert views.hidden_reason("CoopBot", True, muted={"CoopBot"}, blocked=set()) == "muted"
    assert views.hidden_reason("CoopBot", True, muted=set(), blocked={"coopbot"}) == ""
    assert views.hidden_reason("Bob", False, muted=set(), blocked={"bob"}) == "blocked"
    assert views.hidden_reason("carol", False, muted={"carol"}, blocked={"bob"}) == ""


def test_prompts_read_what_is_stored_now_and_skip_what_is_gone() -> None:
    first = _comment("c1", "alice", "the current text")
    gone = _comment("c2", "bob", "", "c1", gone="deleted")
    placeholder = _comment("c3", "CoopBot", "", "c2", is_bot=True, persona="CoopBot",
                           status="placeholder")
    last = _comment("c4", "carol", "what now", "c3")
    request = asking.reply_request(persona=CAST.personas["CoopBot"], thread=THREAD,
                                   chain=[first, gone, placeholder, last], parent_id="c4",
                                   queue="q")
    assert [(c.author, c.text) for c in request.chain] == [
        ("alice", "the current text"), ("carol", "what now")]
    assert request.post is not None and request.post.title == "cats?"
    deleted = msgspec.structs.replace(THREAD, title="", body="", gone="deleted")
    header = asking.reply_request(persona=CAST.personas["CoopBot"], thread=deleted,
                                  chain=[first], parent_id="c1", queue="q").post
    assert header is not None
    assert (header.title, header.body, header.author) == ("[deleted]", "", "")


def test_each_reroll_is_a_request_of_its_own_derived_like_the_first() -> None:
    first = asking.request_id_for("0006" + "0" * 22, "CoopBot")
    again = [asking.request_id_for("0006" + "0" * 22, "CoopBot", n) for n in (1, 2, 3)]
    assert len({first, *again}) == 4
    assert again == [asking.request_id_for("0006" + "0" * 22, "CoopBot", n) for n in (1, 2, 3)]
    assert asking.request_id_for("0006" + "0" * 22, "CoopBot", 0) == first


def test_the_scheduler_never_answers_what_is_gone() -> None:
    gone = _comment("c1", "alice", "", gone="deleted")
    kept = _comment("c2", "bob", "still here", "c1")
    view = ThreadView.build(THREAD, [gone, kept])
    assert view.items["c1"].status == "gone" and view.items["c1"].text == ""
    assert view.items["c2"].status == "ok"
    dead = ThreadView.build(msgspec.structs.replace(THREAD, title="", gone="deleted"), [])
    assert dead.post.status == "gone" and dead.post.text == ""


def test_mentions_of_people_are_read_in_order_once() -> None:
    assert mentioned("hi u/Bob and u/carol_, and /u/bob again; email@u/x") == ["bob", "carol"]


def test_alternatives_round_trip_through_a_row() -> None:
    from playhouse.storage.tables import from_entity, to_entity

    comment = _comment("c1", "CoopBot", "b", is_bot=True, persona="CoopBot", shown=1,
                       rerolls=1)
    comment = msgspec.structs.replace(comment, alternatives=(
        Alternative(text="a", job_id="j1"), Alternative(text="b", image_blob="Art/b.png")))
    back = from_entity(to_entity(comment, "t1", "c1"), Comment)
    assert back.alternatives == comment.alternatives and back.shown == 1
