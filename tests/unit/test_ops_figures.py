"""Pure figures behind /metrics and the status page: exposition, histograms, series."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from playhouse.config import Settings
from playhouse.generation.stats import WorkerStats
from playhouse.messages import GenerationResult
from playhouse.storage.ops import BATCH_BUCKETS, PersonaState, Sample, WorkerBeat
from playhouse.web.metrics import Figures, WebMetrics
from playhouse.web.status import series

NOW = 1_800_000_000.0


def beat(worker_id: str, *, seen_at: float = NOW, **kw: object) -> WorkerBeat:
    fields: dict[str, object] = {
        "worker_id": worker_id, "host": "box", "kind": "text", "pid": 1,
        "started_at": NOW - 100, "seen_at": seen_at, "interval_s": 15.0,
    }
    fields.update(kw)
    return WorkerBeat(**fields)  # type: ignore[arg-type]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def test_worker_stats_buckets_batches_and_latencies() -> None:
    stats = WorkerStats()
    for size, seconds in ((1, 0.05), (3, 0.3), (32, 7.0), (40, 200.0)):
        stats.batch(size, seconds)
    assert stats.batch_counts == [1, 0, 1, 0, 0, 1, 1]  # ≤1, ≤2, ≤4, ≤8, ≤16, ≤32, +Inf
    assert stats.latency_counts[0] == 1 and stats.latency_counts[2] == 3
    assert stats.latency_counts[-1] == 40  # one per request, over the last bound
    assert stats.latency_sum == 0.05 + 3 * 0.3 + 32 * 7.0 + 40 * 200.0


def test_exposition_has_worker_histograms_and_persona_figures() -> None:
    metrics = WebMetrics()
    live = beat("w1", answered=7, failed=2, poisoned=1, tokens=900, tokens_per_s=12.5,
                batch_buckets=(1, 1, 2, 3, 3, 3, 3), batch_sum=10,
                personas=(PersonaState(name="CoopBot", model="loaded", answered=5, failed=1),
                          PersonaState(name="Ghost", model="unavailable", failed=1)))
    gone = beat("w0", seen_at=NOW - 3600, state="stopped", answered=3,
                personas=(PersonaState(name="CoopBot", answered=3),))
    metrics.result_applied(GenerationResult(request_id="0" * 26, kind="reply", persona="Spez",
                                            room="r", ok=False, error="x"), now=NOW)
    text = metrics.render(Figures(at=NOW, depths={"gen-interactive": 4}, workers=[live, gone]))
    figs = samples(text.decode())

    def fig(name: str, **labels: str) -> float:
        return figs[(name, tuple(sorted(labels.items())))]

    assert fig("playhouse_queue_depth", queue="gen-interactive") == 4
    assert fig("playhouse_worker_up", host="box", kind="text", worker="w1") == 1
    assert fig("playhouse_worker_up", host="box", kind="text", worker="w0") == 0
    w1 = {"kind": "text", "worker": "w1"}
    assert fig("playhouse_worker_requests_total", **w1, outcome="poisoned") == 1
    assert fig("playhouse_batch_size_bucket", **w1, le="4.0") == 2
    assert fig("playhouse_batch_size_bucket", **w1, le="+Inf") == 3
    assert fig("playhouse_batch_size_count", **w1) == 3
    assert fig("playhouse_batch_size_sum", **w1) == 10
    buckets = [k for k in figs
               if k[0] == "playhouse_batch_size_bucket" and ("worker", "w1") in k[1]]
    assert len(buckets) == len(BATCH_BUCKETS) + 1
    assert fig("playhouse_worker_tokens_per_second", **w1) == 12.5
    assert fig("playhouse_persona_requests_total", outcome="answered", persona="CoopBot") == 8
    assert fig("playhouse_persona_available", persona="Ghost") == 0
    assert fig("playhouse_persona_available", persona="CoopBot") == 1
    assert fig("playhouse_results_total", persona="Spez", status="failed") == 1
    assert fig("playhouse_errors_total", source="generation") == 1
    assert fig("playhouse_request_latency_seconds_count") == 1
    down = samples(metrics.render(Figures(at=NOW, depths=None)).decode())
    assert down[("playhouse_storage_up", ())] == 0


def test_series_buckets_the_last_hour_by_minute() -> None:
    got = series([
        Sample(source="web:a", at=NOW - 30, interval_s=15, depths=(("gen-background", 3),)),
        Sample(source="web:b", at=NOW - 20, interval_s=15, depths=(("gen-background", 5),)),
        Sample(source="worker:x", at=NOW - 10, interval_s=15, answered=4, failed=1,
               tokens=600, latency_sum=2.0, latency_count=4),
        Sample(source="worker:y", at=NOW - 5, interval_s=15, answered=2, tokens=120,
               latency_sum=4.0, latency_count=2),
        Sample(source="worker:old", at=NOW - 7200, interval_s=15, answered=99),
    ], end=NOW)
    assert len(got["tokens_per_s"]) == 60
    assert got["depth"]["gen-background"][-1] == 5  # the deepest in the minute
    assert got["depth"]["gen-background"][0] is None  # no sample: a gap, not zero
    assert got["tokens_per_s"][-1] == 12.0
    assert got["answers_per_min"][-1] == 6 and sum(got["answers_per_min"]) == 6
    assert got["failures_per_min"][-1] == 1
    assert got["latency_s"][-1] == 1.0 and got["latency_s"][0] is None


def test_admins_come_comma_separated_from_the_environment() -> None:
    settings = Settings.load({"PLAYHOUSE_WEB_ADMINS": "alice, Bob,,"}, None)
    assert settings.web.admins == ("alice", "Bob")
    assert Settings.load({}, None).web.admins == ()
