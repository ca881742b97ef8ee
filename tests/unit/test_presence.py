"""The presence book: counting viewers, answering another instance's newcomer, refreshing."""

from __future__ import annotations

from playhouse.events import Presence
from playhouse.web.presence import ANSWER_S, PresenceBook, PresenceRefresh


def ask(room: str, instance: str) -> Presence:
    return Presence(room=room, instance=instance, users=("x",), anonymous=0, ask=True)


def test_counts_people_and_anonymous_sockets_per_room() -> None:
    book = PresenceBook()
    book.enter("Music", "ann")
    book.enter("music", "ann")  # a second tab, the room name in another case
    book.enter("Music", None)
    assert book.of("MUSIC") == (("ann",), 1)
    book.leave("Music", "ann")
    assert book.of("Music") == (("ann",), 1)
    book.leave("Music", "ann")
    book.leave("Music", None)
    assert book.of("Music") == ((), 0) and not book.watched("Music") and book.rooms() == []


def test_answers_another_instances_question_once_a_second_per_watched_room() -> None:
    book = PresenceBook()
    book.enter("Music", "ann")
    assert book.to_answer(ask("Music", "other"), "me", now=100.0) == "Music"
    assert book.to_answer(ask("Music", "other"), "me", now=100.0 + ANSWER_S / 2) is None
    assert book.to_answer(ask("Music", "other"), "me", now=100.0 + ANSWER_S) == "Music"
    assert book.to_answer(ask("Music", "me"), "me", now=200.0) is None  # its own question
    assert book.to_answer(ask("Sports", "other"), "me", now=200.0) is None  # nobody here
    plain = Presence(room="Music", instance="other", users=(), anonymous=1)
    assert book.to_answer(plain, "me", now=300.0) is None  # not a question


async def test_refresh_republishes_every_watched_room_with_its_name() -> None:
    book = PresenceBook()
    book.enter("Music", "ann")
    book.enter("Sports", None)
    sent: list[Presence] = []
    refresh = PresenceRefresh(book, "me", sent.append)
    assert await refresh.refresh() == 2
    events = {event.room: event for event in sent}
    assert set(events) == {"Music", "Sports"}
    assert events["Music"].users == ("ann",) and events["Sports"].anonymous == 1
    assert all(e.instance == "me" and not e.ask for e in events.values())


async def test_changes_are_coalesced_and_unchanged_lists_are_not_sent() -> None:
    import asyncio

    from playhouse.web.presence import PresenceAnnouncer

    book = PresenceBook()
    sent: list[Presence] = []
    arrived = asyncio.Event()

    def publish(event: Presence) -> None:
        sent.append(event)
        arrived.set()

    announcer = PresenceAnnouncer(book, "me", publish, interval_s=0.05)
    book.enter("Music", "ann")
    announcer.changed("Music", ask=True)
    assert len(sent) == 1 and sent[0].users == ("ann",) and sent[0].ask
    for _ in range(100):  # a socket toggling: merged into one list, sent when due
        book.enter("Music", None)
        announcer.changed("Music", ask=True)
        book.leave("Music", None)
        announcer.changed("Music")
    book.enter("Music", "bob")
    arrived.clear()
    announcer.changed("Music")
    await asyncio.wait_for(arrived.wait(), 5)
    assert sent[1].users == ("ann", "bob") and sent[1].anonymous == 0 and sent[1].ask
    await asyncio.sleep(0.06)  # past the interval: a change is sent at once again
    book.leave("Music", "bob")
    book.enter("Music", "bob")
    announcer.changed("Music")  # the same list as the last one sent: nothing to tell
    announcer.changed("Music", force=True)  # unless it answers another instance
    assert len(sent) == 3 and sent[2].users == ("ann", "bob") and not sent[2].ask
    announcer.close()
