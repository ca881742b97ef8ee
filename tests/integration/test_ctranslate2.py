"""The CTranslate2 engine on real small models on CPU: selection, conversion cache, quality
gate, stops, abort, shared prefixes, and the worker through Azurite."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from playhouse import grammar, ids
from playhouse.config import WorkerSettings
from playhouse.constants import QUEUE_INTERACTIVE, RESULT_QUEUES
from playhouse.errors import ConfigError, Interrupted
from playhouse.generation import convert, graphs
from playhouse.generation.backends import EngineChoice, load_text_model
from playhouse.generation.batch import Batch
from playhouse.generation.completion import build_prompt, complete, make_items
from playhouse.generation.convert import CannotConvert, ensure_converted
from playhouse.generation.ct2 import Ct2Model
from playhouse.generation.engines import Engine, Entry, TextEngine, make_engine
from playhouse.generation.text import SamplingParams, TextModel
from playhouse.generation.worker import Worker
from playhouse.grammar import PLAYHOUSE
from playhouse.messages import (
    ChainComment,
    GenerationRequest,
    PostContext,
    decode_request,
    decode_result,
    encode,
)
from playhouse.personas import Persona, load_cast_strict

from .conftest import SHIPPED_PERSONAS, add_persona

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STOPS = PLAYHOUSE.stop_strings
"""The stops of the grammar the demo models speak (what completion passes for them)."""

FAST = WorkerSettings(gather_ms=20, visibility_timeout_s=30, poll_min_s=0.01, poll_max_s=0.05)


def _reply(persona: str, i: int, **kw: Any) -> GenerationRequest:
    fields: dict[str, Any] = {
        "request_id": ids.new_id(), "kind": "reply", "persona": persona, "room": "Technology",
        "queue": QUEUE_INTERACTIVE, "thread_id": ids.new_id(),
        "post": PostContext(author="alice", title=f"What about coffee number {i}?", body="hm"),
        "chain": tuple(ChainComment("bob", f"I like tea {j}") for j in range(i % 4)),
    }
    fields.update(kw)
    return msgspec.convert(fields, GenerationRequest, from_attributes=True)


def _persona(name: str = "CoopBot", **generation: Any) -> Persona:
    base = load_cast_strict(SHIPPED_PERSONAS).personas[name]
    return msgspec.structs.replace(
        base, generation=msgspec.structs.replace(base.generation, **generation)
    )


async def _drain(storage: Any, *queues: str) -> list[bytes]:
    out: list[bytes] = []
    for queue in queues or RESULT_QUEUES:
        while batch := await storage.queues.receive(queue, visibility_timeout=60):
            for message in batch:
                out.append(message.content)
                await storage.queues.delete(message)
    return out


# --- models the demo does not have ---------------------------------------------------------


def _tokenizer(models_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(models_dir / "demo" / "CoopBot"))


def _gpt_neo(folder: Path, models_dir: Path) -> Path:
    """A GPT-Neo: transformers runs it, CTranslate2 has no converter for it."""
    import torch
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    tok = _tokenizer(models_dir)
    torch.manual_seed(0)
    config = GPTNeoConfig(
        vocab_size=len(tok), max_position_embeddings=1024, hidden_size=64, num_layers=2,
        num_heads=4, attention_types=[[["global", "local"], 1]],
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    GPTNeoForCausalLM(config).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def _random_gpt2(folder: Path, models_dir: Path, *, n_embd: int = 64) -> Path:
    """A random-init GPT-2 with the demo tokenizer: it closes a tag only by chance."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _tokenizer(models_dir)
    torch.manual_seed(1)
    config = GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=n_embd, n_layer=2,
                        n_head=4, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def _scripted(folder: Path) -> Path:
    """A real GPT-2 whose every continuation of an open tag is ``hi<|eor|>`` with the tag
    spelt over three tokens (``<|``, ``eor``, ``|>``), as real ssi-bot models tokenize it.

    Its blocks are zeroed, so the residual stream is the current token's embedding, and its
    (untied) output layer maps ``|>`` to ``hi``, ``hi`` to ``<|``, ``<|`` to ``eor`` and
    ``eor`` to ``|>`` by a wide margin: sampling is as good as deterministic."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<|pad|>": 1}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    merges = [("<", "|"), ("|", ">"), ("e", "o"), ("eo", "r"), ("h", "i")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>", pad_token="<|pad|>", padding_side="left",
    )
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_positions=1024, n_embd=64, n_layer=1,
                        n_head=2, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
                        pad_token_id=1)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for p in model.transformer.h.parameters():
            p.zero_()
        block = model.transformer.h[0]
        block.ln_1.weight.fill_(1.0)
        block.ln_2.weight.fill_(1.0)
        model.transformer.wpe.weight.zero_()
        model.lm_head.weight.zero_()
        wte = model.transformer.wte.weight
        for a, b in {"|>": "hi", "hi": "<|", "<|": "eor", "eor": "|>"}.items():
            x = wte[vocab[a]]
            model.lm_head.weight[vocab[b]] += 2.0 * (x - x.mean()) / x.std()
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


# --- selection -------------------------------------------------------------------------------


def test_auto_serves_a_demo_model_through_ctranslate2_and_counts_its_memory(
    models_dir: Path, tmp_path: Path
) -> None:
    engine = make_engine("text", models_dir, device="cpu", max_models=2, max_bytes=1 << 30,
                         convert_dir=tmp_path / "ct2")
    assert isinstance(engine, TextEngine)
    persona = _persona(max_attempts=1)
    entries = [(str(i), _reply("CoopBot", i)) for i in range(12)]
    with capture_logs() as logs:
        outcomes = engine.run(persona, entries, 3, threading.Event())
    (selected,) = [e for e in logs if e["event"] == "engine.selected"]
    assert selected["engine"] == "ctranslate2" and selected["quantization"] == "int8"
    model = engine.models.get(str(models_dir / "demo" / "CoopBot"))
    assert isinstance(model, Ct2Model)
    assert sorted(o.key for o in outcomes) == sorted(k for k, _ in entries)
    assert sum(o.ok for o in outcomes) >= len(outcomes) // 2
    for o in outcomes:
        assert (o.ok and o.text.strip() and "<|" not in o.text) or o.error
    # The cache counts what CTranslate2 holds: the converted int8 files, not torch's fp32.
    entry = model.converted.path
    on_disk = sum(p.stat().st_size for p in entry.iterdir() if p.name != convert.RECORD)
    assert engine.models.memory_bytes == model.memory_bytes >= on_disk
    torch_model = TextModel.load(str(models_dir / "demo" / "CoopBot"), device="cpu")
    assert model.memory_bytes < torch_model.memory_bytes / 2
    engine.close()


def test_transformers_and_continuous_batching_keep_transformers(
    models_dir: Path, tmp_path: Path
) -> None:
    path = str(models_dir / "demo" / "CoopBot")
    with capture_logs() as logs:
        plain = load_text_model(path, EngineChoice(engine="transformers", device="cpu"))
        continuous = load_text_model(path, EngineChoice(engine="auto", device="cpu",
                                                        continuous=True,
                                                        cache_dir=tmp_path))
    assert isinstance(plain, TextModel) and isinstance(continuous, TextModel)
    reasons = [e["reason"] for e in logs if e["event"] == "engine.selected"]
    assert reasons == ["worker.engine is transformers",
                       "auto: worker.continuous_batching is on (a transformers feature)"]
    continuous.close()
    with pytest.raises(ConfigError, match=r"worker\.engine must be one of"):
        EngineChoice(engine="tensorrt")


async def test_a_model_ctranslate2_cannot_convert_falls_back_and_still_answers(
    storage: Any, models_dir: Path, persona_dir: Path, tmp_path: Path
) -> None:
    neo = _gpt_neo(tmp_path / "neo", models_dir)
    add_persona(persona_dir, "NeoBot", model=str(neo), extra="\n[generation]\nmax_attempts = 1\n")
    cast = load_cast_strict(persona_dir)
    requests = [_reply("NeoBot", i) for i in range(3)]
    for request in requests:
        await storage.queues.send(QUEUE_INTERACTIVE, encode(request))
    engine = make_engine("text", models_dir, device="cpu", max_models=2, max_bytes=1 << 30,
                         convert_dir=tmp_path / "ct2")
    worker = Worker(queues=storage.queues, blobs=None, cast=cast, engine=engine,
                    settings=FAST, burst=True, seed=3)
    with capture_logs() as logs:
        await worker.main()
    (selected,) = [e for e in logs if e["event"] == "engine.selected"]
    assert selected["engine"] == "transformers"
    assert "No conversion is registered for the model configuration GPTNeoConfig" in (
        selected["reason"])
    results = [decode_result(r) for r in await _drain(storage)]
    assert sorted(r.request_id for r in results) == sorted(r.request_id for r in requests)
    assert all(r.ok or r.error.startswith("invalid output") for r in results)  # answered
    # The verdict is kept: the next load does not convert again, it says why at once.
    with capture_logs() as logs, pytest.raises(CannotConvert, match="GPTNeoConfig"):
        Ct2Model.load(str(neo), cache_dir=tmp_path / "ct2", device="cpu")
    assert not [e for e in logs if e["event"] == "ct2.converted"]
    # Asked for CTranslate2 by name, the persona's requests fail visibly instead.
    strict = make_engine("text", models_dir, device="cpu", max_models=2, max_bytes=1 << 30,
                         convert_dir=tmp_path / "ct2", engine="ctranslate2")
    (outcome,) = strict.run(cast.personas["NeoBot"], [("k", requests[0])], 1,
                            threading.Event())
    assert not outcome.ok and "model unavailable" in outcome.error
    assert "GPTNeoConfig" in outcome.error


def test_a_model_ctranslate2_reads_wrongly_is_refused_by_the_gate(
    models_dir: Path, tmp_path: Path
) -> None:
    # A GPT-2 config flag CTranslate2's converter ignores: the conversion "works" but
    # computes something else. The float32 check tells it from quantization noise.
    odd = tmp_path / "odd"
    shutil.copytree(models_dir / "demo" / "CoopBot", odd)
    config = json.loads((odd / "config.json").read_text(encoding="utf-8"))
    config["scale_attn_by_inverse_layer_idx"] = True
    (odd / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with capture_logs() as logs:
        model = load_text_model(str(odd), EngineChoice(device="cpu", cache_dir=tmp_path / "c"))
    assert isinstance(model, TextModel)
    (selected,) = [e for e in logs if e["event"] == "engine.selected"]
    assert "reads odd differently from transformers" in selected["reason"]
    model.close()


# --- the conversion cache --------------------------------------------------------------------


def test_a_half_written_conversion_is_detected_and_rebuilt(
    models_dir: Path, tmp_path: Path
) -> None:
    source = models_dir / "demo" / "Spez"
    cache = tmp_path / "ct2"
    first = ensure_converted(source, cache, "int8")
    weights = first.path / "model.bin"
    size = weights.stat().st_size
    # A copy cut short (or a disk that filled up) leaves the weights truncated ...
    with weights.open("r+b") as handle:
        handle.truncate(size // 2)
    # ... and a worker killed while converting leaves its staging folder behind.
    leftover = cache / f"{convert.STAGING_PREFIX}{first.path.name}-999999"
    leftover.mkdir()
    (leftover / "model.bin").write_bytes(b"half")
    with capture_logs() as logs:
        model = Ct2Model.load(str(source), cache_dir=cache, device="cpu")
    events = [e["event"] for e in logs]
    assert "ct2.cache_broken" in events and "ct2.converted" in events
    assert weights.stat().st_size == size
    assert not leftover.exists()
    (text,) = model.generate([grammar.post_prompt("Technology")], SamplingParams(),
                             stop=STOPS, seed=1)
    assert isinstance(text, str)
    # An entry without its record (killed between the two) is rebuilt too; a whole one is
    # reused as it is.
    (first.path / convert.RECORD).unlink()
    with capture_logs() as logs:
        ensure_converted(source, cache, "int8")
        ensure_converted(source, cache, "int8")
    assert [e["event"] for e in logs].count("ct2.converted") == 1
    assert [e["event"] for e in logs].count("ct2.cache_hit") == 1


def test_the_cache_key_follows_the_model_files_and_the_quantization(
    models_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "model"
    shutil.copytree(models_dir / "demo" / "ByteBot", source)
    key = convert.cache_key(source, "int8")
    assert convert.cache_key(source, "int8") == key
    assert convert.cache_key(source, "float32") != key
    other = models_dir / "demo" / "GoalBot"  # same shape and size, other weights
    shutil.copy(other / "model.safetensors", source / "model.safetensors")
    assert convert.cache_key(source, "int8") != key


# --- generation ------------------------------------------------------------------------------


def test_a_stop_tag_spelt_over_several_tokens_ends_the_reply(tmp_path: Path) -> None:
    path = _scripted(tmp_path / "scripted")
    post = grammar.Post(room="Technology", title="What about coffee?", body="hm", url=None,
                        author="alice")
    prompt = grammar.reply_prompt(post, [grammar.ChainEntry("bob", "tea")], "CoopBot")
    ct2 = Ct2Model.load(str(path), cache_dir=tmp_path / "ct2", device="cpu",
                        quantization="float32")
    assert ct2.single_token_id("<|eor|>") is None  # three tokens here
    assert len(ct2.tokenizer.encode("<|eor|>", add_special_tokens=False)) == 3
    params = SamplingParams(max_new_tokens=40)
    # Without a stop the model writes its script again and again; with the grammar's stops
    # both engines end right after the tag.
    (endless,) = ct2.generate([prompt], params, stop=(), seed=1)
    assert endless.startswith("hi<|eor|>hi<|eor|>")
    assert ct2.generate([prompt, prompt], params, stop=STOPS, seed=1) == ["hi<|eor|>"] * 2
    torch_model = TextModel.load(str(path), device="cpu")
    assert torch_model.generate([prompt], params, stop=STOPS, seed=1) == ["hi<|eor|>"]
    # And the grammar reads it as the reply "hi".
    persona = _persona(max_attempts=1)
    request = _reply("CoopBot", 1, chain=(ChainComment("bob", "tea"),))
    items, _ = make_items([("k", request)], persona, ct2)
    (outcome,) = complete(ct2, Batch.from_items("CoopBot", items), persona, seed=1)
    assert outcome.ok and outcome.text == "hi"


class _SetAfter(threading.Event):
    """An abort event that reads as set from its ``n``-th look on."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.looks = 0
        self.n = n

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= self.n


