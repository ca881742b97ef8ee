"""The presence book: counting viewers, answering another instance's newcomer, refreshing."""

from __future__ import annotations

import msgspec

from playhouse.web.presence import ANSWER_S, PresenceBook, PresenceRefresh
from playhouse.web.protocol import Presence, encode


def ask(room: str, instance: str) -> bytes:
    return encode(Presence(room=room, instance=instance, users=("x",), anonymous=0,
                           ask=True)).encode()


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
    plain = encode(Presence(room="Music", instance="other", users=(), anonymous=1)).encode()
    assert book.to_answer(plain, "me", now=300.0) is None
    assert book.to_answer(b'{"type":"comment"}', "me", now=300.0) is None
    assert book.to_answer(b'{"type":"presence","ask":true}', "me", now=300.0) is None


def test_refresh_republishes_every_watched_room_with_its_name() -> None:
    book = PresenceBook()
    book.enter("Music", "ann")
    book.enter("Sports", None)
    sent: list[tuple[str, str]] = []
    refresh = PresenceRefresh(book, "me", lambda text, room: sent.append((text, room)))
    assert refresh.refresh() == 2
    events = {room: msgspec.json.decode(text) for text, room in sent}
    assert set(events) == {"Music", "Sports"}
    assert events["Music"]["users"] == ["ann"] and events["Sports"]["anonymous"] == 1
    assert all(e["instance"] == "me" and not e["ask"] for e in events.values())
