"""Batches, prompts, parsing and re-sampling, with a scripted model (no torch)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from playhouse.errors import ModelUnavailable
from playhouse.generation.batch import Batch, Item
from playhouse.generation.cache import ModelCache
from playhouse.generation.completion import complete, make_items
from playhouse.generation.interrupt import raise_if_aborted
from playhouse.generation.text import SamplingParams
from playhouse.grammar import PLAYHOUSE, SSI_BOT, Grammar
from playhouse.messages import ChainComment, GenerationRequest, PostContext
from playhouse.personas import Persona, load_cast

PERSONAS = Path(__file__).resolve().parents[2] / "personas"


@pytest.fixture(scope="module")
def spez() -> Persona:
    return load_cast(PERSONAS).personas["Spez"]


class ScriptedModel:
    """Returns queued outputs in order; records every call."""

    context_size = 512

    def __init__(self, outputs: Sequence[Sequence[str]], grammar: Grammar = PLAYHOUSE) -> None:
        self.outputs = [list(o) for o in outputs]
        self.calls: list[list[str]] = []
        self.stop = grammar.stop_strings

    def count_tokens(self, text: str) -> int:
        return len(text) // 4

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        *,
        stop: Sequence[str],
        seed: int | None = None,
        abort: threading.Event | None = None,
    ) -> list[str]:
        assert tuple(stop) == self.stop
        raise_if_aborted(abort)
        self.calls.append(list(prompts))
        out = self.outputs.pop(0)
        assert len(out) == len(prompts)
        return out


def reply(i: int, text: str = "what do you think?") -> GenerationRequest:
    return GenerationRequest(
        request_id=f"r{i}",
        kind="reply",
        persona="Spez",
        room="Technology",
        queue="gen-interactive",
        thread_id="t1",
        parent_id="c1",
        post=PostContext(author="alice", title="New phones", body="thoughts?"),
        chain=(ChainComment("alice", text),),
    )


def test_prompt_ends_with_the_bots_open_tag(spez: Persona) -> None:
    items, failed = make_items([("k", reply(1))], spez, ScriptedModel([]))
    assert not failed
    assert items[0].prompt.startswith("<|soss r/Technology|><|sot|>New phones<|eot|>")
    assert items[0].prompt.endswith("<|soopr u/alice|>what do you think?<|eoopr|><|sor u/Spez|>")


def test_invalid_outputs_are_resampled_in_a_smaller_batch(spez: Persona) -> None:
    model = ScriptedModel(
        [
            ["fine answer<|eor|>", "no end tag", "<|eor|>"],
            ["second try<|eor|>", "<|sor u/x|>"],
            ["what do you think?<|eor|>"],
        ]
    )
    items, _ = make_items([(f"k{i}", reply(i)) for i in range(3)], spez, model)
    outcomes = complete(model, Batch.from_items("Spez", items), spez, seed=1)
    assert [len(c) for c in model.calls] == [3, 2, 1]
    assert [o.key for o in outcomes] == ["k0", "k1", "k2"]
    assert outcomes[0].ok and outcomes[0].text == "fine answer" and outcomes[0].attempts == 1
    assert outcomes[1].ok and outcomes[1].text == "second try" and outcomes[1].attempts == 2
    assert not outcomes[2].ok
    assert "after 3 attempts" in outcomes[2].error
    assert "empty" in outcomes[2].error and "near_copy" in outcomes[2].error


def test_post_outputs_parse_title_and_body(spez: Persona) -> None:
    req = msgspec.structs.replace(reply(9), kind="post", post=None, chain=())
    model = ScriptedModel([["Hello world<|eot|><|sost|>first\\nline<|eost|>"]])
    items, _ = make_items([("p", req)], spez, model)
    assert items[0].prompt == "<|soss r/Technology|><|sot|>"
    (outcome,) = complete(model, Batch.from_items("Spez", items), spez)
    assert outcome.ok and outcome.title == "Hello world" and outcome.text == "first\nline"


def test_an_ssi_bot_persona_is_prompted_stopped_and_parsed_in_its_grammar(
    spez: Persona,
) -> None:
    ssi = msgspec.structs.replace(spez, grammar="ssi-bot")
    model = ScriptedModel(
        [["That is all<|eoss|>", "It\\'s\\ta reply<|sor u/bob|>", "Title<|sost|>Body<|eoss|>"]],
        grammar=SSI_BOT,
    )
    post = msgspec.structs.replace(reply(9), kind="post", post=None, chain=())
    items, _ = make_items([("a", reply(1)), ("b", reply(2)), ("p", post)], ssi, model)
    assert items[0].prompt == (
        "<|soss r/Technology|><|sot|>New phones<|eot|><|sost|>thoughts?<|eost|>"
        "<|soopr u/alice|>what do you think?<|eoopr|><|sor|>"
    )
    assert items[2].prompt == "<|soss r/Technology|><|sot|>"
    first, second, made = complete(model, Batch.from_items("Spez", items), ssi)
    assert first.ok and first.text == "That is all"
    assert second.ok and second.text == "It's\ta reply"
    assert made.ok and (made.title, made.text) == ("Title", "Body")
    # The playhouse grammar takes none of them.
    model = ScriptedModel([["That is all<|eoss|>", "Title<|sost|>Body<|eoss|>"]])
    items, _ = make_items([("a", reply(1)), ("p", post)], spez, model)
    spez_once = msgspec.structs.replace(
        spez, generation=msgspec.structs.replace(spez.generation, max_attempts=1))
    assert [o.ok for o in complete(model, Batch.from_items("Spez", items), spez_once)] == [
        False, False]


def test_a_prompt_over_budget_fails_that_request_only(spez: Persona) -> None:
    huge = msgspec.structs.replace(
        reply(2), post=PostContext(author="a", title="t" * 300 * 8, body="")
    )
    items, failed = make_items([("ok", reply(1)), ("big", huge)], spez, ScriptedModel([]))
    assert [i.key for i in items] == ["ok"]
    assert failed[0].key == "big" and not failed[0].ok and "budget" in failed[0].error


def test_batch_filter_and_concatenate(spez: Persona) -> None:
    items = [Item(f"k{i}", reply(i), "p") for i in range(4)]
    batch = Batch.from_items("m", items)
    assert len(batch.filter(["k1", "k3"])) == 2
    joined = Batch.concatenate([batch.filter(["k0"]), batch.filter(["k2"])])
    assert [i.key for i in joined.items] == ["k0", "k2"]
    with pytest.raises(ValueError):
        Batch.concatenate([batch, Batch.from_items("other", items)])
    tried = batch.tried([None, "empty", None, "near_copy"])
    assert [i.attempts for i in tried.items] == [1, 1, 1, 1]
    assert tried.items[1].errors == ("empty",)


class Sized:
    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.memory_bytes = size
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_model_cache_is_lru_under_count_and_memory() -> None:
    loaded: dict[str, Sized] = {}

    def load(key: str) -> Sized:
        if key == "missing":
            raise ModelUnavailable("no such model")
        loaded[key] = Sized(key, 100)
        return loaded[key]

    cache: ModelCache[Sized] = ModelCache(load, max_models=2, max_bytes=250)
    cache.get("a")
    cache.get("b")
    cache.get("a")  # a is now the most recent
    cache.get("c")  # evicts b
    assert "b" not in cache and "a" in cache and "c" in cache
    assert loaded["b"].closed and cache.loads == 3
    small: ModelCache[Sized] = ModelCache(load, max_models=5, max_bytes=150)
    small.get("a")
    small.get("b")
    assert len(small) == 1 and "b" in small
    clock = [0.0]
    flaky: ModelCache[Sized] = ModelCache(load, retry_after_s=60, clock=lambda: clock[0])
    for _ in range(2):
        with pytest.raises(ModelUnavailable):
            flaky.get("missing")
