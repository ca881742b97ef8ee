"""What the scheduler decides, with no I/O: who replies to what, who posts where.

The inputs are values (:class:`ThreadView`, :class:`Ledger`, the clock's ``now``); the
outputs are :class:`ReplyDecision` and :class:`PostDecision`, each carrying the score's
parts so that the log answers "why did Spez reply here?".

**One draw per (comment, persona).** A sweep sees the same comment many times. Drawing
afresh each time would make every comment answered sooner or later, so the first time a
persona considers a comment it draws ``u`` (and a reading delay) once and keeps it: the
persona answers when ``u < p(age)``. ``p`` only falls with age, so in practice the
decision is made at first sight; a cap that blocks it may lift while ``u < p`` still holds.
The draws come from one seeded :class:`random.Random`, consumed in a deterministic order,
so a seeded run is reproducible.

**Time scale.** ``time_scale`` makes persona time run faster (the demo): posting rates are
multiplied, and the windows of the caps (an hour, a day) and the reply ages shrink by the
same factor. Active hours follow the real UTC clock.

**Loop guards.** A persona never answers itself, nor a comment it answered (or was asked
to answer) already; two bots alternating in one chain stop when the persona has made
``max_chain`` replies to the other in that run; a thread with ``max_bot_comments`` bot
comments no longer attracts the persona.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from playhouse.availability import HOUR_S
from playhouse.personas import Cast, Persona, mentions
from playhouse.scheduling.scoring import ReplyFeatures, reply_probability
from playhouse.storage.models import Comment, Thread

Clock = Callable[[], float]
"""Seconds since the epoch; ``time.time`` in production, a fake one in tests."""

DAY_S: Final = 86400.0

ReplyOutcome = Literal["reply", "pass", "blocked"]


# --- what a round sees --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A post or a comment, as something a bot may answer.

    ``key`` is what an answer's request id derives from: the comment id, or the thread id
    for the post itself (as a person's call derives it).
    """

    key: str
    thread_id: str
    room: str
    author: str
    persona: str | None
    """The bot that wrote it; None for a person."""
    is_bot: bool
    text: str
    created_at: float
    depth: int
    """0 for the post and for a top-level comment, one more per level below."""
    parent: str | None
    """Key of the item it answers (the thread id for a top-level comment); None for the post."""
    status: str = "ok"
    """A comment's status; ``gone`` for a deleted or removed item, ``held`` for one the
    word filter holds (neither is ever answered)."""
    is_post: bool = False
    comment: Comment | None = None


@dataclass(slots=True)
class ThreadView:
    """One thread with its comments, indexed for the policy."""

    thread: Thread
    items: dict[str, Candidate]
    """By key, post first, then comments oldest first."""
    answered: dict[str, set[str]]
    """Candidate key → personas that answered it (placeholders included)."""
    bot_comments: int

    @classmethod
    def build(cls, thread: Thread, comments: Iterable[Comment]) -> ThreadView:
        post = Candidate(
            key=thread.thread_id, thread_id=thread.thread_id, room=thread.room,
            author=thread.author, persona=thread.persona if thread.is_bot else None,
            is_bot=thread.is_bot,
            text="" if thread.gone else f"{thread.title}\n{thread.body}".strip(),
            created_at=thread.created_at, depth=0, parent=None, is_post=True,
            status="gone" if thread.gone else "held" if thread.held else "ok",
        )
        items = {post.key: post}
        answered: dict[str, set[str]] = {}
        bots = 0
        for c in sorted(comments, key=lambda c: c.comment_id):
            parent = c.parent_id or thread.thread_id
            items[c.comment_id] = Candidate(
                key=c.comment_id, thread_id=thread.thread_id, room=thread.room,
                author=c.author, persona=c.persona if c.is_bot else None, is_bot=c.is_bot,
                text="" if c.gone else c.text, created_at=c.created_at, depth=c.depth,
                parent=parent, comment=c,
                status="gone" if c.gone else "held" if c.held else c.status,
            )
            if c.is_bot and c.persona:
                answered.setdefault(parent, set()).add(c.persona)
                if c.status != "failed":
                    bots += 1
        return cls(thread=thread, items=items, answered=answered, bot_comments=bots)

    @property
    def post(self) -> Candidate:
        return self.items[self.thread.thread_id]

    @property
    def closed(self) -> bool:
        """No bot answers anything here: locked, removed (or deleted), or held."""
        return self.thread.locked or bool(self.thread.gone) or self.thread.held

    def path_up(self, item: Candidate) -> list[Candidate]:
        """``item``, its parent, its grandparent ... up to the post (a loop stops the walk)."""
        path: list[Candidate] = []
        seen: set[str] = set()
        current: Candidate | None = item
        while current is not None and current.key not in seen:
            seen.add(current.key)
            path.append(current)
            current = self.items.get(current.parent) if current.parent else None
        return path

    def chain(self, item: Candidate) -> list[Comment]:
        """The comments from the top-level one down to ``item`` (what a reply prompt needs)."""
        return [i.comment for i in reversed(self.path_up(item)) if i.comment is not None]


