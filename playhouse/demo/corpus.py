"""A deterministic synthetic corpus in the tag grammar, for the offline demo models.

No real data is reachable offline, so the demo personas learn from threads written by
templates: posts with a title and a short body (a few over several lines, so the escaped
``\\n`` appears), then a chain of one to four comments in which the persona and other bots
talk. Each persona gets a recognisable voice derived from its name (an opener, a sign-off,
favourite adjectives, lower case or not) mixed with its keywords.

The text is deliberately simple and repetitive: what the tiny demo models must learn in a
minute or two is the *structure* (write a title, close ``<|eot|>``, write ``<|sost|>`` …
``<|eost|>``, close a reply with its end tag), and the voice only on top of it.

Everything here is pure and cheap: no torch, no I/O. The same arguments always give the same
lines (string seeds to :class:`random.Random` are hashed with SHA-512, not ``hash()``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from playhouse.grammar import ChainEntry, Post, training_line

CORPUS_VERSION: Final = 1
"""Bump when the templates change: every demo model built from the old corpus goes stale."""

FALLBACK_KEYWORDS: Final[tuple[str, ...]] = (
    "coffee", "music", "books", "rain", "games", "gardens", "bread", "trains",
)
"""Used when a persona has fewer than three keywords of its own."""

FALLBACK_OTHERS: Final[tuple[str, ...]] = ("Visitor", "Regular")
"""Used as the other speakers when the cast has no other persona."""

_ADJECTIVES: Final = (
    "great", "underrated", "cozy", "wild", "tricky", "lovely", "weird", "perfect",
    "overrated", "fun", "calm", "brilliant",
)
_OPENERS: Final = (
    "honestly,", "ok so", "well,", "hear me out:", "fun fact:", "oh,", "look,", "listen,",
    "hmm,", "right,",
)
_SIGNOFFS: Final = (
    "!", " :)", ", trust me.", ", that is all.", " lol.", ", for real.", "...", ", no doubt.",
    " <3", ", just saying.",
)
_TITLES: Final = (
    "What is your favourite {k}?",
    "Thoughts on {k}?",
    "I finally tried {k}",
    "{K} or {k2}?",
    "Why does everyone love {k}?",
    "Tips for {k}",
    "Today I learned about {k}",
    "Is {k} worth it?",
    "{K} appreciation post",
    "Tell me about your {k}",
)
_OPINIONS: Final = (
    "{k} is {adj}.",
    "I really like {k} and {k2}.",
    "nothing beats {k}.",
    "{k} makes everything better.",
    "{k} is {adj} and {k2} is {adj2}.",
    "not a fan of {neg}.",
    "I could talk about {k} all day.",
)
_BODY_TAILS: Final = (
    "What do you think?",
    "Anyone else?",
    "Tell me yours.",
    "That is all.",
    "",
)
_LISTS: Final = (
    "Pros:\n- {k}\n- {k2}\nCons:\n- {neg}",
    "Step one: {k}.\nStep two: {k2}.\nDone!",
    "My list:\n1. {k}\n2. {k2}\n3. {k3}",
)
_ANSWERS_YES: Final = ("Yes! {k} is {adj}.", "Of course. {k} every day.", "Yes, and {k2} too.")
_ANSWERS_NO: Final = (
    "No, I prefer {k}.",
    "Not really. {k2} is better.",
    "Nope. {neg} is not for me.",
)
_REPLIES: Final = (
    "{opinion}",
    "agreed. {opinion}",
    "u/{other} have you tried {k}?",
    "{opinion} what about you, u/{other}?",
    "same here. {opinion}",
)
_OTHER_LINES: Final = (
    "What do you think about {k}, u/{me}?",
    "I never tried {k}.",
    "Is {k} really that {adj}?",
    "Nice post!",
    "Tell me more about {k}.",
    "I prefer {neg}, sorry.",
    "Why {k}?",
    "u/{me} you again!",
)


@dataclass(frozen=True, slots=True)
class Voice:
    """The habits that make one persona's text recognisable."""

    opener: str
    signoff: str
    adjectives: tuple[str, ...]
    lowercase: bool


def voice_for(persona_name: str) -> Voice:
    """The voice of ``persona_name``: the same name always gets the same voice."""
    rng = random.Random(f"voice:{persona_name}")
    return Voice(
        opener=rng.choice(_OPENERS),
        signoff=rng.choice(_SIGNOFFS),
        adjectives=tuple(rng.sample(_ADJECTIVES, 3)),
        lowercase=rng.random() < 0.5,
    )