def test_ctranslate2_stops_between_steps_when_aborted(models_dir: Path, tmp_path: Path) -> None:
    path = _random_gpt2(tmp_path / "random", models_dir)
    model = Ct2Model.load(str(path), cache_dir=tmp_path / "ct2", device="cpu")
    params = SamplingParams(max_new_tokens=40)
    prompts = [grammar.post_prompt("Technology")] * 3
    (first,) = model.generate(prompts[:1], params, stop=(), seed=1)
    assert model.count_tokens(first) > 20  # the control: without an abort it writes on
    abort = _SetAfter(12)
    with pytest.raises(Interrupted):
        model.generate(prompts, params, stop=(), seed=1, abort=abort)
    # It looks once before the first call, then once a row a step: each row ended at the
    # step where it saw the event (three rows: 12 to 14 looks), not 40 steps later (121).
    assert 12 <= abort.looks <= 12 + len(prompts) - 1
    with pytest.raises(Interrupted):
        model.generate(prompts, params, stop=(), seed=1, abort=_SetAfter(1))


class _StopsWorkerOnFirstBatch:
    """The real engine; the first batch handed to it also tells the worker to stop, so the
    abort arrives while that batch is being generated."""

    def __init__(self, inner: Engine, stop: Callable[[], None]) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.queues = inner.queues
        self.stop = stop
        self.batches = 0

    def run(self, persona: Persona, entries: Sequence[Entry], seed: int | None,
            abort: threading.Event) -> list[Any]:
        self.batches += 1
        self.stop()
        return self.inner.run(persona, entries, seed, abort)

    def close(self) -> None:
        self.inner.close()


