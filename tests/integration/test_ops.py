"""Health, readiness, metrics and the status page after real runs (Azurite, real worker)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from playhouse import asking
from playhouse.commands.web import assemble
from playhouse.config import WorkerSettings
from playhouse.constants import AZURITE_ACCOUNT, AZURITE_KEY, QUEUE_BACKGROUND, QUEUE_RESULTS
from playhouse.emulator import free_port
from playhouse.generation.engines import make_engine
from playhouse.generation.heartbeat import Heartbeat
from playhouse.generation.worker import Worker
from playhouse.personas import Cast, load_cast_strict
from playhouse.storage import Storage
from playhouse.web.consumer import ResultsConsumer

from .conftest import add_persona
from .web_support import SECRET, build, serve, settings, socket, the_cast, user_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST = WorkerSettings(gather_ms=20, visibility_timeout_s=30, poll_min_s=0.01, poll_max_s=0.05)
Figures = dict[tuple[str, frozenset[tuple[str, str]]], float]


def figures(text: str) -> Figures:
    """Every sample of an exposition, keyed by name and labels (the text must parse)."""
    out: Figures = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def total(figs: Figures, name: str, **labels: str) -> float:
    """Sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in figs.items() if n == name and want <= ls)


async def scrape(client: httpx.AsyncClient) -> Figures:
    answer = await client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return figures(answer.text)


def make_worker(storage: Storage, cast: Cast, models_dir: Path, *, burst: bool,
                interval_s: float = 60.0) -> Worker:
    engine = make_engine("text", models_dir, device="cpu", max_models=4, max_bytes=1 << 30)
    beat = Heartbeat(storage.workers, storage.metrics, kind="text", interval_s=interval_s,
                     host="test-box")
    return Worker(queues=storage.queues, blobs=storage.blobs, cast=cast, engine=engine,
                  settings=FAST, burst=burst, seed=5, reporter=beat)


async def submit_posts(storage: Storage, cast: Cast, names: list[str]) -> None:
    for name in names:
        await asking.submit(storage, asking.post_request(
            persona=cast.personas[name], room="Technology", queue=QUEUE_BACKGROUND))


async def consume_all(consumer: ResultsConsumer, storage: Storage) -> None:
    while await consumer.run_once() or await storage.queues.depth(QUEUE_RESULTS):
        pass


async def test_health_ready_and_metrics_after_a_scripted_run(
    storage: Storage, models_dir: Path
) -> None:
    cast = the_cast()
    app = await build(storage, sample_interval_s=0)
    asked = ["CoopBot", "CoopBot", "Spez", "CoopBot", "Spez"]
    async with serve(app) as base, user_client(base, None) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}

        await submit_posts(storage, cast, asked)
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert ready.json()["queues"][QUEUE_BACKGROUND] == len(asked)
        before = await scrape(client)
        assert total(before, "playhouse_queue_depth", queue=QUEUE_BACKGROUND) == len(asked)
        assert total(before, "playhouse_storage_up") == 1

        async with socket(base):
            during = await scrape(client)
            assert total(during, "playhouse_websocket_clients") == 1

        worker = make_worker(storage, cast, models_dir, burst=True)
        await worker.main()
        await consume_all(app.state["consumer"], storage)

        after = await scrape(client)
        ready = (await client.get("/readyz")).json()

    stats = worker.stats
    assert stats.answered + stats.failed == len(asked)
    assert ready["queues"][QUEUE_BACKGROUND] == 0 and ready["queues"][QUEUE_RESULTS] == 0
    assert total(after, "playhouse_queue_depth", queue=QUEUE_BACKGROUND) == 0
    assert total(after, "playhouse_websocket_clients") == 0
    # What the web instance applied, per persona.
    for name, count in Counter(asked).items():
        assert total(after, "playhouse_results_total", persona=name) == count
    assert total(after, "playhouse_results_total", status="failed") == stats.failed
    assert total(after, "playhouse_errors_total", source="generation") == stats.failed
    assert total(after, "playhouse_request_latency_seconds_count") == len(asked)
    # What the worker reported through its heartbeat row.
    wid = worker.reporter.worker_id  # type: ignore[union-attr]
    assert total(after, "playhouse_worker_up", worker=wid, host="test-box") == 0  # stopped
    assert total(after, "playhouse_worker_requests_total", worker=wid,
                 outcome="answered") == stats.answered
    assert total(after, "playhouse_worker_requests_total", worker=wid,
                 outcome="failed") == stats.failed
    assert total(after, "playhouse_batch_size_count", worker=wid) == stats.batches
    assert total(after, "playhouse_batch_size_sum", worker=wid) == sum(stats.batch_sizes)
    assert total(after, "playhouse_batch_size_bucket", worker=wid, le="+Inf") == stats.batches
    assert total(after, "playhouse_generation_seconds_count", worker=wid) == len(asked)
    assert total(after, "playhouse_worker_tokens_total", worker=wid) == stats.tokens > 0
    for name, count in Counter(asked).items():
        assert total(after, "playhouse_persona_requests_total", persona=name) == count
    # /healthz, /readyz and two scrapes answered before the last scrape was rendered.
    assert total(after, "playhouse_http_requests_total", method="GET", status="200") == 4


