"""Mini dump → dataset → a tiny GPT-2 trained from scratch with simpletransformers → the
worker loads it from the persona draft and answers requests through Azurite."""

from __future__ import annotations

import errno
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from playhouse import ids
from playhouse.commands.personas import check as check_command
from playhouse.config import WorkerSettings
from playhouse.constants import QUEUE_INTERACTIVE, results_queue
from playhouse.dataset.build import BuildOptions, build_dataset
from playhouse.dataset.records import Filters
from playhouse.generation.engines import make_engine
from playhouse.generation.worker import Worker
from playhouse.grammar import ALL_TAGS
from playhouse.messages import ChainComment, GenerationRequest, PostContext, decode_result, encode
from playhouse.personas import load_cast_strict
from playhouse.storage import Storage
from playhouse.training import TrainingError, TrainOptions, publish, tag_blocks, train
from tests.mini_dump import write_dump

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST = WorkerSettings(gather_ms=20, visibility_timeout_s=30, poll_min_s=0.01, poll_max_s=0.05)


def _options(data: Path, out: Path, **kw: object) -> TrainOptions:
    base: dict[str, object] = {
        "data": data, "out": out, "name": "CoopFan", "from_scratch": True,
        "learning_rate": 3e-3, "block_size": 128, "batch_size": 8, "max_steps": 150,
        "eval_every": 50, "patience": 3, "device": "cpu", "progress": False,
        "rooms": ("Technology",), "seed": 3,
    }
    base.update(kw)
    return TrainOptions(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dataset")
    dump = write_dump(folder / "dump")
    build_dataset(BuildOptions(inputs=dump, out=folder / "data", progress=False,
                               filters=Filters.create(["CoopTalk"]), eval_fraction=0.1))
    return folder / "data"


@pytest.fixture(scope="module")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("trained") / "coopfan"
    report = train(_options(dataset, out))
    assert report.model_dir == out / "model"
    assert report.steps >= 150 and report.eval_loss is not None
    yield out


def test_training_writes_a_model_and_a_persona_that_checks(trained: Path) -> None:
    model = trained / "model"
    manifest = json.loads((model / "training.json").read_text())
    assert manifest["status"] == "done" and manifest["persona"] == "CoopFan"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in model.iterdir()}
    assert not (model / "optimizer.pt").exists()
    assert not (trained / "model.partial").exists()
    out = io.StringIO()
    assert check_command(trained, out) == 0, out.getvalue()
    assert "CoopFan" in out.getvalue()
    checkpoints = sorted(p.name for p in (trained / "checkpoints").glob("checkpoint-*"))
    assert 1 <= len(checkpoints) <= 2  # pruned to --keep-checkpoints


def test_tags_survive_into_training_blocks(trained: Path, dataset: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(trained / "model"))
    for tag in ALL_TAGS:
        assert len(tokenizer.encode(tag, add_special_tokens=False)) == 1, tag
        assert tag not in tokenizer.all_special_tokens
    blocks = tag_blocks(tokenizer, dataset / "train.txt", 128)
    assert len(blocks) > 10 and all(len(b) == 128 for b in blocks)
    ids_seen = {int(i) for block in blocks for i in block}
    for tag in ("<|soss", "<|sot|>", "<|eost|>", "<|sor", "|>", "<|eor|>"):
        assert tokenizer.convert_tokens_to_ids(tag) in ids_seen, tag
    text = tokenizer.decode(blocks[0])
    assert "<|" in text and "|>" in text


async def test_worker_serves_the_trained_persona(
    trained: Path, storage: Storage, tmp_path: Path
) -> None:
    personas = tmp_path / "personas"
    personas.mkdir()
    shutil.copy(trained / "persona.toml", personas / "coopfan.toml")
    cast = load_cast_strict(personas)
    requests = [
        GenerationRequest(
            request_id=ids.new_id(), kind="reply", persona="CoopFan", room="Technology",
            queue=QUEUE_INTERACTIVE, thread_id=ids.new_id(),
            post=PostContext(author="alice", title=f"coffee tea bean {i}", body="roast cup"),
            chain=(ChainComment("bob", "latte mocha brew"),) * (i % 2),
        )
        for i in range(4)
    ]
    for request in requests:
        await storage.queues.send(request.queue, encode(request))
    engine = make_engine("text", tmp_path / "models", device="cpu", max_models=1,
                         max_bytes=1 << 30)
    worker = Worker(queues=storage.queues, blobs=storage.blobs, cast=cast, engine=engine,
                    settings=FAST, burst=True, seed=5)
    await worker.main()
    results = []
    while batch := await storage.queues.receive(results_queue(QUEUE_INTERACTIVE),
                                                 visibility_timeout=60):
        for message in batch:
            results.append(decode_result(message.content))
            await storage.queues.delete(message)
    assert sorted(r.request_id for r in results) == sorted(r.request_id for r in requests)
    assert all("model unavailable" not in r.error for r in results)
    ok = [r for r in results if r.ok]
    assert ok, [r.error for r in results]
    for result in ok:
        assert result.text.strip() and "<|" not in result.text and "|>" not in result.text


