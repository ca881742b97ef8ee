"""``dataset build`` end to end on the generated mini dump: exact examples for the
hand-checked threads, the split, the stats, and every bad input the issue lists."""

from __future__ import annotations

import errno
import io
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import zstandard

from playhouse.dataset import DatasetError
from playhouse.dataset import build as build_module
from playhouse.dataset.build import BuildOptions, build_dataset
from playhouse.dataset.readers import Truncated
from playhouse.dataset.records import Filters
from playhouse.grammar import parse_training_line
from tests.mini_dump import EXPECTED_1, EXPECTED_2, HEADER_1, HEADER_2, write_dump


def _options(inputs: list[Path], out: Path, **kw: Any) -> BuildOptions:
    filters = Filters.create(["CoopTalk"], min_score=0)
    return BuildOptions(inputs=inputs, out=out, filters=filters, progress=False, **kw)


def _lines(out: Path) -> tuple[list[str], list[str]]:
    train = (out / "train.txt").read_text(encoding="utf-8").splitlines()
    evals = (out / "eval.txt").read_text(encoding="utf-8").splitlines()
    return train, evals


def _all(out: Path) -> list[str]:
    train, evals = _lines(out)
    return train + evals


@pytest.fixture
def zst_dump(tmp_path: Path) -> list[Path]:
    return write_dump(tmp_path / "dump", fmt="zst")


