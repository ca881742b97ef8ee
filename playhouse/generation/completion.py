"""From requests to validated text: prompts in, parsed and re-sampled outputs out.

Pure logic over a :class:`TextModel`: builds each request's prompt in the persona's grammar
(:attr:`Persona.variant`, cut to the persona's token budget), generates the batch with that
grammar's stop strings, parses every completion and re-samples the invalid ones (a smaller
batch each round) up to ``max_attempts``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from playhouse import grammar
from playhouse.errors import InvalidCompletion, InvalidInput
from playhouse.explain import OUTPUT_MAX_CHARS, Attempt, Trace
from playhouse.generation.batch import Batch, Item
from playhouse.generation.progress import Retry, report_retry
from playhouse.generation.text import SamplingParams
from playhouse.messages import GenerationRequest

if TYPE_CHECKING:
    import threading

    from playhouse.personas import Persona

log = structlog.get_logger()


class Generates(Protocol):
    """What completion needs of a model (a TextModel, or a fake in unit tests)."""

    @property
    def context_size(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        *,
        stop: Sequence[str],
        seed: int | None = None,
        abort: threading.Event | None = None,
    ) -> list[str]: ...


@dataclass(frozen=True)
class Outcome:
    """What became of one request: a post, a reply, or a failure with its reason."""

    key: str
    request: GenerationRequest
    ok: bool
    title: str = ""
    text: str = ""
    error: str = ""
    attempts: int = 0
    png: bytes | None = None
    """The image an image persona made (the worker stores it as a blob)."""
    tokens: int = 0
    """Tokens of the accepted completion (throughput figures)."""
    trace: Trace | None = None
    """What was done to answer it (the worker adds who and when)."""


def build_prompt(request: GenerationRequest, persona: Persona, model: Generates) -> str:
    """The prompt for ``request`` in the persona's grammar; InvalidInput when it cannot fit."""
    return fit_prompt(request, persona, model).prompt


def prompt_budget(persona: Persona, model: Generates) -> int:
    """Tokens a reply prompt may take: the persona's limit, and room for the answer."""
    return min(persona.generation.max_prompt_tokens,
               model.context_size - persona.generation.max_new_tokens)


def fit_prompt(request: GenerationRequest, persona: Persona,
               model: Generates) -> grammar.FittedPrompt:
    """The prompt for ``request`` and what fitting it to the budget left out."""
    tags = persona.variant
    if request.kind == "post":
        return grammar.FittedPrompt(tags.post_prompt(request.room))
    if request.kind != "reply" or request.post is None:
        raise InvalidInput(f"a {request.kind!r} request cannot be generated as text")
    post = grammar.Post(
        room=request.room,
        title=request.post.title,
        body=request.post.body,
        url=request.post.url,
        author=request.post.author,
    )
    chain = [grammar.ChainEntry(author=c.author, text=c.text) for c in request.chain]
    return tags.fit_reply_prompt(post, chain, persona.name, count_tokens=model.count_tokens,
                                 max_tokens=prompt_budget(persona, model))


def describe_model(model: object) -> tuple[str, str]:
    """(engine, device) of a loaded model, as far as it says (``engine_name``,
    ``device``); a model that does not say is named by its class."""
    engine = getattr(model, "engine_name", None) or type(model).__name__
    device = getattr(model, "device", None) or ""
    return str(engine), str(device)


def parse_output(request: GenerationRequest, completion: str, persona: Persona) -> tuple[str, str]:
    """(title, text) of a valid completion; raises InvalidCompletion otherwise."""
    blocked = persona.generation.blocked_words
    tags = persona.variant
    if request.kind == "post":
        parsed = tags.parse_post(completion, blocked_words=blocked)
        return parsed.title, parsed.url or parsed.body
    ancestors = [c.text for c in request.chain]
    if request.post is not None:
        ancestors.append(request.post.title)
    return "", tags.parse_reply(completion, ancestors=ancestors, blocked_words=blocked)


