"""Input fuzzing: the websocket protocol, the prompt a person's text ends up in, the
grammar parser, frames on the live socket, and the REST API through schemathesis.

No input may crash a parser (only its documented error), no text may forge a tag in a
prompt, and no request may be answered with a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import hypothesis.strategies as st
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings

from playhouse import grammar
from playhouse.errors import InvalidCompletion, InvalidInput
from playhouse.web.protocol import client_id_of, decode_client
from tests.integration.web_support import build, serve, socket, user_client

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TAGGY = st.sampled_from(["<|", "|>", "<|sor u/admin|>", "<|eor|>", "<|soss r/x|>", "<|sot|>",
                         "<|eost|>", "\\", "\\n", "\n", "\r", "\x00", "\u2028", "<", "|", ">",
                         '"', "{", "}", "\ud7ff", "💥"])
TEXT = st.lists(st.one_of(TAGGY, st.text(max_size=12)), max_size=16).map("".join)
JSONISH: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["type", "room", "thread_id", "after", "pending", "client_id", "text",
                          "title", "parent_id", "author", "is_bot"])
TYPES = st.sampled_from(["subscribe", "history", "post", "unsubscribe", "ping", "hello", "ack",
                         "", "POST", "post "])
MESSAGE = st.builds(lambda t, extra: {"type": t, **extra}, TYPES,
                    st.dictionaries(FIELDS, JSONISH, max_size=6))


@FUZZ
@given(st.one_of(st.binary(max_size=300), TEXT, MESSAGE.map(lambda m: msgspec.json.encode(m))))
def test_decode_client_only_ever_raises_invalid_input(frame: bytes | str) -> None:
    try:
        message = decode_client(frame)
    except InvalidInput as exc:
        assert exc.code and str(exc)
        client_id = client_id_of(frame)
        assert client_id is None or 0 < len(client_id) <= 64
        return
    assert type(message).__name__ in ("Subscribe", "HistoryRequest", "PostMessage",
                                      "Unsubscribe", "Ping")


@FUZZ
@given(MESSAGE, st.sampled_from(["author", "is_bot"]), JSONISH)
def test_a_post_naming_its_author_is_refused_as_forged(message: dict[str, Any], field: str,
                                                       value: Any) -> None:
    message = {**message, "type": "post", "room": "Sports", "client_id": "c1", field: value}
    with pytest.raises(InvalidInput) as caught:
        decode_client(msgspec.json.encode(message))
    assert caught.value.code in ("forged_author", "bad_message")
    if all(isinstance(message.get(k), str) for k in ("room", "client_id")):
        assert caught.value.code == "forged_author"


_TAG = re.compile(r"<\|[a-z]+(?: [ru]/[A-Za-z0-9_-]+)?\|>")


@FUZZ
@given(TEXT, TEXT, st.lists(TEXT, max_size=5), st.sampled_from(["alice", "bob", "CoopBot"]))
def test_no_text_forges_a_tag_in_a_prompt(title: str, body: str, chain: list[str],
                                          author: str) -> None:
    """Whatever people write, the prompt's tags are exactly the grammar's own."""
    post = grammar.Post(room="Sports", title=title, body=body, url=None, author="op")
    comments = [grammar.ChainEntry(author=author if i % 2 else "op", text=t)
                for i, t in enumerate(chain)]
    prompt = grammar.reply_prompt(post, comments, "CoopBot")
    tags = _TAG.findall(prompt)
    # header (2 + sot/eot + sost/eost), two tags per comment, and the bot's open tag
    assert len(tags) == 5 + 2 * len(comments) + 1, (prompt, tags)
    assert re.fullmatch(r"<\|so(?:|op|oc)r u/CoopBot\|>", tags[-1]) and prompt.endswith(tags[-1])
    assert prompt.count("<|") == prompt.count("|>") == len(tags)


@FUZZ
@given(TEXT, st.lists(TEXT, max_size=3))
def test_parsers_answer_or_refuse(completion: str, ancestors: list[str]) -> None:
    """Model output is untrusted: a parse returns its value or its own error, nothing else."""
    try:
        reply = grammar.parse_reply(completion, ancestors=ancestors)
    except InvalidCompletion:
        pass
    else:
        assert isinstance(reply, str) and reply.strip()
    try:
        post = grammar.parse_post(completion)
    except InvalidCompletion:
        pass
    else:
        assert post.title.strip()
    with contextlib.suppress(InvalidCompletion, InvalidInput):
        grammar.parse_training_line(completion)


@pytest.mark.integration
async def test_fuzzed_frames_on_the_live_socket_never_break_it(storage: Any) -> None:
    """Frames drawn by hypothesis go to a real socket: each gets an answer or nothing, the
    socket stays open, and a stored post is still acknowledged after the barrage."""
    frames = [msgspec.json.encode(m) for m in _examples(MESSAGE, 150)]
    frames += [f.encode() if isinstance(f, str) else f for f in _examples(TEXT, 50)]
    # The barrage is not a flood: the socket's message budget is not what is tested here.
    app = await build(storage, ws_message_burst=1000.0)
    async with serve(app) as base, user_client(base, "fuzzer") as client, \
            socket(base, client) as live:
        await live.subscribe("Sports")
        for frame in frames:
            await live.ws.send(frame.decode("utf-8", "replace"))
        events = await live.quiet(1.0)
        assert not [e for e in events if getattr(e, "code", "") == "internal"], events[:5]
        await live.subscribe("Sports")  # fuzzed frames may have (un)subscribed it
        ack = await live.post("Sports", client_id="after", title="still here")
        assert type(ack).__name__ == "Ack"


def _examples(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    out: list[Any] = []

    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        out.append(value)

    collect()
    return out


@pytest.mark.integration
async def test_rest_api_survives_schemathesis(storage: Any) -> None:
    """schemathesis drives every operation of ``/schema`` with generated input (in a thread:
    its client blocks) against the served app: no 5xx."""
    import schemathesis
    from schemathesis.core.failures import FailureGroup

    app = await build(storage)
    async with serve(app) as base:
        await asyncio.get_running_loop().run_in_executor(
            None, _run_schemathesis, schemathesis, base, FailureGroup)


def _run_schemathesis(schemathesis: Any, base: str, failures: type[Exception]) -> None:
    schema = schemathesis.openapi.from_url(f"{base}/schema/openapi.json")
    seen = 0
    for operation in schema.get_all_operations():
        op = operation.ok()

        @settings(max_examples=40, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=base)
            assert response.status_code < 500, (case.path, case.query, response.text[:300])
            case.validate_response(response, checks=(
                schemathesis.checks.not_a_server_error,))

        try:
            check()
        except failures as exc:
            raise AssertionError(str(exc)) from exc
        seen += 1
    assert seen >= 4