def test_existing_output_refused_then_resumed(trained: Path, dataset: Path) -> None:
    with pytest.raises(TrainingError, match="--resume"):
        train(_options(dataset, trained))
    before = json.loads((trained / "model" / "training.json").read_text())["steps"]
    report = train(_options(dataset, trained, resume=True, max_steps=170))
    assert report.resumed_from is not None and report.resumed_from.startswith("checkpoint-")
    assert report.steps > before
    assert json.loads((trained / "model" / "training.json").read_text())["steps"] == report.steps


def test_disk_full_publishes_nothing(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(source: Path, target: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(publish, "_copy_file", full)
    out = tmp_path / "full"
    with pytest.raises(TrainingError, match=r"No space left on device.*no model was published"):
        train(_options(dataset, out, max_steps=3, eval_every=0))
    assert not (out / "model").exists() and not (out / "model.partial").exists()
    assert not (out / "persona.toml").exists()


def test_bad_starts_are_refused(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="run `playhouse dataset build` first"):
        train(_options(tmp_path / "nowhere", tmp_path / "o"))
    with pytest.raises(TrainingError, match="persona name"):
        train(_options(dataset, tmp_path / "o", name="x"))
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(_options(dataset, tmp_path / "o2", resume=True))
    with pytest.raises(TrainingError, match="cannot load the base model"):
        train(_options(dataset, tmp_path / "o3", from_scratch=False,
                       base=str(tmp_path / "no-model")))


def test_sample_prints_threads_from_the_draft(trained: Path, tmp_path: Path) -> None:
    from playhouse.sampling import SampleOptions, sample

    out = io.StringIO()
    code = sample(SampleOptions(persona="coopfan", personas_dir=trained,
                                models_dir=tmp_path, threads=2, replies=2, seed=4,
                                device="cpu"), out)
    text = out.getvalue()
    assert code in (0, 1)
    assert text.startswith("u/CoopFan in r/Technology")
    assert "=== thread 1 ===" in text and "=== thread 2 ===" in text
    assert ("# " in text) or ("[post failed" in text)
    accepted, asked = text.rstrip("\n").rsplit("\n", 1)[-1].removeprefix("accepted = ").split("/")
    assert 0 <= int(accepted) <= int(asked) and int(asked) >= 4


def test_an_ssi_bot_dataset_trains_an_ssi_bot_persona(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("ssi-dataset")
    build_dataset(BuildOptions(inputs=write_dump(folder / "dump"), out=folder / "data",
                               progress=False, filters=Filters.create(["CoopTalk"]),
                               eval_fraction=0.1, grammar="ssi-bot"))
    report = train(_options(folder / "data", tmp_path / "ssi", max_steps=3, eval_every=0))
    draft = report.persona_file.read_text(encoding="utf-8")
    assert 'grammar = "ssi-bot"' in draft and "repetition_penalty = 1.008" in draft
    assert json.loads((report.model_dir / "training.json").read_text())["grammar"] == "ssi-bot"
    persona = load_cast_strict(report.persona_file.parent).personas["CoopFan"]
    assert persona.grammar == "ssi-bot" and persona.generation.max_new_tokens == 624
    tokenizer = AutoTokenizer.from_pretrained(str(report.model_dir))
    assert all(len(tokenizer.encode(tag, add_special_tokens=False)) > 1
               for tag in ("<|sot|>", "<|sost|>", "<|eoss|>"))
    # Told another grammar than the one its lines are in, training refuses to start.
    with pytest.raises(TrainingError, match="in grammar 'playhouse': malformed line"):
        train(_options(folder / "data", tmp_path / "wrong", grammar="playhouse"))
