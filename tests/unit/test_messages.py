"""Wire messages: fitting a request under the queue limit and rejecting malformed ones."""

from __future__ import annotations

import msgspec
import pytest

from playhouse import messages
from playhouse.constants import QUEUE_INTERACTIVE, QUEUE_MESSAGE_MAX_BYTES
from playhouse.errors import InvalidInput
from playhouse.messages import ChainComment, GenerationRequest, PostContext

LIMIT = QUEUE_MESSAGE_MAX_BYTES


def request(
    *, chain: tuple[ChainComment, ...] = (), post: PostContext | None = None, **extra: object
) -> GenerationRequest:
    fields: dict[str, object] = {
        "request_id": "0" * 26,
        "kind": "reply",
        "persona": "CoopBot",
        "room": "CatsAndDogs",
        "queue": QUEUE_INTERACTIVE,
        "post": post if post is not None else PostContext(author="alice", title="Cats?"),
        "chain": chain,
        **extra,
    }
    return msgspec.convert(fields, GenerationRequest, from_attributes=True)


def long_chain(n: int, size: int) -> tuple[ChainComment, ...]:
    return tuple(ChainComment(author=f"user{i}", text=f"{i:04d}" + "x" * size) for i in range(n))


def test_encode_decode_round_trip() -> None:
    original = request(chain=long_chain(3, 10), seed=7, created_at=12.5)
    assert messages.decode_request(messages.encode(original)) == original


def test_small_request_is_unchanged() -> None:
    original = request(chain=long_chain(3, 100))
    data = messages.fit_request(original)
    assert data == messages.encode(original)


def test_fit_request_drops_the_oldest_chain_items_first() -> None:
    chain = long_chain(20, 4_000)  # ~80 KB, over the 48 KiB limit
    assert len(messages.encode(request(chain=chain))) > LIMIT
    data = messages.fit_request(request(chain=chain))
    assert len(data) <= LIMIT
    fitted = messages.decode_request(data)
    kept = len(fitted.chain)
    assert 0 < kept < len(chain)
    assert fitted.chain == chain[-kept:]  # the newest ones, the parent last
    # Dropping only as many as needed: one more item would not have fitted.
    assert len(messages.encode(request(chain=chain[-(kept + 1) :]))) > LIMIT
    assert fitted.post == request().post


def test_fit_request_respects_a_custom_limit() -> None:
    chain = long_chain(10, 200)
    data = messages.fit_request(request(chain=chain), limit=1_000)
    assert len(data) <= 1_000
    assert messages.decode_request(data).chain == chain[-len(messages.decode_request(data).chain) :]


def test_fit_request_shortens_an_over_long_post_body() -> None:
    body = "word " * 20_000  # 100 KB
    post = PostContext(author="alice", title="A long one", body=body)
    data = messages.fit_request(request(post=post, chain=long_chain(2, 50)))
    assert len(data) <= LIMIT
    fitted = messages.decode_request(data)
    assert fitted.post is not None
    assert fitted.post.title == "A long one"
    assert 0 < len(fitted.post.body) < len(body)
    assert body.startswith(fitted.post.body)


@pytest.mark.parametrize("char", ['"', "\\", "\x00", "\n", "é", "🐈"])
def test_fit_request_shortens_a_body_of_characters_that_grow_when_encoded(char: str) -> None:
    body = char * 60_000
    post = PostContext(author="alice", title="t", body=body)
    data = messages.fit_request(request(post=post))
    assert len(data) <= LIMIT
    fitted = messages.decode_request(data)
    assert fitted.post is not None
    assert body.startswith(fitted.post.body)
    assert fitted.post.body  # something of the body survives
    # The longest prefix that fits: one more character would not.
    longer = PostContext(author="alice", title="t", body=body[: len(fitted.post.body) + 1])
    assert len(messages.encode(request(post=longer))) > LIMIT


def test_fit_request_raises_when_the_title_alone_is_too_large() -> None:
    post = PostContext(author="alice", title="t" * (LIMIT + 10), body="short")
    with pytest.raises(InvalidInput, match="over the"):
        messages.fit_request(request(post=post))


def test_fit_request_raises_for_an_over_long_image_prompt() -> None:
    big = request(kind="image", post=None, image_prompt="a cat " * 10_000)
    with pytest.raises(InvalidInput, match=str(LIMIT)):
        messages.fit_request(big)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "malformed"),
        (b"", "malformed"),
        (b"[]", "Expected `object`"),
        (b'{"request_id": "x"}', "missing required field"),
        (
            b'{"request_id": 5, "kind": "reply", "persona": "p", "room": "r", "queue": "q"}',
            "request_id",
        ),
        (
            b'{"request_id": "x", "kind": "video", "persona": "p", "room": "r", "queue": "q"}',
            "kind",
        ),
        (
            b'{"request_id": "x", "kind": "reply", "persona": "p", "room": "r", "queue": "q",'
            b' "chain": [{"author": "a"}]}',
            "chain",
        ),
        (b"\xff\xfe", "malformed"),
    ],
)
def test_decode_request_rejects_malformed_input_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput) as info:
        messages.decode_request(data)
    message = str(info.value)
    assert message.startswith("malformed generation request: ")
    assert reason in message


def test_decode_result_rejects_wrong_types() -> None:
    with pytest.raises(InvalidInput, match="ok"):
        messages.decode_result(
            b'{"request_id": "x", "kind": "reply", "persona": "p", "room": "r", "ok": "yes"}'
        )
