"""``dataset build --grammar``: the same threads written in ssi-bot's formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from playhouse.dataset import DatasetError
from playhouse.dataset.build import BuildOptions, build_dataset
from playhouse.dataset.records import Filters
from playhouse.grammar import SSI_BOT, SSI_BOT_2021, detect
from tests.mini_dump import write_dump

SSI_HEADER = "<|soss r/CoopTalk|><|sot|>Best coffee?<|sost|>I need beans.\\nAny tips?"
END = "<|eoss|><|endoftext|>"
SSI_EXPECTED = {
    SSI_HEADER + END,
    SSI_HEADER + "<|sor|>Try & see <b>" + END,
    SSI_HEADER + "<|sor u/bob|>Try & see <b><|soopr|>Thanks!" + END,
    SSI_HEADER + "<|sor u/bob|>Try & see <b><|soopr u/alice|>Thanks!<|soocr|>No problem" + END,
    SSI_HEADER + "<|sor u/AutoModerator|>Rules!<|sor|>ok mod" + END,
}
"""The mini dump's thread aaa1 as ssi-bot's output script writes it (tests/mini_dump.py
has the same thread in the playhouse grammar)."""


def _build(dump: list[Path], out: Path, **kw: Any) -> list[str]:
    filters = Filters.create(["CoopTalk"], min_score=0)
    build_dataset(BuildOptions(inputs=dump, out=out, filters=filters, progress=False, **kw))
    return [line for name in ("train.txt", "eval.txt")
            for line in (out / name).read_text(encoding="utf-8").splitlines()]


def test_ssi_bot_examples(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "dump")
    every = _build(dump, tmp_path / "out", grammar="ssi-bot")
    assert {line for line in every if line.startswith(SSI_HEADER)} == SSI_EXPECTED
    link = [line for line in every if "Look at this" in line]
    # A raw title: its backslash is written once (the playhouse grammar doubles it).
    assert link and all(line.startswith(
        "<|sols r/CoopTalk|><|sot|>Look at this \\ link<|sol|><|sor") for line in link)
    assert all(line.endswith("<|eols|><|endoftext|>") for line in link)
    for line in every:
        SSI_BOT.parse_training_line(line)
    assert detect(every) is SSI_BOT
    stats = json.loads((tmp_path / "out" / "stats.json").read_text(encoding="utf-8"))
    assert stats["grammar"] == "ssi-bot"


def test_ssi_bot_2021_examples_through_the_cli_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from playhouse.cli import _parser
    from playhouse.commands import dataset
    from playhouse.config import Settings

    dump = write_dump(tmp_path / "dump")
    out = tmp_path / "out"
    args = _parser().parse_args(["dataset", "build", *map(str, dump), "--subreddit", "CoopTalk",
                                 "--out", str(out), "--min-score", "0", "--no-progress",
                                 "--grammar", "ssi-bot-2021"])
    assert dataset.main(args, Settings()) == 0
    assert f"dataset written to {out} (grammar ssi-bot-2021)" in capsys.readouterr().out
    every = [line for name in ("train.txt", "eval.txt")
             for line in (out / name).read_text(encoding="utf-8").splitlines()]
    header = "<|soss|><|sot|>Best coffee?<|eot|><|sost|>I need beans.\\nAny tips?<|eost|>"
    assert header + "<|sor|>Try & see <b><|eor|><|sor|>Thanks!<|eor|>" + END in every
    assert detect(every) is SSI_BOT_2021


def test_long_chains_drop_their_oldest_comments_in_any_grammar(tmp_path: Path) -> None:
    posts = [{"id": "p1", "subreddit": "CoopTalk", "author": "op", "title": "deep",
              "selftext": "", "is_self": True, "created_utc": 1, "score": 1}]
    comments = [{"id": f"x{i}", "link_id": "t3_p1",
                 "parent_id": "t3_p1" if i == 0 else f"t1_x{i - 1}",
                 "author": f"u{i % 3}", "body": f"{i} " + "y" * 300, "created_utc": 2 + i,
                 "score": 1, "subreddit": "CoopTalk"} for i in range(40)]
    path = tmp_path / "deep.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in posts + comments), encoding="utf-8")
    every = _build([path], tmp_path / "out", grammar="ssi-bot", max_example_chars=2000)
    assert len(every) == 41 and all(len(line) <= 2000 for line in every)
    deepest = SSI_BOT.parse_training_line(next(line for line in every if "39 yyy" in line))
    assert [c.text.split()[0] for c in deepest.comments] == [str(i) for i in range(34, 40)]
    assert deepest.comments[-1].author == "" and deepest.comments[0].author == "u1"


def test_an_unknown_grammar_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="--grammar: unknown grammar 'ssi'"):
        _build(write_dump(tmp_path / "dump"), tmp_path / "out", grammar="ssi")
    assert not (tmp_path / "out").exists()