async def test_an_interrupted_ctranslate2_batch_goes_back_whole(
    storage: Any, models_dir: Path, persona_dir: Path, tmp_path: Path
) -> None:
    path = _random_gpt2(tmp_path / "random", models_dir, n_embd=128)
    add_persona(persona_dir, "LongBot", model=str(path),
                extra="\n[generation]\nmax_new_tokens = 600\nmax_prompt_tokens = 400\n")
    cast = load_cast_strict(persona_dir)
    requests = [_reply("LongBot", i) for i in range(16)]
    for request in requests:
        await storage.queues.send(QUEUE_INTERACTIVE, encode(request))
    inner = make_engine("text", models_dir, device="cpu", max_models=2, max_bytes=1 << 30,
                        convert_dir=tmp_path / "ct2")
    assert isinstance(inner, TextEngine)
    inner.models.get(str(path))  # converted and loaded: the abort lands in generation
    loop = asyncio.get_running_loop()
    workers: list[Worker] = []
    engine = _StopsWorkerOnFirstBatch(
        inner, lambda: loop.call_soon_threadsafe(workers[0].stop))
    settings = msgspec.structs.replace(FAST, visibility_timeout_s=600, finish_within_s=0.0)
    worker = Worker(queues=storage.queues, blobs=None, cast=cast, engine=engine,
                    settings=settings, burst=True)
    workers.append(worker)
    with capture_logs() as logs:
        await asyncio.wait_for(worker.main(), timeout=120)
    assert engine.batches == 1
    assert any(e["event"] == "worker.stopping" for e in logs)
    assert isinstance(inner.models.get(str(path)), Ct2Model)
    assert worker.stats.answered == 0 and worker.stats.failed == 0
    for queue in RESULT_QUEUES:
        assert await storage.queues.receive(queue) == []
    back = await _drain(storage, QUEUE_INTERACTIVE)
    assert sorted(decode_request(b).request_id for b in back) == sorted(
        r.request_id for r in requests)


