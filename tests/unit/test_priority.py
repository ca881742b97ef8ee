"""PeopleFirst: the bots' work waits while a person's is in progress, never for long."""

from __future__ import annotations

import asyncio

from playhouse.priority import PeopleFirst


async def test_the_bots_go_at_once_when_no_person_is_at_work() -> None:
    people = PeopleFirst()
    await asyncio.wait_for(people.turn(), 5)
    assert people.yielded == 0


async def test_the_bots_wait_until_the_persons_work_is_over() -> None:
    people = PeopleFirst(yield_s=60)
    with people.working():
        with people.working():  # two people at once: both must end
            bots = asyncio.create_task(people.turn())
            for _ in range(5):
                await asyncio.sleep(0)
            assert not bots.done()
        for _ in range(5):
            await asyncio.sleep(0)
        assert not bots.done()
    await asyncio.wait_for(bots, 5)
    assert people.yielded == 1 and people.busy == 0


async def test_the_bots_wait_at_most_yield_s() -> None:
    people = PeopleFirst(yield_s=0.01)
    with people.working():  # a person's work that does not end
        await asyncio.wait_for(people.turn(), 5)
    assert people.yielded == 1


async def test_a_failing_persons_work_still_ends_it() -> None:
    people = PeopleFirst(yield_s=60)
    try:
        with people.working():
            raise RuntimeError("storage down")
    except RuntimeError:
        pass
    assert people.busy == 0
    await asyncio.wait_for(people.turn(), 5)
    assert people.yielded == 0
