"""Every shipped persona's demo model writes valid replies and posts, the same for a seed.

The demo models are real small GPT-2s trained in this session (tests/conftest.py); each
is asked for a handful of seeded replies and a post through the worker's own engines (the
prompts, token budget, validation and re-sampling of the live path), twice. On transformers
the same seed gives the same words; CTranslate2 seeds a thread's generator once (see
:mod:`playhouse.generation.ct2`), so there only validity is asserted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from playhouse import ids
from playhouse.constants import QUEUE_BACKGROUND, QUEUE_INTERACTIVE
from playhouse.generation.completion import Outcome
from playhouse.generation.engines import Engine, make_engine
from playhouse.messages import ChainComment, GenerationRequest, PostContext
from playhouse.personas import load_cast_strict

from .conftest import SHIPPED_PERSONAS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CAST = load_cast_strict(SHIPPED_PERSONAS)
TEXT_PERSONAS = sorted(name for name, p in CAST.personas.items() if p.kind == "text")
SEED = 20261201


@pytest.fixture(scope="module", params=["transformers", "ctranslate2"])
def engine(request: pytest.FixtureRequest, models_dir: Path) -> Iterator[Engine]:
    made = make_engine("text", models_dir, device="cpu", max_models=2, max_bytes=1 << 30,
                       engine=request.param)
    yield made
    made.close()


def _requests(persona: str) -> list[tuple[str, GenerationRequest]]:
    room = CAST.personas[persona].rooms[0]
    asks = [
        ("What is everyone up to this weekend?", ()),
        ("Best advice you ever got?", (ChainComment("ann", "Be kind, mostly."),)),
        ("Tell me something odd", (ChainComment("bob", "Owls can't move their eyes."),
                                   ChainComment("ann", "Is that true?"))),
        ("Favourite sound?", (ChainComment("cleo", "Rain on a tin roof.\nEvery time."),)),
    ]
    requests = [
        (f"r{i}", GenerationRequest(
            request_id=ids.new_id(), kind="reply", persona=persona, room=room,
            queue=QUEUE_INTERACTIVE, thread_id=ids.new_id(), post=PostContext("ann", title),
            chain=chain, seed=i))
        for i, (title, chain) in enumerate(asks)
    ]
    requests.append(("p", GenerationRequest(request_id=ids.new_id(), kind="post",
                                            persona=persona, room=room,
                                            queue=QUEUE_BACKGROUND, seed=99)))
    return requests


@pytest.mark.parametrize("name", TEXT_PERSONAS)
def test_the_demo_persona_writes_valid_seeded_output(
    engine: Engine, name: str, request: pytest.FixtureRequest
) -> None:
    persona = CAST.personas[name]
    entries = _requests(name)
    first = engine.run(persona, entries, SEED, threading.Event())
    again = engine.run(persona, entries, SEED, threading.Event())

    def seen(outcomes: list[Outcome]) -> list[tuple[str, bool, str, str, str]]:
        return sorted((o.key, o.ok, o.title, o.text, o.error) for o in outcomes)

    if request.node.callspec.params["engine"] == "transformers":
        assert seen(first) == seen(again)  # stable: the same seed, the same words
    assert {o.key for o in first} == {key for key, _ in entries}
    accepted = [o for o in first if o.ok]
    assert len(accepted) >= 3, [o.error for o in first if not o.ok]
    for outcome in accepted:  # valid: what the grammar lets through
        assert outcome.text.strip() and "<|" not in outcome.text and "|>" not in outcome.text
        if outcome.request.kind == "post":
            assert outcome.title.strip() and "<|" not in outcome.title
    for outcome in first:
        assert outcome.ok or outcome.error.startswith("invalid output"), outcome.error