def test_a_prompt_over_the_context_is_cut_to_the_token_budget(
    models_dir: Path, tmp_path: Path
) -> None:
    model = Ct2Model.load(str(models_dir / "demo" / "CoopBot"), cache_dir=tmp_path / "ct2",
                          device="cpu")
    assert model.context_size == 1024
    persona = _persona(max_attempts=1)
    chain = tuple(ChainComment(f"user{j}", "words and more words " * 30) for j in range(60))
    request = _reply("CoopBot", 0, chain=chain)
    prompt = build_prompt(request, persona, model)
    budget = min(persona.generation.max_prompt_tokens,
                 model.context_size - persona.generation.max_new_tokens)
    assert model.count_tokens(prompt) <= budget
    assert prompt.startswith("<|soss r/Technology|>") and prompt.endswith("|>")
    assert "user59" in prompt and "user0|" not in prompt  # the oldest ancestors went first
    items, failed = make_items([("k", request)], persona, model)
    assert not failed
    (outcome,) = complete(model, Batch.from_items("CoopBot", items), persona, seed=2)
    assert outcome.ok or outcome.error.startswith("invalid output")


def test_shared_prefixes_are_computed_once_and_change_nothing(
    models_dir: Path, tmp_path: Path
) -> None:
    # Greedy decoding (top_k 1) makes outputs comparable: with and without sharing the
    # model must write the very same replies.
    path = str(models_dir / "demo" / "CoopBot")
    shared = Ct2Model.load(path, cache_dir=tmp_path / "ct2", device="cpu",
                           quantization="float32")
    plain = Ct2Model.load(path, cache_dir=tmp_path / "ct2", device="cpu",
                          quantization="float32", share_prefixes=False)
    post = grammar.Post(room="Technology", title="Which laptop should I buy this year " * 4,
                        body="My old one is slow, the battery is gone, and it is heavy. " * 4,
                        url=None, author="alice")
    siblings = [f"reply number {i} about it" for i in range(6)]
    prompts = [grammar.reply_prompt(post, [grammar.ChainEntry("bob", text)], "CoopBot")
               for text in siblings]
    prompts += [grammar.post_prompt("Technology")]  # shares nothing
    params = SamplingParams(top_k=1, max_new_tokens=24)
    a = shared.generate(prompts, params, stop=STOPS, seed=1)
    b = plain.generate(prompts, params, stop=STOPS, seed=1)
    assert a == b
    assert shared.shared_calls >= 1 and plain.shared_calls == 0
    assert shared.memory_bytes > plain.memory_bytes  # the kept prefix state is counted