class _Writer:
    """Fills the templates for one persona; all randomness comes from ``rng``."""

    def __init__(
        self,
        rng: random.Random,
        me: str,
        voice: Voice,
        keywords: Sequence[str],
        others: Sequence[str],
    ) -> None:
        self.rng = rng
        self.me = me
        self.voice = voice
        words = [k.strip() for k in keywords if k.strip()]
        for fallback in FALLBACK_KEYWORDS:
            if len(words) >= 3:
                break
            if fallback not in words:
                words.append(fallback)
        self.keywords = words
        unused = [w for w in FALLBACK_KEYWORDS if w not in words]
        self.negative = unused or list(FALLBACK_KEYWORDS)
        self.others = [o for o in others if o != me] or list(FALLBACK_OTHERS)

    def _slots(self, adjectives: Sequence[str]) -> dict[str, str]:
        k, k2, k3 = self.rng.sample(self.keywords, 3)
        adj, adj2 = self.rng.choice(adjectives), self.rng.choice(adjectives)
        return {
            "k": k,
            "K": k[:1].upper() + k[1:],
            "k2": k2,
            "k3": k3,
            "adj": adj,
            "adj2": adj2,
            "neg": self.rng.choice(self.negative),
            "me": self.me,
            "other": self.rng.choice(self.others),
        }

    def mine(self, template: str, **extra: str) -> str:
        """A template in the persona's voice (names and keywords keep their case)."""
        if self.voice.lowercase:
            template = template.lower()
        return template.format(**self._slots(self.voice.adjectives), **extra)

    def theirs(self, template: str) -> str:
        """A template in the plain voice every other speaker shares."""
        return template.format(**self._slots(_ADJECTIVES))

    def title(self) -> str:
        return self.mine(self.rng.choice(_TITLES))

    def body(self) -> str:
        roll = self.rng.random()
        if roll < 0.15:
            return self.mine(self.rng.choice(_LISTS))
        opinion = self.mine(self.rng.choice(_OPINIONS))
        tail = self.rng.choice(_BODY_TAILS)
        text = f"{self.voice.opener} {opinion} {tail}".strip()
        if roll < 0.25:
            text = text.replace(". ", ".\n", 1)
        return text

    def reply(self, parent: str | None) -> str:
        if parent is not None and parent.endswith("?") and self.rng.random() < 0.6:
            pool = _ANSWERS_YES if self.rng.random() < 0.5 else _ANSWERS_NO
            return self.mine(self.rng.choice(pool))
        opinion = self.mine(self.rng.choice(_OPINIONS))
        text = self.mine(self.rng.choice(_REPLIES), opinion=opinion)
        if self.rng.random() < 0.5:
            text = f"{self.voice.opener} {text}"
        if text.endswith("?"):
            return text
        return text.rstrip(".!") + self.voice.signoff

    def link(self) -> str:
        slug = "-".join(self.rng.choice(self.keywords).lower().split())
        return f"https://example.org/{slug}"

    def other_line(self) -> str:
        return self.theirs(self.rng.choice(_OTHER_LINES))


def _chain_authors(me: str, other: str, depth: int) -> list[str]:
    """Authors of a chain of ``depth`` comments that alternates and ends with ``me``."""
    return [me if (depth - i) % 2 == 1 else other for i in range(depth)]


def persona_corpus(
    persona_name: str,
    rooms: Sequence[str],
    keywords: Sequence[str],
    *,
    others: Sequence[str],
    n_threads: int,
    seed: int,
) -> list[str]:
    """``n_threads`` training lines in which ``persona_name`` posts and replies.

    A third of the posts are the persona's own (its later comments are then ``soopr``); the
    rest are by one of ``others``, a few of them link posts. Chains are one to four comments
    deep, alternate between the persona and one other speaker, and end with the persona, so
    a three-deep chain yields a ``soocr`` comment. Same arguments, same lines.
    """
    if not rooms:
        raise ValueError("a persona corpus needs at least one room")
    rng = random.Random(f"corpus:{CORPUS_VERSION}:{seed}:{persona_name}")
    writer = _Writer(rng, persona_name, voice_for(persona_name), keywords, others)
    lines: list[str] = []
    for _ in range(n_threads):
        other = rng.choice(writer.others)
        roll = rng.random()
        room = rng.choice(list(rooms))
        if roll < 1 / 3:
            post = Post(room=room, title=writer.title(), body=writer.body(), author=persona_name)
        elif roll < 0.4:
            post = Post(
                room=room,
                title=writer.theirs(rng.choice(_TITLES)),
                url=writer.link(),
                author=other,
            )
        else:
            post = Post(
                room=room,
                title=writer.theirs(rng.choice(_TITLES)),
                body=writer.other_line(),
                author=other,
            )
        chain: list[ChainEntry] = []
        parent: str | None = post.title
        for author in _chain_authors(persona_name, other, rng.randint(1, 4)):
            text = writer.reply(parent) if author == persona_name else writer.other_line()
            chain.append(ChainEntry(author=author, text=text))
            parent = text
        lines.append(training_line(post, chain))
    return lines


def union_corpus(corpora: Sequence[Sequence[str]], *, seed: int) -> list[str]:
    """Every line of ``corpora``, shuffled deterministically (the shared base's corpus)."""
    lines = [line for corpus in corpora for line in corpus]
    random.Random(f"union:{seed}").shuffle(lines)
    return lines
