"""Why a bot said what it said: what the asker and the worker know, kept with the job.

Two halves, written by the two processes that know them:

* :class:`CallInfo`, by whoever asked (a person's post, the scheduler): why the bot was
  called (a mention, a reply to it, the room's default bot, the scheduler with its score
  term by term and the caps that held other bots back), stored with the job row when it
  is recorded (no extra write);
* :class:`Trace`, by the worker: the prompt exactly as the model saw it, which ancestors
  were dropped to fit the token budget, the sampling parameters and seed, every attempt
  and why it was rejected, the engine and device, and when it was received and how long
  it took. It travels back on the result (or, too large for a queue message or a table
  property, in a blob of :data:`~playhouse.constants.CONTAINER_EXPLANATIONS`) and the
  results consumer stores it with the job when it records the job's end.

:class:`Explanation` is both, with the request and the job's timings, as pages and the
API show it (:mod:`playhouse.web.why` assembles it under the room's access rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from playhouse.constants import TABLE_PROPERTY_MAX_CHARS

if TYPE_CHECKING:
    from playhouse.messages import GenerationRequest
    from playhouse.storage.models import Job

CallReason = Literal["mention", "reply", "default_bot", "scheduler", "again"]
"""``again``: a person asked the bot for another answer to what it answered (a re-roll)."""

OUTPUT_MAX_CHARS: Final = 4000
"""An attempt's raw output is kept up to this many characters (a rejected sample can run
to the token limit; the reason is what matters)."""
TRACE_INLINE_MAX: Final = TABLE_PROPERTY_MAX_CHARS // 2
"""A trace whose JSON is longer than this travels and is kept in a blob: half a table
property, so the result message around it stays far under the queue's limit too."""


class HeldBack(msgspec.Struct, frozen=True, kw_only=True):
    """Another bot that was drawn to answer in the same scheduling round, and the cap or
    guard that stopped it (``per_thread_cap``, ``per_hour_cap``, ``max_chain`` ...)."""

    persona: str
    reason: str
    target: str = ""
    """The comment (or thread) it was drawn to answer."""


class Decline(msgspec.Struct, frozen=True, kw_only=True):
    """Why a person's call was not put to the bot: it sleeps, or a cap is reached."""

    reason: Literal["asleep", "thread_cap", "hour_cap"]
    active_hours: tuple[int, int] | None = None
    """The bot's active hours, UTC, ``[start, end)``."""
    wakes_at: float | None = None
    """When an asleep bot wakes (epoch seconds)."""
    count: int = 0
    """Replies already made (in the thread, or in the room this hour)."""
    cap: int = 0
    next_at: float | None = None
    """When the hourly cap lets the bot answer again (epoch seconds)."""


class CallInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Who or what called the bot, as the asker knew it."""

    reason: CallReason
    by: str = ""
    """The person whose post made the call (empty for the scheduler)."""
    answered: str = ""
    """Id of the comment (or thread) answered."""
    answered_author: str = ""
    at: float = 0.0
    probability: float | None = None
    """The scheduler's chance of a reply, and the draw that fell under it."""
    draw: float | None = None
    terms: tuple[tuple[str, float], ...] = ()
    """The reply score term by term (base, human, bot, mention, keyword_positive,
    keyword_negative, question, own_thread, depth), then ``score`` and ``decay``."""
    held_back: tuple[HeldBack, ...] = ()
    """Other bots that the round's caps held back from answering the same thing."""
    budget: int | None = None
    """Replies the round could still ask for when this one was asked."""
    ancestors: int = 0
    """Ancestors above the answer (its depth)."""
    not_sent: int = 0
    """Of those, the oldest ones left out of the request: past the stored path, or dropped
    to fit the queue's message size."""
    declined: Decline | None = None
    again: int = 0
    """For a re-roll (``again``): the how-many-th time the bot was asked again."""


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One sample: what the model wrote and whether it was accepted."""

    number: int
    seed: int | None = None
    output: str = ""
    accepted: bool = False
    reason: str = ""
    """Why it was rejected (``no_end_tag``, ``near_copy``, ``blocked_word`` ...)."""
    detail: str = ""


class Trace(msgspec.Struct, frozen=True, kw_only=True):
    """What the worker did with one request."""

    prompt: str = ""
    """The prompt exactly as the model saw it (for an image: the picture's prompt)."""
    prompt_tokens: int = 0
    budget_tokens: int = 0
    chain: int = 0
    """Ancestors the request carried."""
    dropped: int = 0
    """Of those, the oldest ones dropped to fit the token budget."""
    cut_at: int = 0
    """Where in ``prompt`` the dropped ancestors were (after the post's header)."""
    body_cut: int | None = None
    """The post's body was cut to this many characters to fit (None: whole)."""
    params: tuple[tuple[str, float | int | str], ...] = ()
    """Sampling (or diffusion) parameters, by name."""
    seed: int | None = None
    attempts: tuple[Attempt, ...] = ()
    engine: str = ""
    device: str = ""
    model: str = ""
    worker: str = ""
    batch: int = 0
    """Requests generated in the same batch."""
    deliveries: int = 0
    received_at: float = 0.0
    """When the worker received it (epoch seconds)."""
    started_at: float = 0.0
    """When its batch started generating."""
    generated_s: float = 0.0
    error: str = ""
    truncated: bool = False
    """True when parts were cut to keep the trace (no blob store at hand)."""


class Timings(msgspec.Struct, frozen=True, kw_only=True):
    """Seconds spent in each stage (None: not known, e.g. a job from before)."""

    queued_s: float | None = None
    """From the call being recorded to a worker receiving it."""
    waiting_s: float | None = None
    """In the worker, before its batch started."""
    generating_s: float | None = None
    applying_s: float | None = None
    """From the worker's answer to it being shown."""
    total_s: float | None = None


class Ancestor(msgspec.Struct, frozen=True, kw_only=True):
    author: str
    text: str
    dropped: bool = False
    """Dropped to fit the token budget: the model never saw it."""


class Explanation(msgspec.Struct, frozen=True, kw_only=True):
    """Everything known about one bot answer, as the pages and the API show it."""

    request_id: str
    persona: str
    kind: str
    room: str
    thread_id: str | None
    answer_id: str | None
    """The comment (or thread) the answer is."""
    state: str
    """The job's state: ``called``, ``pending``, ``done`` or ``failed``."""
    error: str = ""
    created_at: float = 0.0
    call: CallInfo | None = None
    """None for a job recorded before calls were explained."""
    trace: Trace | None = None
    """None until the worker answered (or for a job from before traces were kept)."""
    ancestors: tuple[Ancestor, ...] = ()
    """The chain the request carried, oldest first, each marked when it was dropped."""
    timings: Timings = msgspec.field(default_factory=Timings)
    missing: str = ""
    """Set (with the reason) when there is no explanation at all: an older comment, or
    an answer a moderator removed (to those who do not moderate its room)."""
    withheld: str = ""
    """Set (with the reason) when the words it quoted are left out: something it quoted
    was edited or deleted since (:func:`playhouse.web.why.withheld`), or removed by a
    moderator (:func:`without_gone`)."""


_call_decoder = msgspec.json.Decoder(CallInfo)
_trace_decoder = msgspec.json.Decoder(Trace)
_encoder = msgspec.json.Encoder()


def to_json(value: CallInfo | Trace | Explanation) -> str:
    return _encoder.encode(value).decode()


def decode_call(text: str) -> CallInfo | None:
    """The call stored with a job; None when there is none or it does not decode."""
    if not text:
        return None
    try:
        return _call_decoder.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def decode_trace(data: str | bytes) -> Trace | None:
    if not data:
        return None
    try:
        return _trace_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def shortened(trace: Trace, max_chars: int) -> Trace:
    """``trace`` cut to fit ``max_chars`` of JSON: attempts' outputs first, then the prompt
    (its end kept: that is where the bot's tag is). Marked ``truncated``."""
    if len(to_json(trace)) <= max_chars:
        return trace
    attempts = tuple(msgspec.structs.replace(a, output=a.output[:200]) for a in trace.attempts)
    cut = msgspec.structs.replace(trace, attempts=attempts, truncated=True)
    over = len(to_json(cut)) - max_chars
    if over > 0:
        keep = max(0, len(cut.prompt) - over - 64)
        cut = msgspec.structs.replace(cut, prompt="…" + cut.prompt[len(cut.prompt) - keep:],
                                      cut_at=0)
    return cut


def trace_blob_name(room: str, request_id: str) -> str:
    """Where a large trace is kept: under its room, like the images."""
    return f"{room}/{request_id}.json"


MISSING: Final = ("There is no record of how this was made: it is older than the "
                  "explanations playhouse keeps.")


def _span(start: float, end: float) -> float | None:
    return round(end - start, 3) if start > 0 and end >= start else None


def timings_of(job: Job, trace: Trace | None) -> Timings:
    """The stages of ``job`` as far as its row and its trace tell them."""
    received = trace.received_at if trace is not None else 0.0
    started = trace.started_at if trace is not None else 0.0
    return Timings(
        queued_s=_span(job.created_at, received),
        waiting_s=_span(received, started),
        generating_s=round(trace.generated_s, 3) if trace is not None and started else None,
        applying_s=_span(job.finished_at, job.applied_at),
        total_s=_span(job.created_at, job.applied_at),
    )


def explanation(job: Job, request: GenerationRequest | None, trace: Trace | None,
                *, answer_id: str | None) -> Explanation:
    """Everything ``job`` keeps about one answer, put together (no I/O)."""
    dropped = trace.dropped if trace is not None else 0
    chain = request.chain if request is not None else ()
    return Explanation(
        request_id=job.request_id, persona=job.persona, kind=job.kind, room=job.room,
        thread_id=job.thread_id, answer_id=answer_id or job.result_id, state=job.state,
        error=job.error, created_at=job.created_at, call=decode_call(job.call), trace=trace,
        ancestors=tuple(Ancestor(author=c.author, text=c.text, dropped=i < dropped)
                        for i, c in enumerate(chain)),
        timings=timings_of(job, trace),
    )


GONE: Final = "This answer was removed by a moderator: how it was made is not shown."
REMOVED_SINCE: Final = ("Part of what the bot answered was removed by a moderator since: the "
                 "prompt, the attempts and the removed text are not shown.")


def without_gone(x: Explanation, *, gone: Sequence[str], answered: str,
                 post_gone: bool) -> Explanation:
    """``x`` with nothing left of what was removed since the bot answered (no I/O).

    ``gone`` is, for the answer's ancestors as stored now (oldest first, the comment
    answered last), each one's tombstone (empty: still shown); they line up with
    ``x.ancestors`` from the end (the chain sent ends with the comment answered; its
    oldest may have been left out). ``answered``: the tombstone of the comment (or post)
    answered when it is gone; ``post_gone``: the thread's post is (its title and body head
    every prompt). The prompt and the attempts' outputs (a rejected one may be a near-copy
    of an ancestor) are dropped whole; the gone ancestors read their tombstone; the call
    names nobody for a gone comment answered."""
    if not (any(gone) or answered or post_gone):
        return x
    ancestors = list(x.ancestors)
    for back in range(1, min(len(ancestors), len(gone)) + 1):
        if mark := gone[-back]:
            ancestors[-back] = msgspec.structs.replace(ancestors[-back], author=mark,
                                                       text=mark)
    call = x.call
    if call is not None and answered:
        call = msgspec.structs.replace(call, answered_author=answered if call.answered_author
                                       else "", by=answered if call.by else "")
    trace = x.trace
    if trace is not None:
        trace = msgspec.structs.replace(
            trace, prompt="", cut_at=0,
            attempts=tuple(msgspec.structs.replace(a, output="") for a in trace.attempts))
    return msgspec.structs.replace(x, ancestors=tuple(ancestors), call=call, trace=trace,
                                   withheld=REMOVED_SINCE)
