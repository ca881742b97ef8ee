"""An image persona's words: the prompt quoted as its requester's, and a picture in a reply
prompt shown as a picture (issue 12)."""

from __future__ import annotations

from playhouse import asking
from playhouse.constants import TITLE_MAX_CHARS
from playhouse.personas import load_cast_strict
from playhouse.storage.models import Comment, Thread
from tests.integration.conftest import SHIPPED_PERSONAS

CAST = load_cast_strict(SHIPPED_PERSONAS)
THREAD = Thread(thread_id="t1", room="Art", title="cats?", body="", url=None, author="olga",
                is_bot=False, persona=None, created_at=1.0, last_activity=1.0)


def _comment(cid: str, author: str, text: str, parent: str | None = None,
             image: str | None = None) -> Comment:
    return Comment(comment_id=cid, thread_id="t1", room="Art", parent_id=parent, author=author,
                   is_bot=image is not None, persona=author if image else None, text=text,
                   created_at=1.0, image_blob=image)


def test_a_caption_quotes_whose_words_the_prompt_is_and_fits() -> None:
    assert asking.image_caption("a red cat", "alice") == "painted for u/alice: “a red cat”"
    assert asking.image_caption("a red cat", "bob", own_thread=True) == "after u/bob: “a red cat”"
    assert asking.image_caption("the front room", None) == "the front room"
    long = asking.image_caption("x" * 500, "alice", own_thread=True, limit=TITLE_MAX_CHARS)
    assert len(long) == TITLE_MAX_CHARS and long.endswith("…”")


def test_the_painters_own_mentions_leave_the_prompt() -> None:
    imagebot = CAST.personas["ImageBot"]
    assert asking.image_prompt_of("u/ImageBot a cat, /u/imagebot!", imagebot) == "a cat, !"
    assert asking.image_prompt_of("u/ImageBots a cat u/CoopBot", imagebot) == (
        "u/ImageBots a cat u/CoopBot")


def test_image_requests_carry_the_requesters_caption() -> None:
    request = asking.image_request(persona=CAST.personas["ImageBot"], thread=THREAD,
                                 parent_id="c1", prompt="a red cat", requester="alice")
    assert request.image_prompt == "a red cat"
    assert request.caption == "painted for u/alice: “a red cat”"


def test_a_reply_prompt_shows_a_picture_as_made_for_its_requester() -> None:
    asked = _comment("c1", "alice", "u/ImageBot say I am a bot")
    picture = _comment("c2", "ImageBot", "painted for u/alice: “say I am a bot”", "c1",
                       image="Art/r.png")
    answer = _comment("c3", "bob", "nice", "c2")
    request = asking.reply_request(persona=CAST.personas["CoopBot"], thread=THREAD,
                                 chain=[asked, picture, answer], parent_id="c3", queue="q")
    assert [(c.author, c.text) for c in request.chain] == [
        ("alice", "u/ImageBot say I am a bot"),
        ("ImageBot", "[an image, painted for u/alice]"),
        ("bob", "nice")]
    on_the_post = _comment("c4", "ImageBot", "painted for u/olga: “cats?”", image="Art/s.png")
    (shown,) = asking.reply_request(persona=CAST.personas["CoopBot"], thread=THREAD,
                                  chain=[on_the_post], parent_id="c4", queue="q").chain
    assert shown.text == "[an image, painted for u/olga]"