async def test_readyz_answers_503_when_storage_is_down() -> None:
    dead = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT};")
    storage = await Storage.connect(dead, check=False, timeout_s=2)
    try:
        app = assemble(settings(sample_interval_s=0), storage, the_cast(), secret=SECRET,
                       consume=False)
        async with serve(app) as base, user_client(base, None) as client:
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["status"] == "unavailable" and ready.json()["reason"]
            figs = await scrape(client)
            assert total(figs, "playhouse_storage_up") == 0
    finally:
        await storage.close()


async def test_metrics_token_is_required_when_set(storage: Storage) -> None:
    app = await build(storage, sample_interval_s=0, metrics_token="s3cret-token-for-metrics")
    async with serve(app) as base, user_client(base, None) as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await client.get(
            "/metrics", headers={"authorization": "Bearer s3cret-token-for-metrics"})
        assert right.status_code == 200 and "playhouse_queue_depth" in right.text


async def test_status_page_is_for_admins_only(storage: Storage) -> None:
    app = await build(storage, sample_interval_s=0, admins=("Boss",))
    async with serve(app) as base:
        async with user_client(base, None) as anonymous:
            page = await anonymous.get("/status")
            assert page.status_code in (302, 303)
            assert page.headers["location"] == "/login?next=/status"
            assert (await anonymous.get("/status/data")).status_code == 401
        async with user_client(base, "someone") as other:
            assert (await other.get("/status", headers={"accept": "text/html"})).status_code == 403
            assert (await other.get("/status/data")).status_code == 403
        async with user_client(base, "boss") as boss:
            page = await boss.get("/status")
            assert page.status_code == 200
            for name in the_cast().personas:
                assert f'data-persona="{name}"' in page.text
            assert "No worker has reported yet." in page.text
            data = (await boss.get("/status/data")).json()
    assert data["storage"] == "up"
    assert set(data["series"]) >= {"depth", "tokens_per_s", "answers_per_min", "latency_s"}
    assert len(data["series"]["tokens_per_s"]) == 60
    assert {p["state"] for p in data["personas"]} == {"no worker"}


async def _until(probe: Any, what: str, within: float = 120.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {within} s")


async def test_status_shows_running_workers_and_unavailable_models(
    storage: Storage, models_dir: Path, persona_dir: Path
) -> None:
    add_persona(persona_dir, "GhostBot", model="/nonexistent/model/folder")
    cast = load_cast_strict(persona_dir)
    app = await build(storage, cast=cast, consume=True, admins=("boss",),
                      sample_interval_s=0.2)
    await submit_posts(storage, cast, ["GhostBot", "CoopBot", "CoopBot"])
    worker = make_worker(storage, cast, models_dir, burst=False, interval_s=0.2)
    running = asyncio.create_task(worker.main())
    try:
        async with serve(app) as base, user_client(base, "boss") as boss:

            async def settled() -> dict[str, Any] | None:
                data: dict[str, Any] = (await boss.get("/status/data")).json()
                busy = [w for w in data["workers"] if w["answered"] + w["failed"] == 3]
                return data if busy and busy[0]["state"] == "running" else None

            data = await _until(settled, "the worker's heartbeat after three requests")
            page = (await boss.get("/status")).text
    finally:
        worker.stop()
        await running
    (row,) = data["workers"]
    assert row["host"] == "test-box" and row["kind"] == "text" and row["alive"]
    assert row["failed"] >= 1 and row["last_error"]
    assert "CoopBot" in row["models"]
    personas = {p["name"]: p for p in data["personas"]}
    assert personas["GhostBot"]["state"] == "unavailable"
    assert personas["GhostBot"]["failed"] == 1
    assert "model unavailable" in personas["GhostBot"]["last_error"]
    assert "does not exist" in personas["GhostBot"]["reason"]
    assert personas["CoopBot"]["state"] == "loaded"
    assert personas["ImageBot"]["state"] == "no worker"  # no image worker runs here
    assert 'data-persona="GhostBot" class="state-unavailable"' in page
    # The charts have points: the web sampler's depths and the worker's samples.
    series = data["series"]
    assert any(v is not None for v in series["depth"][QUEUE_BACKGROUND])
    done = sum(series["answers_per_min"]) + sum(series["failures_per_min"])
    assert done == 3
    (stopped,) = await storage.workers.all()
    assert stopped.state == "stopped" and stopped.answered + stopped.failed == 3
