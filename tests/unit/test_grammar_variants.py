"""The ssi-bot grammar variants: exact lines and prompts as zacc/ssi-bot writes them, the
parsers of what its models generate, the codecs, and round trips for every variant."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playhouse import grammar
from playhouse.errors import ConfigError, InvalidCompletion, InvalidInput
from playhouse.grammar import (
    GRAMMARS,
    PLAYHOUSE,
    SSI_BOT,
    SSI_BOT_2021,
    ChainEntry,
    Grammar,
    ParsedPost,
    Post,
    codecs,
)

POST = Post(room="Coffee", title="Best beans?", body="I need beans.\nAny tips?", author="alice")
LINK = Post(room="pics", title="Look", url="https://example.com/a.png", author="alice")
CHAIN = (
    ChainEntry("bob", "Try it"),  # sor
    ChainEntry("alice", "Thanks!"),  # soopr: alice wrote the post
    ChainEntry("bob", "No problem"),  # soocr: bob wrote the comment two levels up
    ChainEntry("carol", "Hi"),  # sor
)
FAST = settings(max_examples=200, deadline=None, database=None)


# --- training lines, exactly as ssi-bot's output_finetuning_data.py writes them -----------


def test_ssi_bot_training_line() -> None:
    assert SSI_BOT.training_line(POST, CHAIN) == (
        "<|soss r/Coffee|><|sot|>Best beans?<|sost|>I need beans.\\nAny tips?"
        "<|sor u/bob|>Try it<|soopr u/alice|>Thanks!<|soocr u/bob|>No problem"
        "<|sor|>Hi<|eoss|><|endoftext|>"
    )
    # The last comment's tag has no name, whatever its kind.
    assert SSI_BOT.training_line(POST, CHAIN[:2]).endswith(
        "<|sor u/bob|>Try it<|soopr|>Thanks!<|eoss|><|endoftext|>")
    # A post on its own, and a link post: no URL, closed with <|eols|>.
    assert SSI_BOT.training_line(POST, ()) == (
        "<|soss r/Coffee|><|sot|>Best beans?<|sost|>I need beans.\\nAny tips?"
        "<|eoss|><|endoftext|>"
    )
    assert SSI_BOT.training_line(LINK, CHAIN[:1]) == (
        "<|sols r/pics|><|sot|>Look<|sol|><|sor|>Try it<|eols|><|endoftext|>"
    )
    # Dropping the oldest comments keeps the tags chosen on the full chain.
    assert SSI_BOT.training_line(POST, CHAIN, drop_oldest=2) == (
        "<|soss r/Coffee|><|sot|>Best beans?<|sost|>I need beans.\\nAny tips?"
        "<|soocr u/bob|>No problem<|sor|>Hi<|eoss|><|endoftext|>"
    )


def test_ssi_bot_2021_training_line() -> None:
    assert SSI_BOT_2021.training_line(POST, CHAIN) == (
        "<|soss|><|sot|>Best beans?<|eot|><|sost|>I need beans.\\nAny tips?<|eost|>"
        "<|sor|>Try it<|eor|><|sor|>Thanks!<|eor|><|sor|>No problem<|eor|><|sor|>Hi<|eor|>"
        "<|eoss|><|endoftext|>"
    )
    assert SSI_BOT_2021.training_line(LINK, ()) == (
        "<|sols|><|sot|>Look<|eot|><|sol|><|eol|><|eols|><|endoftext|>"
    )


def test_bodies_are_python_repr_and_titles_raw() -> None:
    post = Post(room="Coffee", title='It\'s "C:\\temp" \\n <|x|>',
                body='It\'s "fine"\tok\u200b caf\u00e9 \\ \x07 <|eor|>')
    line = SSI_BOT.training_line(post, [ChainEntry("bob", "don't\r\nstop")])
    assert line == (
        '<|soss r/Coffee|><|sot|>It\'s "C:\\temp" \\\\n <\\|x|\\><|sost|>'
        'It\\\'s "fine"\\tok\\u200b caf\u00e9 \\\\ \\x07 <\\|eor|\\>'
        "<|sor|>don't\\r\\nstop<|eoss|><|endoftext|>"
    )
    parsed = SSI_BOT.parse_training_line(line)
    assert parsed.post.title == post.title and parsed.post.body == post.body
    assert parsed.comments == (ChainEntry("", "don't\r\nstop"),)


# --- prompts, as ssi-bot's tagging mixin serves them -------------------------------------


def test_ssi_bot_reply_prompt_is_closed_and_the_bots_tag_has_no_name() -> None:
    context = (
        "<|soss r/Coffee|><|sot|>Best beans?<|eot|><|sost|>I need beans.\\nAny tips?<|eost|>"
        "<|sor u/bob|>Try it<|eor|><|soopr u/alice|>Thanks!<|eoopr|>"
    )
    assert SSI_BOT.reply_prompt(POST, CHAIN[:2], "dave") == context + "<|sor|>"
    assert SSI_BOT.reply_prompt(POST, CHAIN[:2], "bob") == context + "<|soocr|>"
    assert SSI_BOT.reply_prompt(POST, CHAIN[:2], "alice") == context + "<|soopr|>"
    # A top-level reply is <|sor|> even by the post's author (ssi-bot's data has none).
    assert SSI_BOT.reply_prompt(POST, (), "alice").endswith("<|eost|><|sor|>")
    assert PLAYHOUSE.reply_prompt(POST, (), "alice").endswith("<|eost|><|soopr u/alice|>")
    assert SSI_BOT.reply_prompt(LINK, (), "dave") == (
        "<|sols r/pics|><|sot|>Look<|eot|><|sol|><|eol|><|sor|>")
    assert SSI_BOT.post_prompt("Coffee") == "<|soss r/Coffee|><|sot|>"


def test_ssi_bot_2021_prompts() -> None:
    assert SSI_BOT_2021.reply_prompt(POST, CHAIN[:2], "alice") == (
        "<|soss|><|sot|>Best beans?<|eot|><|sost|>I need beans.\\nAny tips?<|eost|>"
        "<|sor|>Try it<|eor|><|sor|>Thanks!<|eor|><|sor|>"
    )
    assert SSI_BOT_2021.post_prompt("Coffee") == "<|soss|><|sot|>"
    assert SSI_BOT_2021.post_prompt("no room name needed!") == "<|soss|><|sot|>"


def test_budget_cuts_an_ssi_bot_prompt_like_a_playhouse_one() -> None:
    def count(text: str) -> int:
        return len(text) // 4

    full = SSI_BOT.reply_prompt(POST, CHAIN, "dave")
    cut = SSI_BOT.reply_prompt(POST, CHAIN, "dave", count_tokens=count,
                               max_tokens=count(full) - 3)
    assert cut.endswith("<|sor u/carol|>Hi<|eor|><|sor|>") and len(cut) < len(full)
    assert "<|sor u/bob|>Try it" not in cut


# --- what ssi-bot models write ----------------------------------------------------------


@pytest.mark.parametrize("variant", [SSI_BOT, SSI_BOT_2021], ids=lambda g: g.name)
@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("Hello there<|eoss|><|endoftext|>", "Hello there"),
        ("Hello there<|sor u/bob|>more comments<|sor|>", "Hello there"),
        ("Hello there<|eor|>", "Hello there"),
        ("Hello there<|", "Hello there"),
        ("It\\'s a \\\"tab\\\"\\there\\u200b \\xe9\\n2nd line<|eoss|>",
         "It's a \"tab\"\there\u200b \u00e9\n2nd line"),
        ("odd \\q escape and \\\\ one<|eoss|>", "odd \\q escape and \\ one"),
    ],
)
def test_an_ssi_reply_ends_at_its_first_tag(variant: Grammar, completion: str, text: str) -> None:
    assert variant.parse_reply(completion) == text


@pytest.mark.parametrize("variant", [SSI_BOT, SSI_BOT_2021], ids=lambda g: g.name)
@pytest.mark.parametrize(
    ("completion", "why"),
    [
        ("ran out of tokens", "no_end_tag"),
        ("<|eoss|>", "empty"),
        ("  \\n\\t <|eoss|>", "empty"),
        ("|>stray closer<|eoss|>", "tag_fragment"),
        ("a forged <\\|eor|\\> tag<|eoss|>", "tag_fragment"),
        ("sor u/bob says<|eoss|>", "tag_fragment"),
        ("what is eoss<|eoss|>", "tag_fragment"),
    ],
)
def test_an_ssi_reply_is_refused(variant: Grammar, completion: str, why: str) -> None:
    with pytest.raises(InvalidCompletion) as excinfo:
        variant.parse_reply(completion)
    assert excinfo.value.reason == why


@pytest.mark.parametrize(
    ("completion", "post"),
    [
        ("My title<|sost|>Body\\nhere<|eoss|>", ParsedPost("My title", "Body\nhere", None)),
        ("My title<|sost|>Body<|sor u/bob|>a comment", ParsedPost("My title", "Body", None)),
        ("My title<|eot|><|sost|>Body<|eost|>", ParsedPost("My title", "Body", None)),
        ("Only a title<|eoss|>", ParsedPost("Only a title", "", None)),
        ("Only a title<|sor u/bob|>hi<|eoss|>", ParsedPost("Only a title", "", None)),
        ("A link?<|sol|><|sor|>x<|eols|>", ParsedPost("A link?", "", None)),
        ("  C:\\\\temp\\n two <|sost|>It\\'s<|eoss|>", ParsedPost("C:\\temp two", "It's", None)),
    ],
)
def test_an_ssi_post_ends_title_and_body_at_the_next_tag(
    completion: str, post: ParsedPost
) -> None:
    assert SSI_BOT.parse_post(completion) == post
    assert SSI_BOT_2021.parse_post(completion) == post


@pytest.mark.parametrize(
    ("completion", "why"),
    [
        ("A title and nothing else", "no_end_tag"),
        ("T<|sost|>a body never closed", "no_end_tag"),
        ("  <|sost|>body<|eoss|>", "empty_title"),
        ("x" * 301 + "<|sost|>b<|eoss|>", "title_too_long"),
        ("T<|sost|>" + "x" * 10_001 + "<|eoss|>", "body_too_long"),
        ("a soopr title<|sost|>b<|eoss|>", "tag_fragment"),
    ],
)
def test_an_ssi_post_is_refused(completion: str, why: str) -> None:
    with pytest.raises(InvalidCompletion) as excinfo:
        SSI_BOT.parse_post(completion)
    assert excinfo.value.reason == why


def test_the_playhouse_grammar_refuses_what_ssi_bot_models_write() -> None:
    for reply in ("Hello there<|eoss|>", "Hello there<|sor u/bob|>x"):
        with pytest.raises(InvalidCompletion, match="no_end_tag"):
            PLAYHOUSE.parse_reply(reply)
    with pytest.raises(InvalidCompletion, match="no_end_tag"):
        PLAYHOUSE.parse_post("My title<|sost|>Body<|eoss|>")


# --- stop strings, defaults, the registry ---------------------------------------------


def test_stop_strings() -> None:
    assert set(SSI_BOT.stop_strings) == {*PLAYHOUSE.stop_strings, "<|eoss|>", "<|eols|>"}
    assert SSI_BOT_2021.stop_strings == SSI_BOT.stop_strings
    assert PLAYHOUSE.stop_strings == grammar.STOP_STRINGS
    # No stop string ends a new post early, in any variant's shape.
    for variant in GRAMMARS.values():
        for post in ("T<|sost|>B", "T<|eot|><|sost|>B", "T<|eot|><|sol|>U"):
            assert not any(stop in post for stop in variant.stop_strings), (variant.name, post)
    assert PLAYHOUSE.token_strings == grammar.ALL_TAGS
    assert SSI_BOT.token_strings == () == SSI_BOT_2021.token_strings


def test_generation_defaults() -> None:
    assert PLAYHOUSE.generation_defaults({}) == {}
    assert SSI_BOT.generation_defaults({}) == {
        "temperature": 0.8, "top_k": 40, "top_p": 0.95, "repetition_penalty": 1.008,
        "max_prompt_tokens": 400, "max_new_tokens": 624,
    }
    # What the file sets wins; generation runs to the 1024-token context.
    assert SSI_BOT.generation_defaults({"max_prompt_tokens": 300, "top_k": 5}) == {
        "temperature": 0.8, "top_p": 0.95, "repetition_penalty": 1.008, "max_new_tokens": 724,
    }
    assert "max_new_tokens" not in SSI_BOT_2021.generation_defaults({"max_new_tokens": 50})
    assert "max_new_tokens" not in SSI_BOT.generation_defaults({"max_prompt_tokens": "x"})


def test_registry() -> None:
    assert list(GRAMMARS) == ["playhouse", "ssi-bot", "ssi-bot-2021"]
    assert grammar.get("ssi-bot") is SSI_BOT
    with pytest.raises(ConfigError, match=r"unknown grammar 'ssi'.*'ssi-bot-2021'"):
        grammar.get("ssi")


def test_detect() -> None:
    for variant in GRAMMARS.values():
        lines = [variant.training_line(POST, CHAIN), variant.training_line(LINK, CHAIN[:1])]
        assert grammar.detect(lines) is variant
    assert grammar.detect(["no tags at all"]) is None
    assert grammar.detect(["", "  "]) is None
    mixed = [SSI_BOT.training_line(POST, CHAIN), PLAYHOUSE.training_line(POST, CHAIN)]
    assert grammar.detect(mixed) is None


@pytest.mark.parametrize(
    ("variant", "line"),
    [
        (SSI_BOT, "<|soss|><|sot|>T<|sost|>B<|eoss|>"),  # no r/ROOM
        (SSI_BOT, "<|soss r/a|><|sot|>T<|sost|>B"),  # no thread end
        (SSI_BOT, "<|soss r/a|><|sot|>T<|sost|>B<|sor|>x<|sor|>y<|eoss|>"),  # unnamed middle
        (SSI_BOT, "<|soss r/a|><|sot|>T<|sost|>B<|sor u/x|>y<|eoss|>"),  # named last
        (SSI_BOT, "<|soss r/a|><|sot|>T<|sost|>B<|eols|>"),  # a link's end on a text post
        (SSI_BOT, "<|soss r/a|><|sot|>T<|sost|>B<|eoss|><|endoftext|>more"),
        (SSI_BOT, "<|soss r/a|><|sot|>T<|eot|><|sost|>B<|eoss|>"),  # closed title
        (SSI_BOT_2021, "<|soss r/a|><|sot|>T<|eot|><|sost|>B<|eost|><|eoss|>"),  # r/ROOM
        (SSI_BOT_2021, "<|soss|><|sot|>T<|eot|><|sost|>B<|eost|><|sor|>x<|eoss|>"),  # open
        (SSI_BOT_2021, "<|soss|><|sot|>T<|eot|><|sost|>B<|eost|><|sor u/a|>x<|eor|><|eoss|>"),
        (SSI_BOT_2021, "<|soss|><|sot|>T<|eot|><|sost|>B<|eost|><|soopr|>x<|eoopr|><|eoss|>"),
    ],
)
def test_malformed_ssi_lines(variant: Grammar, line: str) -> None:
    with pytest.raises(InvalidInput, match="malformed"):
        variant.parse_training_line(line)


def test_parsed_ssi_lines_read_what_they_can() -> None:
    parsed = SSI_BOT.parse_training_line(SSI_BOT.training_line(POST, CHAIN) + "\n")
    assert parsed.post == POST  # alice's named soopr comment reveals the post's author
    assert parsed.comments == (*CHAIN[:3], ChainEntry("", "Hi"))
    old = SSI_BOT_2021.parse_training_line(SSI_BOT_2021.training_line(LINK, CHAIN))
    assert old.post == Post(room="", title="Look", url="")
    assert [c.author for c in old.comments] == ["", "", "", ""]


# --- the formats, checked against a reference written from ssi-bot's description --------


def _reference_ssi_line(post: Post, chain: Sequence[ChainEntry]) -> str:
    """ssi-bot's training line, re-derived from the format (not from its code): header with
    r/ROOM, repr bodies, named open tags but the last, the thread's end and <|endoftext|>."""
    if post.url is None:
        out = f"<|soss r/{post.room}|><|sot|>{post.title}<|sost|>{repr(post.body)[1:-1]}"
    else:
        out = f"<|sols r/{post.room}|><|sot|>{post.title}<|sol|>"
    for i, comment in enumerate(chain):
        grandparent = chain[i - 2].author if i >= 2 else None
        tag = "r"
        if comment.author == post.author:
            tag = "opr"
        elif grandparent == comment.author:
            tag = "ocr"
        name = f" u/{comment.author}" if i < len(chain) - 1 else ""
        out += f"<|so{tag}{name}|>{repr(comment.text)[1:-1]}"
    return out + ("<|eols|>" if post.url is not None else "<|eoss|>") + "<|endoftext|>"


