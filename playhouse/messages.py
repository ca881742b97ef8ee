"""Wire structs carried by the queues (msgspec JSON, base64 on the wire).

A request carries everything a worker needs to build the prompt, so a worker never
reads tables: it may run on another machine with nothing but queue access.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec

from playhouse.constants import QUEUE_MESSAGE_MAX_BYTES
from playhouse.errors import InvalidInput
from playhouse.explain import Trace

RequestKind = Literal["post", "reply", "image"]


class ChainComment(msgspec.Struct, frozen=True):
    """One comment of the chain above the comment a bot answers (oldest first)."""

    author: str
    text: str


class PostContext(msgspec.Struct, frozen=True):
    """The post a reply belongs to (its header in the prompt)."""

    author: str
    title: str
    body: str = ""
    url: str | None = None


class GenerationRequest(msgspec.Struct, kw_only=True, frozen=True):
    """Ask a persona for a new post, a reply or an image."""

    request_id: str
    kind: RequestKind
    persona: str
    room: str
    queue: str
    thread_id: str | None = None
    parent_id: str | None = None
    post: PostContext | None = None
    chain: tuple[ChainComment, ...] = ()
    image_prompt: str = ""
    caption: str = ""
    """What an image persona's answer says (its thread's title, for a post): the prompt as
    the words of whoever wrote them (:func:`playhouse.asking.image_caption`); empty: the
    prompt is the persona's own."""
    created_at: float = 0.0
    seed: int | None = None
    comment_id: str | None = None
    """The comment row a reply's answer fills (its placeholder's id, time-ordered like
    every comment id); None in requests from before it was carried."""
    v: int = 1


class GenerationResult(msgspec.Struct, kw_only=True, frozen=True):
    """What a worker made of a request: a post, a reply, an image, or a failure."""

    request_id: str
    kind: RequestKind
    persona: str
    room: str
    ok: bool
    thread_id: str | None = None
    parent_id: str | None = None
    title: str = ""
    text: str = ""
    image_blob: str | None = None
    error: str = ""
    attempts: int = 1
    model: str = ""
    elapsed_ms: float = 0.0
    finished_at: float = 0.0
    comment_id: str | None = None
    """The request's ``comment_id``, handed back."""
    trace: Trace | None = None
    """What the worker did ("why this reply?"); None when it is in ``trace_blob``."""
    trace_blob: str | None = None
    """The trace's blob (in the explanations container) when it was too large to carry."""
    v: int = 1

    @classmethod
    def success(cls, request: GenerationRequest, *, title: str = "", text: str = "",
                image_blob: str | None = None, attempts: int = 1, model: str = "",
                elapsed_ms: float = 0.0, trace: Trace | None = None,
                trace_blob: str | None = None) -> GenerationResult:
        """What a worker answers when ``request`` was generated."""
        return cls(
            request_id=request.request_id, kind=request.kind, persona=request.persona,
            room=request.room, ok=True, thread_id=request.thread_id,
            parent_id=request.parent_id, title=title, text=text, image_blob=image_blob,
            attempts=attempts, model=model, elapsed_ms=elapsed_ms, finished_at=time.time(),
            comment_id=request.comment_id, trace=trace, trace_blob=trace_blob,
        )

    @classmethod
    def failure(cls, request: GenerationRequest, error: str, *, attempts: int = 1,
                model: str = "", trace: Trace | None = None,
                trace_blob: str | None = None) -> GenerationResult:
        """A visible failure for ``request``: its placeholder becomes "… could not answer"."""
        return cls(
            request_id=request.request_id, kind=request.kind, persona=request.persona,
            room=request.room, ok=False, thread_id=request.thread_id,
            parent_id=request.parent_id, error=error, attempts=attempts, model=model,
            finished_at=time.time(), comment_id=request.comment_id, trace=trace,
            trace_blob=trace_blob,
        )


_request_decoder = msgspec.json.Decoder(GenerationRequest)
_result_decoder = msgspec.json.Decoder(GenerationResult)
_encoder = msgspec.json.Encoder()


def encode(message: GenerationRequest | GenerationResult) -> bytes:
    return _encoder.encode(message)


def decode_request(data: bytes | str) -> GenerationRequest:
    """Decode a request; raises :class:`InvalidInput` with the reason when malformed."""
    try:
        return _request_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInput(f"malformed generation request: {exc}") from exc


def decode_result(data: bytes | str) -> GenerationResult:
    try:
        return _result_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInput(f"malformed generation result: {exc}") from exc


def fit_request(request: GenerationRequest, limit: int = QUEUE_MESSAGE_MAX_BYTES) -> bytes:
    """Encode ``request`` under the queue's size limit.

    The worker cuts the prompt to a token budget by dropping the oldest ancestors, so
    dropping them here first loses nothing the model would have seen. If the post
    header alone is too large its body is shortened.
    """
    return fitted_request(request, limit)[1]


def fitted_request(request: GenerationRequest, limit: int = QUEUE_MESSAGE_MAX_BYTES
                   ) -> tuple[GenerationRequest, bytes]:
    """:func:`fit_request`, and the request as it was fitted (its chain maybe shorter)."""
    data = encode(request)
    chain = list(request.chain)
    while len(data) > limit and chain:
        chain.pop(0)
        request = msgspec.structs.replace(request, chain=tuple(chain))
        data = encode(request)
    if len(data) > limit and request.post is not None and request.post.body:
        data = _fit_body(request, request.post, limit)
    if len(data) > limit:
        raise InvalidInput(f"generation request is {len(data)} bytes, over the {limit} limit")
    return request, data


def _fit_body(request: GenerationRequest, post: PostContext, limit: int) -> bytes:
    """``request`` encoded with the longest prefix of the post body that fits ``limit``.

    Searched on the encoded size, because JSON escaping makes a quote, a backslash or a
    newline take two bytes and a control character six. Over the limit even with an empty
    body, it returns that (too large) encoding for the caller to reject.
    """

    def with_body(length: int) -> bytes:
        shorter = msgspec.structs.replace(post, body=post.body[:length])
        return encode(msgspec.structs.replace(request, post=shorter))

    best = with_body(0)
    if len(best) > limit:
        return best
    lo, hi = 0, len(post.body)  # a body of `lo` characters fits, one of `hi` does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        data = with_body(mid)
        if len(data) <= limit:
            lo, best = mid, data
        else:
            hi = mid
    return best