def exchanges(view: ThreadView, item: Candidate, persona: str) -> int:
    """How many times ``persona`` has already answered ``item``'s bot in their current run.

    The run is the longest alternation ``other, persona, other, persona ...`` going up from
    ``item`` (written by the bot ``other``). Each ``persona`` entry of the run that has an
    ``other`` entry above it was one reply to ``other``; a ``persona`` at the very top
    started the exchange and is not counted.
    """
    other = item.persona
    if not item.is_bot or other is None or other == persona:
        return 0
    run: list[str] = []
    expected = other
    for step in view.path_up(item):
        who = step.persona if step.is_bot else None
        if who != expected:
            break
        run.append(who)
        expected = persona if expected == other else other
    return sum(1 for i, who in enumerate(run) if who == persona and i + 1 < len(run))


# --- the ledger ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BotAct:
    """One reply or post a persona made (or has pending)."""

    persona: str
    room: str
    thread_id: str
    at: float


@dataclass(slots=True)
class Ledger:
    """What the personas did recently, for the caps: seen in storage or submitted here.

    Keyed by the comment id (a reply) or thread id (a post), so an activity seen both in
    storage and in this scheduler's memory counts once.
    """

    replies: dict[str, BotAct] = field(default_factory=dict)
    posts: dict[str, BotAct] = field(default_factory=dict)

    @classmethod
    def from_views(cls, views: Iterable[ThreadView]) -> Ledger:
        ledger = cls()
        for view in views:
            t = view.thread
            if t.is_bot and t.persona:
                ledger.posts[t.thread_id] = BotAct(t.persona, t.room, t.thread_id, t.created_at)
            for item in view.items.values():
                if item.is_post or not item.is_bot or not item.persona or item.status == "failed":
                    continue
                ledger.replies[item.key] = BotAct(
                    item.persona, item.room, item.thread_id, item.created_at
                )
        return ledger

    def merge(self, other: Ledger) -> None:
        for key, act in other.replies.items():
            self.replies.setdefault(key, act)
        for key, act in other.posts.items():
            self.posts.setdefault(key, act)

    def prune(self, before: float) -> None:
        """Forget what happened before ``before`` (the memory of a long-running scheduler)."""
        self.replies = {k: a for k, a in self.replies.items() if a.at >= before}
        self.posts = {k: a for k, a in self.posts.items() if a.at >= before}

    def count_replies(
        self, persona: str, since: float, *, room: str | None = None, thread_id: str | None = None
    ) -> int:
        room_key = room.casefold() if room is not None else None
        return sum(
            1
            for a in self.replies.values()
            if a.persona == persona
            and a.at >= since
            and (room_key is None or a.room.casefold() == room_key)
            and (thread_id is None or a.thread_id == thread_id)
        )

    def thread_replies(self, persona: str, thread_id: str) -> int:
        """Replies by ``persona`` in the thread, however old."""
        return sum(1 for a in self.replies.values()
                   if a.persona == persona and a.thread_id == thread_id)

    def thread_bot_comments(self, thread_id: str) -> int:
        return sum(1 for a in self.replies.values() if a.thread_id == thread_id)

    def count_posts(self, persona: str, since: float, room: str | None = None) -> int:
        room_key = room.casefold() if room is not None else None
        return sum(
            1 for a in self.posts.values()
            if (not persona or a.persona == persona) and a.at >= since
            and (room_key is None or a.room.casefold() == room_key)
        )