PLAIN = st.text(
    st.characters(blacklist_characters="<|>\\\n\r", blacklist_categories=("Cs",)), max_size=20
)
NAME = st.from_regex(re.compile(r"[A-Za-z0-9_-]{1,12}"), fullmatch=True)


@FAST
@given(st.data(), PLAIN, PLAIN, st.booleans(), NAME)
def test_ssi_bot_lines_are_ssi_bots_own(
    data: st.DataObject, title: str, body: str, link: bool, room: str
) -> None:
    authors = data.draw(st.lists(NAME, min_size=1, max_size=3, unique=True))
    chain = data.draw(st.lists(st.builds(ChainEntry, st.sampled_from(authors), PLAIN), max_size=5))
    post_author = data.draw(st.sampled_from(authors))
    post = (Post(room=room, title=title, url="http://x", author=post_author) if link
            else Post(room=room, title=title, body=body, author=post_author))
    assert SSI_BOT.training_line(post, chain) == _reference_ssi_line(post, chain)


# --- round trips ----------------------------------------------------------------------

PIECES = st.sampled_from([
    "<|", "|>", "<", "|", ">", "\\", "\n", "\\n", "\\|", "\\'", "'", '"', "\t", "\u200b",
    "\u00e9", "\x00", "\x85", "\u2028", "\\x41", "\\u200b", "<|eor|>", "<|eoss|>",
    "<|sor u/x|>", "<|endoftext|>", "\r", "\r\n",
])
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=12).map("".join)


