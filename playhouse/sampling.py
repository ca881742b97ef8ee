"""``playhouse sample PERSONA``: a few posts and reply chains from a persona's model, in the
terminal, to judge it before it goes live.

Generation goes through the worker's own path (:func:`playhouse.generation.completion.complete`:
the same prompts in the persona's grammar, token budget, validation and re-sampling), only
without the queues. The last line, ``accepted = A/N``, counts the posts and replies that came
out valid among all it asked for; a thread whose post failed still asks its replies, under
:data:`STAND_IN` instead, so replies are always measured. Running it once with each
``grammar`` tells which one a model speaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

import structlog

from playhouse.errors import ConfigError
from playhouse.generation.batch import Batch
from playhouse.generation.completion import Outcome, complete, make_items
from playhouse.ids import new_id
from playhouse.messages import ChainComment, GenerationRequest, PostContext, RequestKind
from playhouse.personas import Persona, load_cast, resolve_model

if TYPE_CHECKING:
    from playhouse.generation.text import TextModel

log = structlog.get_logger()

STAND_IN: Final = PostContext(
    author="Visitor", title="What is on your mind today?", body="Tell us anything."
)
"""The post the replies of a thread answer when the thread's own post failed."""


@dataclass(frozen=True)
class SampleOptions:
    persona: str
    personas_dir: Path
    models_dir: Path
    threads: int = 3
    replies: int = 3
    """Replies per thread, each answering the one before (a chain)."""
    room: str | None = None
    seed: int | None = None
    device: str = "auto"


def _persona(options: SampleOptions) -> Persona:
    cast = load_cast(options.personas_dir)
    by_key = {name.casefold(): p for name, p in cast.personas.items()}
    persona = by_key.get(options.persona.casefold())
    if persona is None:
        problems = "".join(f"\n  {error}" for error in cast.errors)
        raise ConfigError(
            f"no persona {options.persona!r} in {options.personas_dir}{problems}"
        )
    if persona.kind != "text":
        raise ConfigError(f"{persona.name} is an {persona.kind} persona; sample takes text ones")
    return persona


def _one(
    model: TextModel, persona: Persona, request: GenerationRequest, seed: int | None
) -> Outcome:
    items, failed = make_items([(request.request_id, request)], persona, model)
    if failed:
        return failed[0]
    return complete(model, Batch.from_items(persona.name, items), persona, seed=seed)[0]


def sample(options: SampleOptions, out: TextIO) -> int:
    """Write ``threads`` generated threads with ``replies`` chained replies each to ``out``,
    then ``accepted = A/N``.

    Returns 0 when every generation was valid, 1 when any failed (the failures are shown).
    """
    from playhouse.generation.text import TextModel

    persona = _persona(options)
    room = options.room or persona.rooms[0]
    path = resolve_model(persona, options.models_dir)
    model = TextModel.load(path, device=options.device, name=persona.name)
    out.write(f"u/{persona.name} in r/{room} ({path}, grammar {persona.grammar})\n")
    failures = 0
    asked = 0
    for index in range(options.threads):
        seed = None if options.seed is None else options.seed + 1000 * index

        def request(kind: RequestKind, post: PostContext | None = None,
                    chain: tuple[ChainComment, ...] = ()) -> GenerationRequest:
            return GenerationRequest(request_id=new_id(), kind=kind, persona=persona.name,
                                     room=room, queue="sample", post=post, chain=chain)

        made = _one(model, persona, request("post"), seed)
        asked += 1
        out.write(f"\n=== thread {index + 1} ===\n")
        if made.ok:
            out.write(f"# {made.title}\n{made.text}\n")
            post = PostContext(author=persona.name, title=made.title, body=made.text)
        else:
            failures += 1
            post = STAND_IN
            out.write(f"[post failed: {made.error}]\n")
            out.write(f"# {post.title} (a stand-in by u/{post.author})\n{post.body}\n")
        chain: tuple[ChainComment, ...] = ()
        for depth in range(options.replies):
            step_seed = None if seed is None else seed + depth + 1
            reply = _one(model, persona, request("reply", post, chain), step_seed)
            asked += 1
            indent = "  " * (depth + 1)
            if not reply.ok:
                failures += 1
                out.write(f"{indent}[reply failed: {reply.error}]\n")
                break
            text = reply.text.replace("\n", "\n" + indent + "  ")
            out.write(f"{indent}u/{persona.name}: {text}\n")
            chain = (*chain, ChainComment(persona.name, reply.text))
    model.close()
    out.write(f"\naccepted = {asked - failures}/{asked}\n")
    log.info("sample.done", persona=persona.name, threads=options.threads, asked=asked,
             failures=failures)
    return 1 if failures else 0
