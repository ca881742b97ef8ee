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