# --- the int8 quality gate (issue 15, item 6) --------------------------------------------------


def test_int8_stays_within_the_quality_gate_on_a_demo_model(
    models_dir: Path, tmp_path: Path
) -> None:
    source = models_dir / "demo" / "CoopBot"
    int8 = ensure_converted(source, tmp_path / "ct2", "int8")
    fp32 = ensure_converted(source, tmp_path / "ct2", "float32")
    # Perplexity on held-out text in the tag grammar (threads no persona was trained on).
    gate = int8.record["gate"]
    assert abs(gate["int8"] / gate["reference"] - 1) <= 0.03
    assert abs(fp32.record["gate"]["float32"] / gate["reference"] - 1) <= 0.01
    # Valid replies for the same seeded requests: int8 against float32.
    persona = _persona(max_attempts=1)
    requests = [
        _reply("CoopBot", i, post=PostContext(author="alice", title=f"Topic {i % 16}?",
                                              body="hm"))
        for i in range(1024)
    ]
    shares = {}
    for quantization in ("int8", "float32"):
        model = Ct2Model.load(str(source), cache_dir=tmp_path / "ct2", device="cpu",
                              quantization=quantization)
        ok = 0
        for k in range(0, len(requests), 32):
            entries = [(r.request_id, r) for r in requests[k : k + 32]]
            items, _ = make_items(entries, persona, model)
            ok += sum(o.ok for o in complete(model, Batch.from_items("x", items), persona,
                                             seed=17))
        shares[quantization] = ok / len(requests)
        model.close()
    assert shares["float32"] > 0.3  # the control: the demo model does close its tags
    assert abs(shares["int8"] - shares["float32"]) <= 0.05, shares


