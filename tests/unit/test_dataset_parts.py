"""The dataset pieces on their own: readers for every compression, the shuffle buckets,
record cleaning and thread walking."""

from __future__ import annotations

import bz2
import gzip
import lzma
import random
from pathlib import Path

import pytest

from playhouse.dataset import DatasetError
from playhouse.dataset.buckets import Buckets, shuffled
from playhouse.dataset.readers import Truncated, read_lines, split_lines
from playhouse.dataset.records import DumpRecord, Filters, Reply, Skip, unescape_entities
from playhouse.dataset.threads import ThreadCounts, thread_examples

LINES = [f'{{"n": {i}, "text": "caf\u00e9 {i}"}}'.encode() for i in range(5000)]
DATA = b"\n".join(LINES) + b"\n"


@pytest.mark.parametrize(
    ("suffix", "pack"),
    [(".xz", lzma.compress), (".bz2", bz2.compress), (".gz", gzip.compress),
     (".ndjson", lambda d: d)],
)
def test_every_compression_reads_the_same_lines(tmp_path: Path, suffix: str, pack: object) -> None:
    path = tmp_path / f"RC_x{suffix}"
    path.write_bytes(pack(DATA))  # type: ignore[operator]
    seen: list[int] = []
    assert list(read_lines(path, progress=seen.append)) == LINES
    assert sum(seen) == path.stat().st_size


@pytest.mark.parametrize(("suffix", "pack"), [(".xz", lzma.compress), (".gz", gzip.compress)])
def test_truncated_streams_are_reported(tmp_path: Path, suffix: str, pack: object) -> None:
    path = tmp_path / f"RC_x{suffix}"
    path.write_bytes(pack(DATA)[:-30])  # type: ignore[operator]
    with pytest.raises(Truncated, match="truncated"):
        list(read_lines(path))
    assert len(list(read_lines(path, allow_truncated=True))) > 4000


def test_corrupt_gzip_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "RC_x.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match=r"RC_x\.gz: corrupt"):
        list(read_lines(path))


def test_split_lines_joins_chunks_and_skips_blanks() -> None:
    chunks = [b'{"a"', b': 1}\n\n  \n{"b": 2', b"}\n{", b'"c": 3}']
    assert list(split_lines(chunks)) == [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}']


def test_oversized_bucket_is_split_and_still_a_permutation(tmp_path: Path) -> None:
    buckets = Buckets(tmp_path, "t", 1)
    lines = [f"line {i} {'x' * 50}".encode() for i in range(3000)]
    for line in lines:
        buckets.add(0, line)
    buckets.close()
    out = list(shuffled(buckets.paths[0], random.Random(1), max_bytes=20_000))
    assert sorted(out) == sorted(lines) and out != lines
    assert list(tmp_path.iterdir()) == []


def test_entities_and_filters() -> None:
    assert unescape_entities("a &amp;lt; b &gt; c &amp; d") == "a &lt; b > c & d"
    filters = Filters.create(["r/Coffee"], min_score=2)
    base = {"id": "c1", "subreddit": "coffee", "link_id": "t3_p", "parent_id": "t3_p",
            "author": "al", "body": "hi &amp; bye", "created_utc": 5, "score": 1}
    reply = filters.judge(DumpRecord(**base))  # type: ignore[arg-type]
    assert isinstance(reply, Reply)
    assert (reply.body, reply.thread, reply.trainable) == ("hi & bye", "p", False)
    for change, reason in [({"subreddit": "tea"}, "other_subreddit"),
                           ({"body": "[removed]"}, "deleted"),
                           ({"author": "[deleted]"}, "deleted"),
                           ({"author": "bad name!"}, "bad_author")]:
        with pytest.raises(Skip) as caught:
            filters.judge(DumpRecord(**{**base, **change}))  # type: ignore[arg-type]
        assert caught.value.reason == reason


def test_cycles_and_orphans_never_loop(tmp_path: Path) -> None:
    from playhouse.dataset.records import Submission

    post = Submission(id="p", subreddit="Coffee", author="op", created=0, title="t", body="",
                      url=None, trainable=False)
    replies = [
        Reply(id="a", thread="p", parent="t1_b", author="x", created=1, body="a", trainable=True),
        Reply(id="b", thread="p", parent="t1_a", author="y", created=2, body="b", trainable=True),
        Reply(id="c", thread="p", parent="t3_p", author="z", created=3, body="c", trainable=True),
    ]
    counts = ThreadCounts()
    examples = list(thread_examples(post, replies, max_chars=1000, counts=counts))
    assert examples == ["<|soss r/Coffee|><|sot|>t<|eot|><|sost|><|eost|><|sor u/z|>c<|eor|>"]
    assert counts.orphans == 2
