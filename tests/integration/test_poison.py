"""`playhouse poison`: what the poison queues hold, listed once per message, and purged
(payload blobs included), on Azurite."""

from __future__ import annotations

from pathlib import Path

import pytest

from playhouse import ids
from playhouse.commands.poison import format_reports
from playhouse.constants import (
    CONTAINER_PAYLOADS,
    QUEUE_INTERACTIVE,
    QUEUE_MESSAGE_MAX_BYTES,
    QUEUES,
    poison_queue,
)
from playhouse.errors import InvalidInput
from playhouse.messages import ChainComment, GenerationRequest, PostContext, encode
from playhouse.storage import Storage
from playhouse.storage.poison import peek_poison, pick_queues, purge

from .test_cli import playhouse

pytestmark = pytest.mark.integration


def _request(persona: str, text: str = "hm") -> GenerationRequest:
    return GenerationRequest(
        request_id=ids.new_id(), kind="reply", persona=persona, room="Technology",
        queue=QUEUE_INTERACTIVE, thread_id=ids.new_id(),
        post=PostContext(author="alice", title="coffee?", body="hm"),
        chain=(ChainComment("bob", text),),
    )


async def _park(storage: Storage) -> tuple[GenerationRequest, GenerationRequest]:
    """A request parked twice (its worker died before deleting it), a request too big
    for a poison envelope, and an entry that is not one."""
    # 40 kB fits a queue message, but not once base64-encoded inside an envelope.
    twice, big = _request("CoopBot"), _request("Spez", "x" * 40_000)
    assert len(encode(big)) < QUEUE_MESSAGE_MAX_BYTES
    await storage.queues.send(QUEUE_INTERACTIVE, encode(twice))
    (message,) = await storage.queues.receive(QUEUE_INTERACTIVE)
    await storage.queues.to_poison(message, "gave up after 3 deliveries")
    await storage.queues.to_poison(message, "gave up after 3 deliveries")  # the duplicate
    await storage.queues.send(QUEUE_INTERACTIVE, encode(big))
    (message,) = await storage.queues.receive(QUEUE_INTERACTIVE)
    await storage.queues.to_poison(message, "too big to answer")
    await storage.queues.send(poison_queue(QUEUE_INTERACTIVE), b"not an entry")
    return twice, big


async def test_entries_are_listed_once_per_message_and_purged_with_their_blobs(
    storage: Storage,
) -> None:
    twice, big = await _park(storage)
    (report,) = await peek_poison(storage.queues, QUEUES, limit=10)
    assert report.queue == "gen-interactive-poison" and report.depth == 4
    assert [s.copies for s in report.shown] == [2, 1, 1]
    first, second, third = report.shown
    assert first.entry is not None and second.entry is not None and third.entry is None
    blob = second.entry.payload_blob
    assert blob and await storage.blobs.exists(CONTAINER_PAYLOADS, blob)
    text = format_reports([report], now=first.entry.at + 90)
    assert "gen-interactive-poison: 4 entries (showing 3)" in text
    assert f"persona=CoopBot kind=reply room=Technology request_id={twice.request_id}" in text
    assert "[2 copies]" in text and "2m ago" in text and "gave up after 3 deliveries" in text
    assert f"(message in blob {CONTAINER_PAYLOADS}/{blob})" in text
    assert "(unreadable entry)" in text
    (limited,) = await peek_poison(storage.queues, QUEUES, limit=1)
    assert len(limited.shown) == 1 and limited.depth == 4

    assert await purge(storage.queues, QUEUES) == {"gen-interactive-poison": 4}
    assert await storage.queues.depth(poison_queue(QUEUE_INTERACTIVE)) == 0
    assert not await storage.blobs.exists(CONTAINER_PAYLOADS, blob)
    assert await peek_poison(storage.queues, QUEUES, limit=10) == []
    assert format_reports([]) == "every poison queue is empty\n"
    assert big.request_id not in text  # too big: shown by its blob, not read back


def test_a_queue_is_named_by_itself_or_its_poison_queue() -> None:
    assert pick_queues(None) == QUEUES
    assert pick_queues("gen-image") == pick_queues("gen-image-poison") == ("gen-image",)
    with pytest.raises(InvalidInput, match="the queues are: gen-interactive"):
        pick_queues("gen-imag")


async def test_the_command_lists_purges_and_refuses_bad_input(
    storage: Storage, connection_string: str, tmp_path: Path,
) -> None:
    twice, _ = await _park(storage)
    env = {"PLAYHOUSE_STORAGE": connection_string,
           "PLAYHOUSE_STORAGE_NAMESPACE": storage.namespace}
    listed = playhouse("poison", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "gen-interactive-poison: 4 entries" in listed.stdout
    assert twice.request_id in listed.stdout
    for bad, says in ((("poison", "--queue", "nope"), "no queue named 'nope'"),
                      (("poison", "--limit", "0"), "--limit is 1 to 32")):
        refused = playhouse(*bad, cwd=tmp_path, env=env)
        assert refused.returncode == 1 and says in refused.stderr, refused.stderr
    untouched = playhouse("poison", "--queue", "gen-image", cwd=tmp_path, env=env)
    assert untouched.stdout == "every poison queue is empty\n"
    purged = playhouse("poison", "purge", "--queue", "gen-interactive", cwd=tmp_path, env=env)
    assert purged.returncode == 0 and purged.stdout == "gen-interactive-poison: deleted 4\n"
    assert playhouse("poison", "purge", cwd=tmp_path, env=env).stdout == "nothing to purge\n"
    nowhere = playhouse("poison", cwd=tmp_path)  # no storage configured, none running
    assert nowhere.returncode == 1 and "no storage" in nowhere.stderr