# --- the launch-free GPU path ----------------------------------------------------------------


def test_the_launch_free_path_is_cuda_only_and_falls_back_to_eager(models_dir: Path) -> None:
    assert graphs.wanted(True, "cuda") and graphs.wanted(True, "cuda:1")
    assert not graphs.wanted(True, "cpu") and not graphs.wanted(False, "cuda")
    assert [graphs.bucket(n) for n in (1, 3, 8, 33, 70)] == [1, 4, 8, 64, 70]
    model = TextModel.load(str(models_dir / "demo" / "CoopBot"), device="cpu")
    assert not model.launch_free  # never selected on a CPU
    # Forced on here with a compiler backend that does not exist: the capture fails in the
    # warm-up, the model is put back to eager generation, says so, and still answers.
    config = graphs.compile_config(backend="no-such-backend")
    config._compile_all_devices = True
    with capture_logs() as logs:
        assert model.enable_launch_free(config) is False
    (failed,) = [e for e in logs if e["event"] == "model.launch_free_failed"]
    assert failed["fallback"] == "eager" and "no-such-backend" in failed["error"]
    assert model.model.generation_config.cache_implementation is None
    (text,) = model.generate([grammar.post_prompt("Technology")], SamplingParams(), stop=STOPS,
                             seed=1)
    assert isinstance(text, str)
