"""Models trained on ssi-bot's formats, served through the real worker on Azurite.

Each model (:mod:`tests.ssi_models`: tags as plain text, as in the models in the wild) is
served once with the grammar it was trained on, where at least 90 % of its replies and
posts must be accepted, and once with ``grammar = "playhouse"``, where it fails as every
ssi-bot model did before the grammar variants existed. ``playhouse sample`` measures the
same model and ends with its ``accepted =`` line.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pytest

from playhouse import grammar, ids
from playhouse.constants import QUEUE_INTERACTIVE
from playhouse.generation.engines import make_engine
from playhouse.generation.worker import Worker
from playhouse.messages import (
    ChainComment,
    GenerationRequest,
    GenerationResult,
    PostContext,
    decode_result,
)
from playhouse.personas import load_cast_strict
from playhouse.sampling import SampleOptions, sample
from playhouse.storage import Storage
from tests.ssi_models import build_ssi_model

from .conftest import add_persona
from .test_worker import FAST, _drain, _send

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VARIANTS = ("ssi-bot", "ssi-bot-2021")
REPLIES = 36
POSTS = 18


@pytest.fixture(scope="module")
def ssi_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ssi-models")
    return {name: build_ssi_model(grammar.get(name), folder / name) for name in VARIANTS}


def _requests(persona: str) -> list[GenerationRequest]:
    """Replies to posts by a person or by the bot itself, at depths 0-3, and new posts."""
    requests: list[GenerationRequest] = []
    for i in range(REPLIES):
        author = persona if i % 3 == 0 else "alice"
        speakers = ("bob", persona)
        chain = tuple(ChainComment(speakers[j % 2], f"I like tea {j}, what about you?")
                      for j in range(i % 4))
        requests.append(GenerationRequest(
            request_id=ids.new_id(), kind="reply", persona=persona, room="Technology",
            queue=QUEUE_INTERACTIVE, thread_id=ids.new_id(),
            post=PostContext(author=author, title=f"What about coffee number {i}?",
                             body="I need beans.\nAny tips?"),
            chain=chain,
        ))
    requests += [
        GenerationRequest(request_id=ids.new_id(), kind="post", persona=persona,
                          room="Technology", queue=QUEUE_INTERACTIVE)
        for _ in range(POSTS)
    ]
    return requests


async def _serve(
    storage: Storage, tmp_path: Path, model: Path, grammar_name: str
) -> tuple[list[GenerationResult], list[GenerationResult]]:
    """(replies, posts) that a burst worker answered for a persona of ``grammar_name``."""
    personas = tmp_path / f"personas-{grammar_name}"
    personas.mkdir()
    add_persona(personas, "SsiBot", model=str(model), grammar=grammar_name)
    cast = load_cast_strict(personas)
    requests = _requests("SsiBot")
    await _send(storage, requests)
    engine = make_engine("text", tmp_path / "models", device="cpu", max_models=1,
                         max_bytes=1 << 30)
    worker = Worker(queues=storage.queues, blobs=storage.blobs, cast=cast, engine=engine,
                    settings=FAST, burst=True, seed=11)
    await worker.main()
    results = {r.request_id: r for r in map(decode_result, await _drain(storage))}
    assert set(results) == {r.request_id for r in requests}
    kinds = {r.request_id: r.kind for r in requests}
    replies = [r for rid, r in results.items() if kinds[rid] == "reply"]
    posts = [r for rid, r in results.items() if kinds[rid] == "post"]
    return replies, posts


def _accepted(results: Sequence[GenerationResult]) -> int:
    for result in results:
        if result.ok:
            for text in (result.title, result.text):
                assert "<|" not in text and "|>" not in text, text
    return sum(r.ok for r in results)


@pytest.mark.parametrize("variant", VARIANTS)
async def test_an_ssi_bot_model_works_under_its_grammar(
    variant: str, ssi_models: dict[str, Path], storage: Storage, tmp_path: Path
) -> None:
    replies, posts = await _serve(storage, tmp_path, ssi_models[variant], variant)
    assert _accepted(replies) >= 0.9 * REPLIES, [r.error for r in replies if not r.ok]
    assert _accepted(posts) >= 0.9 * POSTS, [r.error for r in posts if not r.ok]
    assert all(p.title.strip() for p in posts if p.ok)


@pytest.mark.parametrize("variant", VARIANTS)
async def test_the_same_model_fails_under_the_playhouse_grammar(
    variant: str, ssi_models: dict[str, Path], storage: Storage, tmp_path: Path
) -> None:
    replies, posts = await _serve(storage, tmp_path, ssi_models[variant], "playhouse")
    # Its posts never close a title with <|eot|> after a named header (ssi-bot) or never
    # follow a header with r/ROOM in it (ssi-bot-2021).
    assert _accepted(posts) <= 0.1 * POSTS, [p.title for p in posts if p.ok]
    if variant == "ssi-bot":  # it never writes <|eor|>; 2021 models do, so theirs pass
        assert _accepted(replies) <= 0.1 * REPLIES, [r.text for r in replies if r.ok]
    assert _accepted(replies) + _accepted(posts) < 0.9 * (REPLIES + POSTS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_sample_counts_what_it_asked_for(
    variant: str, ssi_models: dict[str, Path], tmp_path: Path
) -> None:
    own, other = tmp_path / "own", tmp_path / "playhouse"
    for folder, name in ((own, variant), (other, "playhouse")):
        folder.mkdir()
        add_persona(folder, "SsiBot", model=str(ssi_models[variant]), grammar=name)

    def run(folder: Path) -> tuple[int, str]:
        out = io.StringIO()
        code = sample(SampleOptions(persona="SsiBot", personas_dir=folder,
                                    models_dir=tmp_path, threads=3, replies=3, seed=5,
                                    device="cpu"), out)
        return code, out.getvalue()

    _, text = run(own)
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    accepted, asked = map(int, last.removeprefix("accepted = ").split("/"))
    assert last.startswith("accepted = ") and asked >= 6 and accepted >= 0.75 * asked, text
    # Every post fails under the wrong grammar, yet each thread's first reply is still asked,
    # under the stand-in post.
    code, text = run(other)
    assert code == 1
    assert text.count("[post failed") == 3 and text.count("(a stand-in by u/Visitor)") == 3
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    accepted, asked = map(int, last.removeprefix("accepted = ").split("/"))
    assert asked >= 6 and accepted <= asked - 3
