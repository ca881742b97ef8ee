"""Where a pending answer stands, from its job, its progress row and the workers' figures."""

from __future__ import annotations

import time

from playhouse import ids
from playhouse.constants import QUEUE_BACKGROUND, QUEUE_INTERACTIVE
from playhouse.storage.models import Job, JobProgress
from playhouse.storage.ops import PersonaState, WorkerBeat
from playhouse.web.waiting import WaitFigures, Watched, estimate_s, wait_state

NOW = time.time()


def job(queue: str = QUEUE_INTERACTIVE, state: str = "pending") -> Job:
    return Job(request_id=ids.new_id(NOW), kind="reply", persona="CoopBot", room="r",
               thread_id="t", parent_id=None, queue=queue, state=state,  # type: ignore[arg-type]
               attempts=0, created_at=NOW, updated_at=NOW)


def entry(j: Job) -> Watched:
    return Watched(comment_id="c", thread_id="t", request_id=j.request_id, persona="CoopBot",
                   created_at=NOW, seen_at=NOW)


def beat(*, kind: str = "text", seen: float = NOW, model: str = "loaded", reason: str = "",
         latency_sum: float = 0.0, count: int = 0, batches: int = 0,
         batch_sum: int = 0) -> WorkerBeat:
    return WorkerBeat(worker_id="w", host="h", kind=kind, pid=1, started_at=NOW - 60,
                      seen_at=seen, interval_s=15, batches=batches, batch_sum=batch_sum,
                      latency_sum=latency_sum, latency_buckets=(count,) if count else (),
                      personas=(PersonaState(name="CoopBot", model=model,  # type: ignore[arg-type]
                                             reason=reason),))


def test_no_live_worker_of_its_kind_says_so() -> None:
    j = job()
    for workers in ([], [beat(kind="image")], [beat(seen=NOW - 3600)]):
        state = wait_state(entry(j), j, None, WaitFigures(workers=workers, at=NOW),
                           kind="text", ahead=0)
        assert state is not None and state.state == "no_worker" and not state.final
        assert state.text == ("no worker running for text bots right now: it will be "
                              "answered when one starts")


def test_a_model_every_live_worker_failed_to_load_says_why() -> None:
    j = job()
    state = wait_state(entry(j), j, None, WaitFigures(
        workers=[beat(model="unavailable", reason="cannot load model 'x'")], at=NOW),
        kind="text", ahead=0)
    assert state is not None and state.state == "model_unavailable"
    assert state.text == "its model failed to load: cannot load model 'x'"


def test_queued_with_an_estimate_from_the_workers_figures() -> None:
    # 10 requests in 5 batches of 2, each request's batch took 3 s on average.
    workers = [beat(latency_sum=30.0, count=10, batches=5, batch_sum=10)]
    assert estimate_s(workers, "text", 0, NOW) == 3.0
    assert estimate_s(workers, "text", 3, NOW) == 6.0  # two more batches of two
    assert estimate_s([beat()], "text", 3, NOW) is None  # no figures yet
    j = job(QUEUE_BACKGROUND)
    state = wait_state(entry(j), j, None, WaitFigures(workers=workers, at=NOW), kind="text",
                       ahead=3)
    assert state is not None and (state.state, state.position, state.estimate_s) == (
        "queued", 3, 6.0)
    assert state.text == ("queued: 3 ahead of it (people's requests go first); likely "
                          "answered in about 6 s")


def test_generating_says_its_attempt_and_how_long_it_usually_takes() -> None:
    j = job()
    row = JobProgress(request_id=j.request_id, state="generating", at=NOW, attempt=1,
                      max_attempts=3)
    workers = [beat(latency_sum=30.0, count=10, batches=5, batch_sum=10)]
    state = wait_state(entry(j), j, row, WaitFigures(workers=workers, at=NOW), kind="text",
                       ahead=0)
    assert state is not None and state.state == "generating"
    assert state.text == "generating (attempt 1 of 3); it usually takes about 3 s"


def test_an_ended_job_has_no_state_left() -> None:
    for state in ("done", "failed"):
        j = job(state=state)
        assert wait_state(entry(j), j, None, WaitFigures(at=NOW), kind="text",
                          ahead=0) is None
    assert wait_state(entry(job()), None, None, WaitFigures(at=NOW), kind="text",
                      ahead=0) is None


def test_a_retrying_row_reads_as_retrying_with_its_reason() -> None:
    j = job()
    row = JobProgress(request_id=j.request_id, state="retrying", at=NOW, attempt=2,
                      max_attempts=3, reason="near_copy")
    state = wait_state(entry(j), j, row, WaitFigures(at=NOW), kind="text", ahead=0)
    assert state is not None and state.state == "retrying"
    assert (state.attempt, state.max_attempts, state.reason) == (2, 3, "near_copy")
    assert state.text == "retrying: attempt 2 of 3, the last sample was rejected (near copy)"
