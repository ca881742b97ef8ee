"""The scheduler's pure decisions: features, draws, caps, loop guards, posting rate."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import pytest

from playhouse.personas import Cast, Persona
from playhouse.scheduling.policy import (
    HOUR_S,
    BotAct,
    Ledger,
    Policy,
    ThreadView,
    exchanges,
    post_cap,
)
from playhouse.storage.models import Comment, Thread

T0 = 1_717_200_000.0  # 2024-06-01 00:00 UTC: a fixed, fake "now"
THREAD_ID = "0" * 10 + "1" * 16
_ids = iter(range(1, 10_000))


def persona(name: str, rooms: tuple[str, ...] = ("Lounge",), kind: str = "text",
            **activity: Any) -> Persona:
    data: dict[str, Any] = {
        "name": name, "display_name": name, "kind": kind, "model": "m", "rooms": list(rooms),
        "activity": {"posts_per_day": 12, **activity},
    }
    if kind == "image":
        data["image"] = {}
    return msgspec.convert(data, Persona)


def cast_of(*personas: Persona) -> Cast:
    return Cast(personas={p.name: p for p in personas})


def thread(author: str = "alice", *, bot: bool = False, at: float = T0,
           title: str = "Hello there", tid: str = THREAD_ID) -> Thread:
    return Thread(thread_id=tid, room="Lounge", title=title, body="", url=None, author=author,
                  is_bot=bot, persona=author if bot else None, created_at=at, last_activity=at)


def comment(author: str, text: str = "hm", *, bot: bool = True, parent: str | None = None,
            depth: int = 0, at: float = T0, status: str = "ok",
            tid: str = THREAD_ID) -> Comment:
    return Comment(comment_id=f"{next(_ids):026x}", thread_id=tid, room="Lounge",
                   parent_id=parent, author=author, is_bot=bot, persona=author if bot else None,
                   text=text, created_at=at, depth=depth, status=status)  # type: ignore[arg-type]


def chain(thread_: Thread, authors: list[str], at: float = T0) -> list[Comment]:
    """A single reply chain: each comment answers the previous one."""
    out: list[Comment] = []
    parent: str | None = None
    for depth, author in enumerate(authors):
        c = comment(author, parent=parent, depth=depth, at=at, bot=author != "alice")
        out.append(c)
        parent = c.comment_id
    return out


def sure(**weights: float) -> dict[str, Any]:
    """Weights that make any fresh comment a near-certain reply."""
    return {"weights": {"base": 15.0, **weights}}


def test_parts_explain_the_score() -> None:
    spez = msgspec.convert(
        {"name": "Spez", "display_name": "s", "kind": "text", "model": "m", "rooms": ["Lounge"],
         "activity": {"posts_per_day": 1}, "keywords": {"positive": ["policy"]}}, Persona)
    policy = Policy(cast_of(spez), seed=1)
    t = thread()
    c = comment("alice", "u/Spez what is the policy?", bot=False, depth=2)
    view = ThreadView.build(t, [c])
    decision = policy.consider(spez, view, view.items[c.comment_id], T0 + 60, Ledger())
    assert decision is not None
    parts = decision.parts
    assert parts["mention"] == 8.0 and parts["human"] == 1.5 and parts["bot"] == 0.0
    assert parts["keyword_positive"] == pytest.approx(0.8)
    assert parts["question"] == 0.7 and parts["depth"] == pytest.approx(-0.7)
    assert decision.outcome == "reply" and decision.probability > 0.99
    fields = decision.fields()
    assert fields["persona"] == "Spez" and fields["w_mention"] == 8.0 and "draw" in fields


def test_never_answers_itself_nor_twice() -> None:
    a = persona("Ann", **sure())
    policy = Policy(cast_of(a), seed=1)
    t = thread("Ann", bot=True)
    own = comment("Ann")
    answered = comment("alice", bot=False)
    reply = comment("Ann", parent=answered.comment_id, depth=1)
    view = ThreadView.build(t, [own, answered, reply])
    now = T0 + 10
    assert policy.consider(a, view, view.post, now, Ledger()) is None  # its own post
    assert policy.consider(a, view, view.items[own.comment_id], now, Ledger()) is None
    assert policy.consider(a, view, view.items[answered.comment_id], now, Ledger()) is None
    other = comment("alice", bot=False)
    view = ThreadView.build(t, [other])
    policy.settle(other.comment_id, "Ann", now)  # claimed elsewhere
    assert policy.consider(a, view, view.items[other.comment_id], now, Ledger()) is None


def test_placeholders_and_failures() -> None:
    a = persona("Ann", **sure())
    policy = Policy(cast_of(a), seed=1)
    waiting = comment("Bob", status="placeholder")
    failed = comment("Bob", status="failed")
    view = ThreadView.build(thread(), [waiting, failed])
    for c in (waiting, failed):
        assert policy.consider(a, view, view.items[c.comment_id], T0, Ledger()) is None
    assert view.bot_comments == 1  # the pending one counts against the thread, not the failure


def test_too_old_gets_nothing_and_decay_is_scaled() -> None:
    a = persona("Ann", max_age_hours=2.0, **sure())
    view = ThreadView.build(thread(), [])
    assert Policy(cast_of(a), seed=1).consider(a, view, view.post, T0 + 2 * HOUR_S,
                                               Ledger()) is None
    fast = Policy(cast_of(a), seed=1, time_scale=60.0)  # an hour lasts a minute
    assert fast.consider(a, view, view.post, T0 + 119, Ledger()) is not None
    assert fast.consider(a, view, view.post, T0 + 121, Ledger()) is None


def test_one_draw_per_pair_logged_once() -> None:
    a = persona("Ann", weights={"base": -1.0})
    policy = Policy(cast_of(a), seed=3)
    view = ThreadView.build(thread(), [])
    first = policy.consider(a, view, view.post, T0 + 1, Ledger())
    second = policy.consider(a, view, view.post, T0 + 2, Ledger())
    assert first is not None and second is not None
    assert first.draw == second.draw
    assert first.log and not second.log


def test_seeded_draws_repeat() -> None:
    a = persona("Ann", weights={"base": 0.0})
    views = [ThreadView.build(thread(tid=f"{i:026x}"), []) for i in range(1, 40)]

    def outcomes(seed: int) -> list[str]:
        policy = Policy(cast_of(a), seed=seed)
        out = []
        for v in views:
            d = policy.consider(a, v, v.post, T0, Ledger())
            assert d is not None
            out.append(d.outcome)
        return out

    assert outcomes(5) == outcomes(5)
    assert outcomes(5) != outcomes(6)
    assert 5 < outcomes(5).count("reply") < 35  # about half, at p = 0.5


def test_reply_delay_holds_the_draw() -> None:
    a = persona("Ann", **sure())
    policy = Policy(cast_of(a), seed=2, reply_delay_s=600.0)
    view = ThreadView.build(thread(), [])
    assert policy.consider(a, view, view.post, T0, Ledger()) is None
    assert policy.consider(a, view, view.post, T0 + 601, Ledger()) is not None


def test_exchanges_count_the_alternating_run() -> None:
    t = thread()
    comments = chain(t, ["alice", "Ann", "Bob", "Ann", "Bob"])
    view = ThreadView.build(t, comments)
    last = view.items[comments[-1].comment_id]
    assert exchanges(view, last, "Ann") == 1  # Ann's first comment answered alice
    pong = chain(t, ["Bob", "Ann", "Bob", "Ann", "Bob"])
    view = ThreadView.build(t, pong)
    assert exchanges(view, view.items[pong[-1].comment_id], "Ann") == 2
    started = chain(t, ["Ann", "Bob", "Ann", "Bob"])
    view = ThreadView.build(t, started)
    assert exchanges(view, view.items[started[-1].comment_id], "Ann") == 1  # A began it
    broken = chain(t, ["Ann", "Bob", "Cat", "Bob"])
    view = ThreadView.build(t, broken)
    assert exchanges(view, view.items[broken[-1].comment_id], "Cat") == 1
    assert exchanges(view, view.items[broken[-1].comment_id], "Ann") == 0


def test_max_chain_stops_ping_pong() -> None:
    a = persona("Ann", max_chain=2, **sure())
    policy = Policy(cast_of(a), seed=1)
    t = thread()
    comments = chain(t, ["Bob", "Ann", "Bob", "Ann", "Bob"])
    view = ThreadView.build(t, comments)
    decision = policy.consider(a, view, view.items[comments[-1].comment_id], T0, Ledger())
    assert decision is not None and decision.outcome == "blocked"
    assert decision.reason == "max_chain"
    shorter = comments[:3]
    view = ThreadView.build(t, shorter)
    decision = policy.consider(a, view, view.items[shorter[-1].comment_id], T0, Ledger())
    assert decision is not None and decision.outcome == "reply"


def test_caps() -> None:
    a = persona("Ann", per_thread_cap=2, per_hour_cap=3, per_room_hour_cap=2,
                max_bot_comments=5, **sure())
    t = thread()
    target = comment("alice", bot=False)
    view = ThreadView.build(t, [target])
    item = view.items[target.comment_id]

    def verdict(ledger: Ledger, now: float = T0 + 30) -> str:
        decision = Policy(cast_of(a), seed=1).consider(a, view, item, now, ledger)
        assert decision is not None
        return decision.reason or decision.outcome

    def ledger(*acts: tuple[str, str, str, float]) -> Ledger:
        out = Ledger()
        for i, (who, room, tid, at) in enumerate(acts):
            out.replies[f"r{i}"] = BotAct(who, room, tid, at)
        return out

    assert verdict(Ledger()) == "reply"
    assert verdict(ledger(("Ann", "Lounge", THREAD_ID, T0), ("Ann", "Lounge", THREAD_ID, T0))) == (
        "per_thread_cap")
    other_rooms = [("Ann", f"Room{i}", f"t{i}", T0) for i in range(3)]
    assert verdict(ledger(*other_rooms)) == "per_hour_cap"
    assert verdict(ledger(*other_rooms), now=T0 + HOUR_S + 1) == "reply"  # an hour later
    assert verdict(ledger(("Ann", "Lounge", "t1", T0), ("Ann", "lounge", "t2", T0))) == (
        "per_room_hour_cap")
    crowd = [(b, "Lounge", THREAD_ID, T0) for b in ("Bob", "Cat", "Dan", "Eve", "Fay")]
    assert verdict(ledger(*crowd)) == "max_bot_comments"


def test_image_persona_answers_posts_only() -> None:
    painter = persona("Painter", kind="image", **sure())
    policy = Policy(cast_of(painter), seed=1)
    c = comment("alice", bot=False)
    view = ThreadView.build(thread(), [c])
    assert policy.consider(painter, view, view.items[c.comment_id], T0, Ledger()) is None
    assert policy.consider(painter, view, view.post, T0, Ledger()) is not None


def test_post_rate_follows_active_hours_and_scale() -> None:
    day = persona("Day", posts_per_day=12, active_hours=(8, 20))
    policy = Policy(cast_of(day), seed=1)
    assert policy.post_probability(day, 3600) == pytest.approx(1.0)  # 12 posts in 12 hours
    assert policy.post_probability(day, 600) == pytest.approx(1 / 6)
    fast = Policy(cast_of(day), seed=1, time_scale=10.0)
    assert fast.post_probability(day, 60) == pytest.approx(1 / 6)
    quiet = persona("Quiet", posts_per_day=0)
    assert policy.post_probability(quiet, 3600) == 0.0
    night = T0 + 3 * HOUR_S
    assert policy.consider_post(day, ["Lounge"], night, 3600, Ledger()) is None
    assert policy.consider_post(day, [], T0 + 9 * HOUR_S, 3600, Ledger()) is None
    assert policy.consider_post(day, ["Lounge"], T0 + 9 * HOUR_S, 3600, Ledger()) is not None


def test_post_cap_per_day() -> None:
    busy = persona("Busy", posts_per_day=2.5)
    assert post_cap(busy) == 3
    policy = Policy(cast_of(busy), seed=1)
    full = Ledger()
    for i in range(3):
        full.posts[f"t{i}"] = BotAct("Busy", "Lounge", f"t{i}", T0 - HOUR_S)
    assert policy.consider_post(busy, ["Lounge"], T0, 86400, full) is None
    assert policy.consider_post(busy, ["Lounge"], T0 + 86400, 86400, full) is not None


def test_posts_prefer_quiet_rooms() -> None:
    p = persona("Pat", rooms=("Busy", "Quiet"), posts_per_day=200)
    policy = Policy(cast_of(p), seed=9)
    ledger = Ledger()
    for i in range(9):
        ledger.posts[f"t{i}"] = BotAct("Other", "Busy", f"t{i}", T0)
    rooms: Counter[str] = Counter()
    for _ in range(400):
        decision = policy.consider_post(p, ["Busy", "Quiet"], T0 + 1, 86400, Ledger())
        busy_decision = policy.consider_post(p, ["Busy", "Quiet"], T0 + 1, 86400, ledger)
        assert decision is not None and busy_decision is not None
        rooms[busy_decision.room] += 1
    assert rooms["Quiet"] > 3 * rooms["Busy"]


def test_forget_drops_old_draws() -> None:
    a = persona("Ann", weights={"base": -1.0})
    policy = Policy(cast_of(a), seed=1)
    view = ThreadView.build(thread(), [])
    first = policy.consider(a, view, view.post, T0, Ledger())
    policy.forget(T0 + 1)
    again = policy.consider(a, view, view.post, T0 + 2, Ledger())
    assert first is not None and again is not None and again.log