# --- decisions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplyDecision:
    """One persona's verdict on one item, and everything that went into it."""

    persona: str
    item: Candidate
    outcome: ReplyOutcome
    probability: float
    draw: float
    parts: dict[str, float]
    reason: str = ""
    """Why a drawn reply is blocked: ``per_thread_cap``, ``max_chain`` ..."""
    log: bool = True
    """False when the same verdict was logged for this pair before (no flood per sweep)."""

    def fields(self) -> dict[str, object]:
        """key=value fields for the log line."""
        out: dict[str, object] = {
            "persona": self.persona, "room": self.item.room, "thread_id": self.item.thread_id,
            "target": self.item.key, "target_author": self.item.author,
            "p": round(self.probability, 4), "draw": round(self.draw, 4),
        }
        out.update({f"w_{k}": round(v, 3) for k, v in self.parts.items()})
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class PostDecision:
    persona: str
    room: str
    probability: float
    draw: float
    posts_in_day: int
    cap: int

    def fields(self) -> dict[str, object]:
        return {"persona": self.persona, "room": self.room, "p": round(self.probability, 4),
                "draw": round(self.draw, 4), "posts_in_day": self.posts_in_day, "cap": self.cap}


def active_hours_per_day(persona: Persona) -> int:
    return sum(1 for h in range(24) if persona.is_active(h))


