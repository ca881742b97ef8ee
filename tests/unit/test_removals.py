"""What a moderator's removal (and the word filter's hold) shows, to people and to the
bots' prompts: its tombstone, or nothing."""

from __future__ import annotations

import time
from pathlib import Path

from playhouse import asking, ids, views
from playhouse.personas import load_cast_strict
from playhouse.storage.models import Comment, Thread

ROOT = Path(__file__).resolve().parents[2]


def thread(**changes: object) -> Thread:
    now = time.time()
    return Thread(thread_id=ids.new_id(), room="Tea", title="Milk first?",
                  body="asking for a friend", url=None, author="ann", is_bot=False,
                  persona=None, created_at=now, last_activity=now, **changes)


def comment(t: Thread, text: str, **changes: object) -> Comment:
    return Comment(comment_id=ids.new_id(), thread_id=t.thread_id, room=t.room,
                   parent_id=None, author="bob", is_bot=False, persona=None, text=text,
                   created_at=time.time(), **changes)


def test_a_removed_comment_shows_its_tombstone_and_hides_its_author() -> None:
    c = comment(thread(), "secret words", gone="removed")
    out = views.comment_out(c)
    assert (out.text, out.author, out.gone) == ("[removed]", "[removed]", "removed")
    assert views.comment_out(comment(thread(), "fine")).text == "fine"
    assert views.visible_comment(comment(thread(), "x", gone="deleted")).text == "[deleted]"


def test_a_removed_post_keeps_its_place_without_its_words() -> None:
    out = views.thread_out(thread(gone="removed"))
    assert (out.title, out.body, out.author) == ("[removed]", "", "[removed]")


def test_removed_and_held_words_never_reach_a_prompt() -> None:
    cast = load_cast_strict(ROOT / "personas")
    t = thread(gone="removed")
    gone = comment(t, "hidden words", gone="removed")
    held = comment(t, "held words", held=True)
    asked = comment(t, "what now?")
    request = asking.reply_request(persona=cast.personas["CoopBot"], thread=t,
                                   chain=[gone, held, asked], parent_id=asked.comment_id,
                                   queue="q")
    assert [c.text for c in request.chain] == ["what now?"]  # a gone one is skipped
    assert request.post is not None and request.post.title == "[removed]"
    assert "hidden" not in str(request) and "held words" not in str(request)
    assert "asking for a friend" not in str(request)