def _normalised(codec: codecs.Codec, text: str) -> str:
    if codec is codecs.PYTHON_REPR:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


@FAST
@given(st.sampled_from([codecs.PLAYHOUSE_CODEC, codecs.PYTHON_REPR, codecs.RAW]), TEXT)
def test_codec_round_trip(codec: codecs.Codec, text: str) -> None:
    escaped = codec.escape(text)
    for forbidden in ("<|", "|>", "\n", "\r"):
        assert forbidden not in escaped
    assert codec.unescape(escaped) == _normalised(codec, text)


def test_a_raw_title_is_written_as_it_is() -> None:
    for title in ("What is your favourite coffee?", "C:\\temp and 50\\% off", "a <b> | c"):
        assert codecs.RAW.escape(title) == title


@FAST
@given(st.data(), st.sampled_from(list(GRAMMARS.values())), TEXT, TEXT, st.booleans(), NAME)
def test_training_line_round_trip(
    data: st.DataObject, variant: Grammar, title: str, body_or_url: str, link: bool, room: str
) -> None:
    authors = data.draw(st.lists(NAME, min_size=1, max_size=4, unique=True))
    chain = tuple(
        data.draw(st.lists(st.builds(ChainEntry, st.sampled_from(authors), TEXT), max_size=6))
    )
    post_author = data.draw(st.sampled_from(["", *authors, "someone-else"]))
    if link:
        post = Post(room=room, title=title, url=body_or_url, author=post_author)
    else:
        post = Post(room=room, title=title, body=body_or_url, author=post_author)
    line = variant.training_line(post, chain)
    assert "\n" not in line and "\r" not in line
    parsed = variant.parse_training_line(line)
    layout = variant.layout
    named = [layout.reply_sense and (layout.name_last or i < len(chain) - 1)
             for i in range(len(chain))]
    text = variant.text
    assert parsed.post.room == (room if layout.reply_sense else "")
    assert parsed.post.title == _normalised(variant.title, title)
    if link:
        assert parsed.post.url == (_normalised(text, body_or_url) if layout.writes_url else "")
    else:
        assert parsed.post.body == _normalised(text, body_or_url)
    assert parsed.comments == tuple(
        ChainEntry(c.author if n else "", _normalised(text, c.text))
        for c, n in zip(chain, named, strict=True)
    )
    revealed = any(c.author == post_author and n for c, n in zip(chain, named, strict=True))
    assert parsed.post.author == (post_author if post_author and revealed else "")