def test_hand_checked_threads_give_exactly_these_examples(
    zst_dump: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    stats = build_dataset(_options(zst_dump, out))
    train, evals = _lines(out)
    every = train + evals
    assert {line for line in every if line.startswith(HEADER_1)} == EXPECTED_1
    assert {line for line in every if line.startswith(HEADER_2)} == EXPECTED_2
    # Thread ddd4: the post body was cut to 2000 characters; its 12k-character comment and
    # its removed comment gave nothing.
    long_one = [line for line in every if "<|sot|>Long one<|eot|>" in line]
    body = ("word " * 400).rstrip()
    assert long_one == [f"<|soss r/CoopTalk|><|sot|>Long one<|eot|><|sost|>{body}<|eost|>"]
    assert not [line for line in every if "Elsewhere" in line or "Removed post" in line]
    assert not [line for line in every if "reply to deleted" in line or "never existed" in line]
    # Every line is one example that the grammar reads back, none repeated.
    assert len(set(every)) == len(every) == stats.examples
    for line in every:
        parse_training_line(line)
        assert "\n" not in line and "\r" not in line
    assert stats.duplicates == 1
    assert stats.comments_without_post == 1
    assert stats.orphans >= 2
    assert stats.skipped["deleted"] >= 3
    assert stats.skipped["too_long"] == 1
    assert stats.skipped["other_subreddit"] > 0


def test_split_is_by_thread_and_shuffled(zst_dump: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    stats = build_dataset(_options(zst_dump, out, eval_fraction=0.2))
    train, evals = _lines(out)
    assert stats.train_examples == len(train) and stats.eval_examples == len(evals)
    assert 0 < len(evals) < len(train)

    def header(line: str) -> str:
        return line.split("<|eost|>")[0].split("<|eol|>")[0]

    assert not {header(x) for x in train} & {header(x) for x in evals}
    # Shuffled: a thread's examples do not sit together in file order.
    heads = [header(x) for x in train]
    runs = sum(1 for a, b in itertools.pairwise(heads) if a == b)
    assert runs < len(heads) // 3


def test_stats_json_and_report(zst_dump: list[Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    from playhouse.cli import _parser
    from playhouse.commands import dataset
    from playhouse.config import Settings

    args = _parser().parse_args(["dataset", "build", *map(str, zst_dump), "--subreddit",
                                 "r/cooptalk", "--out", str(out), "--min-score", "0",
                                 "--no-progress"])
    assert dataset.main(args, Settings()) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["examples"] == stats["train_examples"] + stats["eval_examples"] > 300
    assert stats["threads"] == stats["per_subreddit"]["CoopTalk"]["threads"]
    assert stats["per_subreddit"]["CoopTalk"]["examples"] == stats["examples"]
    assert sum(stats["length_histogram"].values()) == stats["examples"]
    assert stats["tokens"] > 0
    text = capsys.readouterr().out
    assert "r/CoopTalk" in text and "examples" in text and "0-63" in text
    assert sorted(p.name for p in out.iterdir()) == ["eval.txt", "stats.json", "train.txt"]


def test_zst_ndjson_and_folder_inputs_give_the_same_dataset(tmp_path: Path) -> None:
    zst = write_dump(tmp_path / "zst", fmt="zst")
    nd = write_dump(tmp_path / "nd", fmt="ndjson", names=("CoopTalk_submissions",
                                                          "CoopTalk_comments"))
    jl = write_dump(tmp_path / "jl", fmt="jsonl")
    build_dataset(_options(zst, tmp_path / "a"))
    build_dataset(_options(list(reversed(nd)), tmp_path / "b"))
    build_dataset(_options([tmp_path / "jl"], tmp_path / "c"))
    assert len(jl) == 2
    assert _lines(tmp_path / "a") == _lines(tmp_path / "b") == _lines(tmp_path / "c")


def test_filters_dates_and_authors(zst_dump: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    filters = Filters.create(["CoopTalk"], excluded_authors=["bob", "AutoModerator"],
                             until=1_600_000_000 + 15)
    build_dataset(BuildOptions(inputs=zst_dump, out=out, filters=filters, progress=False))
    every = _all(out)
    assert HEADER_1 in every and HEADER_2 + "<|sor u/grace|>meh<|eor|>" in every
    assert not [line for line in every if line.endswith("<|eor|>") and "u/bob|>" in
                line.rsplit("<|so", 1)[-1]]
    assert all("user" not in line for line in every)  # the filler is later than --until


def test_very_long_chain_drops_oldest_ancestors(tmp_path: Path) -> None:
    posts = [{"id": "p1", "subreddit": "CoopTalk", "author": "op", "title": "deep",
              "selftext": "", "is_self": True, "created_utc": 1, "score": 1}]
    comments = [{"id": f"x{i}", "link_id": "t3_p1",
                 "parent_id": "t3_p1" if i == 0 else f"t1_x{i - 1}",
                 "author": f"u{i % 3}", "body": f"{i} " + "y" * 300, "created_utc": 2 + i,
                 "score": 1, "subreddit": "CoopTalk"} for i in range(40)]
    path = tmp_path / "deep.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in posts + comments), encoding="utf-8")
    stats = build_dataset(_options([path], tmp_path / "out", max_example_chars=2000))
    every = _all(tmp_path / "out")
    assert len(every) == 41 and stats.shortened > 0
    assert all(len(line) <= 2000 for line in every)
    deepest = next(line for line in every if "39 yyy" in line)
    parsed = parse_training_line(deepest)
    assert parsed.comments[-1].text.startswith("39 ")
    assert [c.text.split()[0] for c in parsed.comments] == [str(i) for i in range(34, 40)]


# --- bad input ---------------------------------------------------------------------------


def test_truncated_zst_is_an_error_naming_the_file(zst_dump: list[Path], tmp_path: Path) -> None:
    comments = zst_dump[1]
    comments.write_bytes(comments.read_bytes()[:-40])
    out = tmp_path / "out"
    with pytest.raises(Truncated, match=r"RC_2020-09\.zst: truncated"):
        build_dataset(_options(zst_dump, out))
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["dump"]  # no partial folder left
    stats = build_dataset(_options(zst_dump, out, allow_truncated=True))
    assert stats.examples > 0


def test_garbage_named_zst_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "RS_bad.zst"
    bad.write_bytes(b"this is not zstandard at all" * 10)
    with pytest.raises(DatasetError, match=r"RS_bad\.zst: corrupt zstandard"):
        build_dataset(_options([bad], tmp_path / "out"))


def test_lines_that_are_not_json_or_have_wrong_types_are_skipped_and_counted(
    tmp_path: Path,
) -> None:
    good_post = {"id": "p1", "subreddit": "CoopTalk", "author": "op", "title": "hi",
                 "selftext": "yo", "is_self": True, "created_utc": "1600000000", "score": 2}
    lines = [
        json.dumps(good_post),
        "{this is not json",
        json.dumps({**good_post, "id": "p2", "title": 42}),  # wrong type
        json.dumps({**good_post, "id": "p3", "score": "many"}),  # wrong type
        json.dumps({**good_post, "id": "p4", "created_utc": "yesterday"}),
        json.dumps([1, 2, 3]),
        json.dumps({"id": "p5", "subreddit": "CoopTalk"}),  # neither post nor comment
        json.dumps({"id": "c1", "link_id": "t3_p1", "parent_id": "t3_p1", "author": "al",
                    "body": 7, "subreddit": "CoopTalk", "created_utc": 1}),
        "\xff\xfe".encode("latin-1").decode("latin-1"),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stats = build_dataset(_options([path], tmp_path / "out"))
    assert stats.examples == 1
    assert stats.skipped["not_json"] == 2
    assert stats.skipped["bad_record"] == 6


def test_no_matching_subreddit_is_an_error(zst_dump: list[Path], tmp_path: Path) -> None:
    filters = Filters.create(["NoSuchSub"])
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=r"no record from r/nosuchsub .*other subreddits"):
        build_dataset(BuildOptions(inputs=zst_dump, out=out, filters=filters, progress=False))
    assert not out.exists()


def test_comments_without_submissions_is_an_error(zst_dump: list[Path], tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="add the submission dumps"):
        build_dataset(_options([zst_dump[1]], tmp_path / "out"))


def test_existing_output_is_refused_unless_force(zst_dump: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="already exists; pass --force"):
        build_dataset(_options(zst_dump, out))
    assert (out / "keep.txt").read_text() == "mine"
    build_dataset(_options(zst_dump, out, force=True))
    assert not (out / "keep.txt").exists() and (out / "train.txt").stat().st_size > 0


def test_disk_full_leaves_no_output(
    zst_dump: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Full(io.RawIOBase):
        def __init__(self) -> None:
            self.written = 0

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            self.written += len(data)
            if self.written > 2000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return len(data)

    def full(path: Path) -> BinaryIO:
        return io.BufferedWriter(Full(), buffer_size=512)  # type: ignore[return-value]

    monkeypatch.setattr(build_module, "open_output", full)
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=r"No space left on device.*nothing was written"):
        build_dataset(_options(zst_dump, out))
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["dump"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line in a child process (it configures logging globally)."""
    return subprocess.run(
        [sys.executable, "-m", "playhouse", "--config", "/dev/null", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_cli_reports_errors_in_one_line(zst_dump: list[Path], tmp_path: Path) -> None:
    done = _cli("dataset", "build", str(zst_dump[0]), "--subreddit", "Nope", "--out",
                str(tmp_path / "o"), "--no-progress")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("playhouse: no record from r/nope")
    done = _cli("dataset", "build", str(tmp_path / "missing.zst"), "--subreddit", "CoopTalk",
                "--out", str(tmp_path / "o"), "--no-progress")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].endswith("missing.zst: no such file or folder")
    done = _cli("dataset", "build", str(zst_dump[0]), "--subreddit", "CoopTalk", "--out",
                str(tmp_path / "o"), "--since", "last week")
    assert done.returncode == 1 and "expected a date written YYYY-MM-DD" in done.stderr


def test_not_a_dump_name_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("{}")
    with pytest.raises(DatasetError, match="not a dump file name"):
        build_dataset(_options([other], tmp_path / "out"))


def test_multi_frame_zst_is_read_whole(tmp_path: Path) -> None:
    post = {"id": "p1", "subreddit": "CoopTalk", "author": "op", "title": "one",
            "selftext": "", "is_self": True, "created_utc": 1, "score": 1}
    frames = b"".join(
        zstandard.ZstdCompressor().compress((json.dumps({**post, "id": f"p{i}"}) + "\n").encode())
        for i in range(3)
    )
    (tmp_path / "RS_multi.zst").write_bytes(frames)
    stats = build_dataset(_options([tmp_path / "RS_multi.zst"], tmp_path / "out"))
    assert stats.submissions == 3
