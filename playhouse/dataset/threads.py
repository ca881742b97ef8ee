"""Rebuild a thread from its submission and comments, and write its training examples.

A thread yields one example per comment chain: for every trainable comment, the post
header, the comment's ancestors (oldest first) and the comment itself, all written by the
chosen grammar's :meth:`~playhouse.grammar.Grammar.training_line` (the playhouse grammar's by
default), the same value that builds inference prompts. A trainable post also yields the
header alone (what a new-post generation writes).

Comments are walked depth-first from the post, siblings by time then id, so a thread always
gives the same examples in the same order. A comment whose parent is missing (deleted,
removed, filtered out, or never in the dump) is an orphan: it and its replies are left out.
An example longer than ``max_chars`` loses its oldest ancestors, exactly as an inference
prompt does (the tags stay the ones chosen on the full chain); if the header and the
comment alone are still too long, the comment is not an example.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from playhouse.dataset.records import Reply, Submission
from playhouse.grammar import PLAYHOUSE, ChainEntry, Grammar, Post


@dataclass
class ThreadCounts:
    """What one thread contributed."""

    post_examples: int = 0
    reply_examples: int = 0
    orphans: int = 0
    """Comments whose parent chain does not reach the post."""
    shortened: int = 0
    """Examples that lost ancestors to ``max_chars``."""
    too_long: int = 0
    """Comments left out because header plus comment exceed ``max_chars``."""


def to_post(submission: Submission) -> Post:
    return Post(
        room=submission.subreddit,
        title=submission.title,
        body=submission.body,
        url=submission.url,
        author=submission.author,
    )


def _fit(
    grammar: Grammar, post: Post, path: Sequence[ChainEntry], max_chars: int
) -> tuple[str | None, bool]:
    """The example for ``path`` within ``max_chars`` and whether ancestors were dropped."""
    for dropped in range(len(path)):
        line = grammar.training_line(post, path, drop_oldest=dropped)
        if len(line) <= max_chars:
            return line, dropped > 0
    return None, False


def thread_examples(
    submission: Submission,
    replies: Sequence[Reply],
    *,
    max_chars: int,
    counts: ThreadCounts | None = None,
    grammar: Grammar = PLAYHOUSE,
) -> Iterator[str]:
    """Every example of one thread, in a stable order, written in ``grammar``.

    ``replies`` are this thread's comments, unique by id. ``counts`` (when given) is filled
    in as examples are produced.
    """
    counts = counts if counts is not None else ThreadCounts()
    post = to_post(submission)
    if submission.trainable:
        header = grammar.training_line(post, [])
        if len(header) <= max_chars:
            counts.post_examples += 1
            yield header
    children: dict[str, list[Reply]] = defaultdict(list)
    for reply in replies:
        children[reply.parent].append(reply)
    for siblings in children.values():
        siblings.sort(key=lambda r: (r.created, r.id))
    reached = 0
    path: list[ChainEntry] = []
    # Depth-first with an explicit stack (threads can be thousands deep); `path` is cut
    # back to a comment's depth before the comment is appended.
    stack: list[tuple[Reply, int]] = [
        (r, 0) for r in reversed(children.get("t3_" + submission.id, []))
    ]
    while stack:
        reply, depth = stack.pop()
        del path[depth:]
        path.append(ChainEntry(author=reply.author, text=reply.body))
        reached += 1
        if reply.trainable:
            line, shortened = _fit(grammar, post, path, max_chars)
            if line is None:
                counts.too_long += 1
            else:
                counts.reply_examples += 1
                counts.shortened += shortened
                yield line
        stack.extend((child, depth + 1) for child in reversed(children.get("t1_" + reply.id, [])))
    counts.orphans += len(replies) - reached