def complete(
    model: Generates,
    batch: Batch,
    persona: Persona,
    *,
    seed: int | None = None,
    abort: threading.Event | None = None,
) -> list[Outcome]:
    """Generate ``batch`` and re-sample invalid outputs; one Outcome per item, in order.
    Raises :class:`~playhouse.errors.Interrupted` once ``abort`` is set. Before each
    re-sampling round the requests sampled again are reported
    (:mod:`playhouse.generation.progress`)."""
    params = SamplingParams.from_persona(persona)
    stop = persona.variant.stop_strings
    done: dict[str, Outcome] = {}
    tried: dict[str, list[Attempt]] = {item.key: [] for item in batch.items}
    pending = batch
    max_attempts = max(1, persona.generation.max_attempts)
    for attempt in range(max_attempts):
        round_seed = None if seed is None else seed + attempt * 7919
        outputs = model.generate(
            pending.prompts, params, stop=stop, seed=round_seed, abort=abort
        )
        errors: list[str | None] = []
        for item, output in zip(pending.items, outputs, strict=True):
            kept = output[:OUTPUT_MAX_CHARS]
            try:
                title, text = parse_output(item.request, output, persona)
            except InvalidCompletion as exc:
                errors.append(exc.reason)
                tried[item.key].append(Attempt(number=attempt + 1, seed=round_seed,
                                               output=kept, reason=exc.reason,
                                               detail=exc.detail[:300]))
                log.debug("completion.invalid", request_id=item.request.request_id,
                          reason=exc.reason, attempt=attempt + 1)
                continue
            errors.append(None)
            tried[item.key].append(Attempt(number=attempt + 1, seed=round_seed, output=kept,
                                           accepted=True))
            done[item.key] = Outcome(
                item.key, item.request, True, title=title, text=text, attempts=attempt + 1,
                tokens=model.count_tokens(output),
            )
        pending = pending.tried(errors).filter(i.key for i in pending.items if i.key not in done)
        if not pending:
            break
        if attempt + 1 < max_attempts:
            report_retry([Retry(i.key, attempt + 2, max_attempts, i.errors[-1] if i.errors
                                else "invalid") for i in pending.items])
    for item in pending.items:
        reasons = ",".join(item.errors) or "invalid"
        done[item.key] = Outcome(
            item.key,
            item.request,
            False,
            error=f"invalid output after {item.attempts} attempts ({reasons})",
            attempts=item.attempts,
        )
    engine, device = describe_model(model)
    budget = prompt_budget(persona, model)
    sampling = tuple(dataclasses.asdict(params).items())
    out: list[Outcome] = []
    for item in batch.items:
        fit = item.fit or grammar.FittedPrompt(item.prompt)
        trace = Trace(
            prompt=item.prompt, prompt_tokens=model.count_tokens(item.prompt),
            budget_tokens=budget if item.request.kind == "reply" else 0,
            chain=len(item.request.chain), dropped=fit.dropped, cut_at=fit.cut_at,
            body_cut=fit.body_chars, params=sampling, seed=seed,
            attempts=tuple(tried[item.key]), engine=engine, device=device,
            batch=len(batch), error=done[item.key].error,
        )
        out.append(dataclasses.replace(done[item.key], trace=trace))
    return out


def make_items(
    entries: Sequence[tuple[str, GenerationRequest]], persona: Persona, model: Generates
) -> tuple[list[Item], list[Outcome]]:
    """Items for the requests whose prompt builds, failures for the others."""
    items: list[Item] = []
    failed: list[Outcome] = []
    for key, request in entries:
        try:
            fit = fit_prompt(request, persona, model)
        except InvalidInput as exc:
            failed.append(Outcome(key, request, False, error=str(exc), attempts=1,
                                  trace=Trace(chain=len(request.chain), error=str(exc))))
            continue
        items.append(Item(key, request, fit.prompt, fit=fit))
    return items, failed
