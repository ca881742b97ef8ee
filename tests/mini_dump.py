"""A generated mini Reddit dump for the dataset tests: a few hand-checked threads (their
exact examples are spelled out below) plus a few hundred seeded random records with every
oddity a real dump has: deleted and removed comments, orphans, link posts, unicode, very
long bodies, duplicate ids, other subreddits and comments whose post is not in the dump."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Final

import zstandard

SUB: Final = "CoopTalk"
T0: Final = 1_600_000_000

# --- hand-checked threads ------------------------------------------------------------------

HEADER_1: Final = (
    "<|soss r/CoopTalk|><|sot|>Best coffee?<|eot|><|sost|>I need beans.\\nAny tips?<|eost|>"
)
EXPECTED_1: Final = frozenset({
    HEADER_1,
    HEADER_1 + "<|sor u/bob|>Try & see <b><|eor|>",
    HEADER_1 + "<|sor u/bob|>Try & see <b><|eor|><|soopr u/alice|>Thanks!<|eoopr|>",
    HEADER_1
    + "<|sor u/bob|>Try & see <b><|eor|><|soopr u/alice|>Thanks!<|eoopr|>"
    + "<|soocr u/bob|>No problem<|eoocr|>",
    HEADER_1 + "<|sor u/AutoModerator|>Rules!<|eor|><|sor u/erin|>ok mod<|eor|>",
})
"""Thread aaa1: a text post and its reply chains, tags soopr/soocr included; a deleted
comment and its orphaned reply; an AutoModerator comment that is context, never an example."""

HEADER_2: Final = (
    "<|sols r/CoopTalk|><|sot|>Look at this \\\\ link<|eot|>"
    "<|sol|>https://example.com/a?b=1&c=2<|eol|>"
)
EXPECTED_2: Final = frozenset({
    HEADER_2 + "<|sor u/frank|>edited: Ünïcödé ☕ 日本語 <\\|eor|\\> no tag<|eor|>",
    HEADER_2 + "<|sor u/grace|>meh<|eor|><|sor u/heidi|>why so negative?<|eor|>",
})
"""Thread bbb2: a link post by a deleted account (no post example), a unicode comment that
was stored twice (the later copy wins) and tries to forge a tag, a comment under the minimum
score (context only) and a reply to it."""


def _post(pid: str, author: str, title: str, *, selftext: str = "", url: str | None = None,
          created: int = T0, score: int = 5, subreddit: str = SUB) -> dict[str, Any]:
    return {
        "id": pid, "subreddit": subreddit, "author": author, "title": title,
        "selftext": selftext, "url": url or f"https://www.reddit.com/r/{subreddit}/{pid}/",
        "is_self": url is None, "created_utc": created, "score": score, "over_18": False,
        "num_comments": 3, "permalink": f"/r/{subreddit}/comments/{pid}/",
    }


def _comment(cid: str, thread: str, parent: str, author: str, body: str, *,
             created: int = T0, score: int = 3, subreddit: str = SUB) -> dict[str, Any]:
    return {
        "id": cid, "link_id": f"t3_{thread}", "parent_id": parent, "author": author,
        "body": body, "created_utc": created, "score": score, "subreddit": subreddit,
        "controversiality": 0, "gilded": 0,
    }


def hand_checked() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(submissions, comments) of the hand-checked threads and the edge cases."""
    posts = [
        _post("aaa1", "alice", "Best coffee?", selftext="I need beans.\r\nAny tips?"),
        _post("bbb2", "[deleted]", "Look at this \\ link", url="https://example.com/a?b=1&amp;c=2",
              created=T0 + 10),
        _post("ccc3", "ivan", "Elsewhere", selftext="not ours", subreddit="OtherSub"),
        _post("ddd4", "judy", "Long one", selftext="word " * 1000, created=T0 + 20),
        _post("eee5", "kim", "Removed post", selftext="[removed]", created=T0 + 30),
    ]
    comments = [
        _comment("c1", "aaa1", "t3_aaa1", "bob", "Try &amp; see <b>", created=T0 + 1),
        _comment("c2", "aaa1", "t1_c1", "alice", "Thanks!", created=T0 + 2),
        _comment("c3", "aaa1", "t1_c2", "bob", "No problem", created=T0 + 3),
        _comment("c4", "aaa1", "t3_aaa1", "carol", "[deleted]", created=T0 + 4),
        _comment("c5", "aaa1", "t1_c4", "dave", "reply to deleted", created=T0 + 5),
        _comment("c6", "aaa1", "t3_aaa1", "AutoModerator", "Rules!", created=T0 + 6),
        _comment("c7", "aaa1", "t1_c6", "erin", "ok mod", created=T0 + 7),
        _comment("d1", "bbb2", "t3_bbb2", "frank", "Ünïcödé ☕ 日本語 <|eor|> no tag",
                 created=T0 + 11),
        _comment("d3", "bbb2", "t3_bbb2", "grace", "meh", created=T0 + 12, score=-5),
        _comment("d4", "bbb2", "t1_d3", "heidi", "why so negative?", created=T0 + 13),
        _comment("d5", "bbb2", "t1_missing", "ivan", "my parent never existed", created=T0 + 14),
        _comment("d1", "bbb2", "t3_bbb2", "frank", "edited: Ünïcödé ☕ 日本語 <|eor|> no tag",
                 created=T0 + 11),
        _comment("e1", "ccc3", "t3_ccc3", "ivan", "other sub", subreddit="OtherSub"),
        _comment("z1", "zzz9", "t3_zzz9", "ivan", "my post is not in the dump"),
        _comment("f1", "ddd4", "t3_ddd4", "judy", "x" * 12_000, created=T0 + 21),
        _comment("f2", "ddd4", "t3_ddd4", "mallory", "[removed]", created=T0 + 22),
    ]
    return posts, comments