def hour_of(now: float) -> int:
    return int(now // HOUR_S) % 24


def post_cap(persona: Persona) -> int:
    """Most threads a persona starts in one (persona-time) day: its rate, rounded up."""
    return math.ceil(persona.activity.posts_per_day)


def is_question(text: str) -> bool:
    return "?" in text


class Policy:
    """The decisions of one scheduler; holds the draws it made (see the module doc)."""

    def __init__(
        self,
        cast: Cast,
        *,
        time_scale: float = 1.0,
        reply_delay_s: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.cast = cast
        self.time_scale = time_scale
        self.reply_delay_s = reply_delay_s
        self.rng = random.Random(seed)
        self._draws: dict[tuple[str, str], tuple[float, float, float]] = {}
        """(item key, persona) → (u, reading delay in seconds, when drawn)."""
        self._logged: dict[tuple[str, str], str] = {}
        self._settled: dict[tuple[str, str], float] = {}
        """Pairs answered elsewhere (the claim was taken): never considered again."""

    # windows in real seconds
    @property
    def hour_s(self) -> float:
        return HOUR_S / self.time_scale

    @property
    def day_s(self) -> float:
        return DAY_S / self.time_scale

    def reply_window_s(self, personas: Iterable[Persona]) -> float:
        """How far back a sweep must look: the longest ``max_age_hours`` among ``personas``."""
        longest = max((p.activity.max_age_hours for p in personas), default=24.0)
        return longest * self.hour_s

    def forget(self, before: float) -> None:
        """Drop draws made before ``before`` (their items are past every persona's age)."""
        stale = [k for k, (_, _, at) in self._draws.items() if at < before]
        for key in stale:
            del self._draws[key]
            self._logged.pop(key, None)
        self._settled = {k: at for k, at in self._settled.items() if at >= before}

    def settle(self, item_key: str, persona: str, now: float) -> None:
        """``persona`` answers ``item_key`` (here or elsewhere): stop considering the pair."""
        self._settled[(item_key, persona)] = now

    # -- replies --------------------------------------------------------------------

    def features(self, persona: Persona, view: ThreadView, item: Candidate,
                 now: float) -> ReplyFeatures:
        positive, negative = persona.keywords.hits(item.text)
        return ReplyFeatures(
            author_is_human=not item.is_bot,
            author_is_bot=item.is_bot,
            mentions_me=bool(mentions(item.text, [persona.name])),
            positive_hits=positive,
            negative_hits=negative,
            is_question=is_question(item.text),
            my_thread=view.thread.is_bot and view.thread.persona == persona.name,
            depth=item.depth,
            age_hours=max(0.0, now - item.created_at) / self.hour_s,
        )

    def eligible(self, persona: Persona, view: ThreadView, item: Candidate, now: float) -> bool:
        """Whether ``persona`` may consider ``item`` at all (no draw is spent otherwise)."""
        if item.status != "ok":
            return False
        if item.is_bot and item.persona == persona.name:
            return False  # never itself
        if persona.name in view.answered.get(item.key, ()) or (
            (item.key, persona.name) in self._settled
        ):
            return False  # answered (or being answered) already
        if persona.kind == "image" and not item.is_post:
            return False  # pictures answer posts, not conversations
        age_h = (now - item.created_at) / self.hour_s
        return age_h < persona.activity.max_age_hours

    def consider(
        self, persona: Persona, view: ThreadView, item: Candidate, now: float, ledger: Ledger
    ) -> ReplyDecision | None:
        """The verdict of ``persona`` on ``item``; None when it is not a candidate yet."""
        if not self.eligible(persona, view, item, now):
            return None
        key = (item.key, persona.name)
        drawn = self._draws.get(key)
        if drawn is None:
            u = self.rng.random()
            delay = self.rng.random() * self.reply_delay_s / self.time_scale
            drawn = self._draws[key] = (u, delay, now)
        u, delay, _ = drawn
        if now - item.created_at < delay:
            return None  # not noticed yet
        probability, parts = reply_probability(persona, self.features(persona, view, item, now))
        if u >= probability:
            return self._decided(key, ReplyDecision(persona.name, item, "pass", probability, u,
                                                    parts))
        reason = self.blocked(persona, view, item, now, ledger)
        outcome: ReplyOutcome = "blocked" if reason else "reply"
        return self._decided(
            key, ReplyDecision(persona.name, item, outcome, probability, u, parts, reason)
        )

    def blocked(
        self, persona: Persona, view: ThreadView, item: Candidate, now: float, ledger: Ledger
    ) -> str:
        """The first cap or guard that stops a drawn reply; empty when none does."""
        act = persona.activity
        thread_id = view.thread.thread_id
        bot_comments = max(view.bot_comments, ledger.thread_bot_comments(thread_id))
        if bot_comments >= act.max_bot_comments:
            return "max_bot_comments"
        if item.is_bot and exchanges(view, item, persona.name) + 1 > act.max_chain:
            return "max_chain"
        if ledger.thread_replies(persona.name, thread_id) >= act.per_thread_cap:
            return "per_thread_cap"
        since = now - self.hour_s
        if ledger.count_replies(persona.name, since) >= act.per_hour_cap:
            return "per_hour_cap"
        if ledger.count_replies(persona.name, since, room=view.thread.room) >= (
            act.per_room_hour_cap
        ):
            return "per_room_hour_cap"
        return ""

    def recheck(self, persona: Persona, view: ThreadView, decision: ReplyDecision,
                now: float, ledger: Ledger) -> ReplyDecision:
        """``decision`` (a reply) checked against the caps again, just before it is asked
        for: the replies asked since it was reached (to the same item, by other bots) may
        have filled one."""
        if decision.outcome != "reply":
            return decision
        reason = self.blocked(persona, view, decision.item, now, ledger)
        if not reason:
            return decision
        return self._decided((decision.item.key, persona.name), ReplyDecision(
            decision.persona, decision.item, "blocked", decision.probability, decision.draw,
            decision.parts, reason))

    def _decided(self, key: tuple[str, str], decision: ReplyDecision) -> ReplyDecision:
        verdict = f"{decision.outcome}:{decision.reason}"
        if self._logged.get(key) == verdict:
            return ReplyDecision(decision.persona, decision.item, decision.outcome,
                                 decision.probability, decision.draw, decision.parts,
                                 decision.reason, log=False)
        self._logged[key] = verdict
        return decision

    # -- posts ----------------------------------------------------------------------

    def post_probability(self, persona: Persona, interval_s: float) -> float:
        """Chance of a new thread in one round of ``interval_s`` while the persona is awake.

        ``posts_per_day`` spread over the active hours: a Bernoulli trial per round (so the
        gaps are random: the jitter), ``rate · interval``, at most 1.
        """
        hours = active_hours_per_day(persona)
        if hours == 0 or persona.activity.posts_per_day <= 0:
            return 0.0
        per_second = persona.activity.posts_per_day * self.time_scale / (hours * HOUR_S)
        return min(1.0, per_second * interval_s)

    def consider_post(
        self, persona: Persona, rooms: Sequence[str], now: float, interval_s: float,
        ledger: Ledger,
    ) -> PostDecision | None:
        """A new thread for ``persona`` this round, or None.

        Only awake, only in ``rooms`` (the persona's rooms that exist), never past
        :func:`post_cap` threads in the last persona-day. The room is drawn with weights
        ``1 / (1 + recent threads there)``, so quiet rooms get the next thread.
        """
        if not rooms or not persona.is_active(hour_of(now)):
            return None
        probability = self.post_probability(persona, interval_s)
        u = self.rng.random()
        if u >= probability:
            return None
        since = now - self.day_s
        made = ledger.count_posts(persona.name, since)
        cap = post_cap(persona)
        if made >= cap:
            return None
        weights = [1.0 / (1 + ledger.count_posts("", since, room)) for room in rooms]
        room = self.rng.choices(list(rooms), weights=weights)[0]
        return PostDecision(persona.name, room, probability, u, made, cap)
