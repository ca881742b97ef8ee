"""A socket's message budget and the caps on open sockets (in memory)."""

from __future__ import annotations

from playhouse.web.budget import SocketBudget, SocketSlots, frame_cost


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_refusals_then_a_close_when_it_persists() -> None:
    clock = Clock()
    budget = SocketBudget(per_s=2.0, burst=4.0, patience=3.0, clock=clock)
    assert [budget.charge() for _ in range(4)] == ["ok"] * 4
    assert [budget.charge() for _ in range(3)] == ["refused"] * 3
    assert budget.refused == 3
    assert budget.charge() == "close"


def test_the_budget_and_the_patience_refill() -> None:
    clock = Clock()
    budget = SocketBudget(per_s=2.0, burst=4.0, patience=2.0, clock=clock)
    for _ in range(4):
        budget.charge()
    assert budget.charge() == "refused"
    clock.now += 1.0  # two tokens back, one refusal forgiven
    assert [budget.charge(), budget.charge()] == ["ok", "ok"] and budget.refused == 0
    assert [budget.charge(), budget.charge()] == ["refused", "refused"]
    assert budget.charge() == "close"


def test_a_subscribe_costs_its_reads() -> None:
    assert frame_cost("ping") == 0.0
    assert frame_cost("subscribe") < frame_cost("subscribe", pending=20)


async def test_slots_cap_each_address_and_user_and_free_on_release() -> None:
    slots = SocketSlots(per_address=3, per_user=2)
    assert await slots.claim("s1", "10.0.0.1", "ann") is None
    assert await slots.claim("s2", "10.0.0.1", "ANN") is None
    assert await slots.claim("s3", "10.0.0.1", "ann") == "user"
    assert await slots.claim("s3", "10.0.0.1", None) is None  # anonymous: the address cap
    assert await slots.claim("s4", "10.0.0.1", "bob") == "address"
    assert await slots.claim("s4", "10.0.0.2", "bob") is None
    await slots.release("s1", "10.0.0.1", "ann")
    assert await slots.claim("s5", "10.0.0.1", "ann") is None
    for sid, ip, user in (("s2", "10.0.0.1", "ann"), ("s3", "10.0.0.1", None),
                          ("s4", "10.0.0.2", "bob"), ("s5", "10.0.0.1", "ann")):
        await slots.release(sid, ip, user)
    assert slots.local == {}