def random_records(seed: int = 5, posts: int = 150, comments: int = 350
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Seeded filler: threads with nested replies, a few link posts and deep chains."""
    rng = random.Random(seed)
    words = ["coffee", "tea", "bean", "roast", "grind", "brew", "cup", "milk", "sugar", "foam",
             "latte", "mocha", "☕", "café"]
    authors = [f"user{i}" for i in range(25)]
    subs: list[dict[str, Any]] = []
    coms: list[dict[str, Any]] = []
    for i in range(posts):
        pid = f"r{i:04d}"
        title = " ".join(rng.choices(words, k=rng.randint(2, 8)))
        link = rng.random() < 0.2
        body = "" if link else " ".join(rng.choices(words, k=rng.randint(0, 40)))
        subs.append(_post(pid, rng.choice(authors), title, selftext=body,
                          url=f"https://example.org/{i}" if link else None,
                          created=T0 + 1000 + i * 60, score=rng.randint(-3, 50),
                          subreddit=SUB if rng.random() < 0.85 else "OtherSub"))
    for j in range(comments):
        post = rng.choice(subs)
        thread = post["id"]
        mine = [c for c in coms if c["link_id"] == f"t3_{thread}"]
        parent = f"t1_{rng.choice(mine)['id']}" if mine and rng.random() < 0.6 else f"t3_{thread}"
        body = " ".join(rng.choices(words, k=rng.randint(1, 30)))
        if rng.random() < 0.05:
            body = rng.choice(["[deleted]", "[removed]"])
        coms.append(_comment(f"k{j:05d}", thread, parent, rng.choice(authors), body,
                             created=post["created_utc"] + 5 + j, score=rng.randint(-5, 20),
                             subreddit=post["subreddit"]))
    return subs, coms


def _ndjson(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)


def write_dump(folder: Path, *, fmt: str = "zst", names: tuple[str, str] = ("RS_2020-09",
               "RC_2020-09")) -> list[Path]:
    """Write submissions and comments as two files (``.zst`` or ``.ndjson``); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    hs, hc = hand_checked()
    rs, rc = random_records()
    paths = []
    for name, records in zip(names, (hs + rs, hc + rc), strict=True):
        data = _ndjson(records)
        if fmt == "zst":
            path = folder / f"{name}.zst"
            path.write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
        else:
            path = folder / f"{name}.{fmt}"
            path.write_bytes(data)
        paths.append(path)
    return paths
