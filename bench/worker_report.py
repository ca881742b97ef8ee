"""The report of ``bench/worker.py``: one markdown section per workload, ratio lines, notes.

Pure formatting of what the runs measured (``bench.worker.Run`` and ``Workload``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.worker_models import BOT

if TYPE_CHECKING:
    from bench.worker import Run, Workload


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def _model_line(meta: dict[str, Any]) -> str:
    trained = (f"{meta['steps']} training steps, final loss {meta['final_loss']}"
               if not meta.get("random_init") else "random init, untrained")
    filler = (f", of which {meta['filler_tokens']} unused filler tokens"
              if meta.get("filler_tokens") else "")
    return (f"GPT-2 shape {meta['layers']} layers x {meta['width']} "
            f"({meta['params'] / 1e6:.1f} M parameters, vocab {meta['vocab']}{filler}, "
            f"{trained}), fp32")


def _ratio(a: Run, b: Run) -> str:
    return f"{a.req_s / b.req_s:.2f}" if b.req_s else "n/a"


def _tok_ratio(a: Run, b: Run) -> str:
    return f"{a.tok_s / b.tok_s:.2f}" if b.tok_s else "n/a"


def ratio_lines(wl: Workload) -> list[str]:
    r, p = wl.runs, wl.prefix
    pairs = [("F", "B"), ("F", "D"), ("F", "G"), ("F", "C"), ("F", "A"), ("C", "B"),
             ("C", "A"), ("C", "D"), ("E", "C"), ("G", "H"), ("F", "H")]
    present = [(a, b) for a, b in pairs if a in r and b in r]
    out = [f"{p}ratio {a}/{b} = {_ratio(r[a], r[b])}" for a, b in present]
    out.append(f"{p}tokens/s ratios: " + ", ".join(
        f"{a}/{b} = {_tok_ratio(r[a], r[b])}" for a, b in present))
    if "E" in r:
        e = r["E"]
        e_batch_s = e.notes["generate_s"] / max(1, len(e.notes["worker_batches"]))
        out.append(
            f"{p}E warm-up = {wl.e_warm_s:.1f} s (continuous-batching manager build + one "
            f"batch of the {wl.e_warm_rows} longest prompts, once per model, before any "
            f"timing; {wl.e_warm_s - e_batch_s:.1f} s more than a timed E batch, "
            f"{e_batch_s:.2f} s)"
        )
    if "F" in r:
        out.append(f"{p}F conversion + load = {wl.f_load_s:.1f} s ({wl.f_quantization}; "
                   "once per model and quantization, cached on disk, before any timing)")
    for k in "CEFB":
        if k in r:
            run = r[k]
            how = ("one at a time" if k == "B" else
                   "all queued at t0, t0 -> result on gen-results-interactive")
            out.append(f"{p}{k} request latency ({how}): p50 = {pct(run.latencies, 50):.2f} s, "
                       f"p95 = {pct(run.latencies, 95):.2f} s")
    q = wl.quality
    if q:
        change = q["int8"] / q["reference"] - 1
        shares = q["shares"]
        points = 100 * (shares["int8"] - shares["float32"])
        out.append(
            f"{p}quality int8: perplexity {q['int8']:.3f} vs fp32 {q['reference']:.3f} "
            f"({change:+.2%}, limit 3%; CTranslate2 float32 {q['float32']:.3f}) on "
            f"{q['tokens']} tokens of {q['lines']} held-out threads; valid replies on "
            f"{q['requests']} "
            f"seeded requests int8 {shares['int8']:.1%} vs float32 {shares['float32']:.1%} "
            f"({points:+.1f} points, limit 5)"
        )
    return out


def workload_section(wl: Workload, ctx: dict[str, Any], number: int) -> list[str]:
    runs = [wl.runs[k] for k in "ABCDEFGH" if k in wl.runs]
    lens = sorted(wl.prompt_lens)
    g = wl.persona.generation
    first = wl.runs.get("B") or runs[0]
    bk = first.counter
    out = [
        f"## {number}. {wl.title}",
        "",
        f"Model: {_model_line(wl.meta)}; {'reused from' if wl.meta['cached'] else 'built in'} "
        f"{ctx['rel'](wl.path)}.",
        f"Requests: {first.requests} replies for {BOT} (temperature {g.temperature}, top_k "
        f"{g.top_k}, top_p {g.top_p}, repetition_penalty {g.repetition_penalty}), "
        f"max_new_tokens {g.max_new_tokens}, {g.max_attempts} attempt(s) each, prompts of "
        f"{lens[0]}-{lens[-1]} tokens (median {lens[len(lens) // 2]}), one seed per request "
        "shared by all variants.",
        f"Shape of the work ({first.name}'s counts): {bk.prompt_tokens} prompt tokens and "
        f"{bk.tokens} generated tokens ({bk.tokens / max(1, bk.rows):.1f} per reply, "
        f"{bk.tokens / max(1, bk.rows * g.max_new_tokens):.0%} of max_new_tokens).",
        f"Rounds: {wl.rounds}, all seconds: "
        + ", ".join(f"{k} {v}" for k, v in wl.all_seconds.items()) + ".",
        "",
        "| variant | what | requests | ok | tokens generated | seconds | tokens/s | requests/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        what = r.what
        if r.name == "A" and "B" in wl.runs and r.requests < wl.runs["B"].requests:
            what += f" (only the first {r.requests} requests: A is load-dominated)"
        out.append(
            f"| {r.name} | {what} | {r.requests} | {r.ok} | {r.tokens} | {r.seconds:.2f} | "
            f"{r.tok_s:.1f} | {r.req_s:.2f} |"
        )
    out += ["", "Ratios are of throughput in requests/s (the tokens/s ratios follow them):",
            "", "```", *ratio_lines(wl), "```", "", "Details:", ""]
    for r in runs:
        if r.name in "CEF":
            out.append(
                f"- {r.name}: worker batches {r.notes['worker_batches']} (batch_size "
                f"{ctx['batch_size']}, gather_ms {r.notes['gather_ms']}); generation "
                f"{r.notes['generate_s']:.2f} s of {r.seconds:.2f} s, queues and the rest "
                f"{r.seconds - r.notes['generate_s']:.2f} s; {r.notes['results']} results "
                f"read, {r.notes['left_in_queue']} requests left, {r.notes['poisoned']} in the "
                f"poison queue (invalid outputs, {g.max_attempts} attempt(s))."
            )
    for r in runs:
        k = r.counter
        if k.continuous:
            out.append(
                f"- {r.name}: {k.calls} generate_batch() calls, {k.rows} rows, prompt tokens "
                f"{k.prompt_tokens} (no padding), {k.tokens} tokens generated (finished rows "
                "leave the batch at once: no idle decode slots)."
            )
        elif k.ct2:
            out.append(
                f"- {r.name}: {k.calls} CTranslate2 generate_batch() calls ({k.shared_calls} "
                f"with a shared prefix computed once), {k.rows} rows, prompt tokens "
                f"{k.prompt_tokens} held / {k.prompt_padded} computed, {k.tokens} tokens "
                f"generated in {k.slots} decode slots ({k.tokens / max(1, k.slots):.0%} "
                "useful)."
            )
        else:
            out.append(
                f"- {r.name}: {k.calls} generate() calls, {k.rows} rows, prompt tokens "
                f"{k.prompt_tokens} real / {k.prompt_padded} with padding, decode slots "
                f"{k.slots} for {k.tokens} tokens ({k.tokens / max(1, k.slots):.0%} useful)."
            )
    if "A" in wl.runs:
        out.append(f"- Model load (A, per request): {wl.load_s:.2f} s measured once before "
                   "the runs.")
    out.append("")
    return out


def report(workloads: Sequence[Workload], ctx: dict[str, Any]) -> str:
    out = [
        "# Worker benchmark",
        "",
        f"Run {ctx['when']} by `{ctx['command']}` on {ctx['machine']}; load average "
        f"(1/5/15 min) {ctx['load_start']} at the start and {ctx['load_end']} at the end "
        f"({ctx['seconds']:.0f} s in all). torch {ctx['torch']} / transformers "
        f"{ctx['transformers']} / ctranslate2 {ctx['ctranslate2']}, {ctx['threads']} "
        "thread(s).",
        "",
        "Each workload is answered several ways on the same requests and seeds: A (load per "
        "request, batch 1: the old design), B (loaded once, batch 1), C (`playhouse worker` "
        "through Azurite, padded batches, transformers), D (C's batches in-process: C's "
        "ceiling), E (C with `make_engine(..., continuous_batching=True)`: transformers' "
        "continuous batching; only with --with-e: its paged cache takes ~14 GB of RAM on a "
        "CPU), F (`playhouse worker` through Azurite with "
        "`worker.engine = ctranslate2`, what `auto` picks: CTranslate2 int8, shared prefixes, "
        "length-grouped calls), G (F's batches in-process: F's ceiling), H (G with shared "
        "prefixes off). Each round runs B, C, D, (E,) F, G, (H,) A in turn on a shared machine; "
        "the tables keep A's, B's, E's and H's fastest rounds and the C+D and F+G pairs of "
        "the round where each pair was fastest. Tokens are the ones really generated: per "
        "row up to its last non-pad token for `generate()`, the returned sequence for "
        "continuous batching and CTranslate2.",
        "",
    ]
    for n, wl in enumerate(workloads, 1):
        out += workload_section(wl, ctx, n)
    out += notes(workloads)
    return "\n".join(out).rstrip("\n") + "\n"


def notes(workloads: Sequence[Workload]) -> list[str]:
    by = {wl.key: wl for wl in workloads}
    out = ["## Notes", ""]

    def shape(wl: Workload) -> str:
        k = (wl.runs.get("B") or wl.runs["G"]).counter
        return (f"{k.prompt_tokens} prompt tokens against {k.tokens} generated "
                f"({k.prompt_tokens / max(1, k.tokens):.1f} : 1)")

    def ratio(wl: Workload, a: str, b: str) -> str:
        return _ratio(wl.runs[a], wl.runs[b]) if a in wl.runs and b in wl.runs else "n/a"

    prim = by.get("primary")
    if prim is not None:
        out.append(
            f"- **Primary = prompt-pass-bound.** The trained model closes its tag after a few "
            f"tokens, so the work is {shape(prim)}. On a CPU the prompt pass is compute-bound, "
            "so batching in transformers buys little (C/B = "
            f"{ratio(prim, 'C', 'B')}); CTranslate2 wins on the prompt pass itself (int8 "
            "matrix products, no Python per layer) and on the short decode part, and "
            "groups calls by length because it prefills a call only up to its shortest "
            f"prompt: F/B = {ratio(prim, 'F', 'B')} (target 3)."
        )
    dec = by.get("decode-heavy")
    if dec is not None:
        out.append(
            f"- **Decode-heavy = decode-bound.** The random-init model (same shape and "
            "tokenizer) closes a tag only by chance, so replies run to max_new_tokens, on "
            f"short prompts: {shape(dec)}. A decode step streams all the weights for one "
            "token per row, so one step of 32 rows costs far less than 32 steps of one: C/B = "
            f"{ratio(dec, 'C', 'B')}, and CTranslate2's int8 step is several times cheaper "
            f"again: F/B = {ratio(dec, 'F', 'B')} (target 8). Its outputs are noise, so nearly "
            "every request fails validation (the `ok` column); each failure is still a result "
            "(and, in C, E and F, a poison-queue entry), so every variant answers all requests."
        )
    small = by.get("gpt2-small")
    if small is not None:
        out.append(
            f"- **GPT-2 small (124 M).** The size real personas have; {shape(small)}. The "
            "50,257-token output layer is a large part of every step, and int8 halves the "
            f"memory streamed per step against fp32 twice over: F/B = {ratio(small, 'F', 'B')} "
            "(target 4)."
        )
    for th in (by.get("thread-heavy"), by.get("thread-heavy-short")):
        if th is None or "H" not in th.runs:
            continue
        g, h = th.runs["G"].counter, th.runs["H"].counter
        out.append(
            f"- **Shared prefixes ({th.key}).** {g.shared_calls} of G's {g.calls} calls "
            f"computed a shared prefix once: {g.prompt_padded} prompt tokens computed against "
            f"H's {h.prompt_padded} for the same {g.prompt_tokens} held "
            f"({1 - g.prompt_padded / max(1, h.prompt_padded):.0%} fewer); G/H = "
            f"{ratio(th, 'G', 'H')}."
        )
    if by.get("thread-heavy") is not None:
        out.append(
            "- CTranslate2 prefills a call only up to its shortest prompt and forces every "
            "token past it through the decode loop, so a prefix shared by a thread's requests "
            "pays when it is long next to what follows it (a long post, short comments) and "
            "the remainders are of like length; the planner "
            "(`playhouse.generation.grouping.plan_calls`) weighs the prefill saved against "
            "the extra calls and the forced steps, and leaves short-post threads to the "
            "length groups."
        )
    fe = [wl for wl in workloads if "F" in wl.runs and "G" in wl.runs]
    if fe:
        out.append(
            "- **F against its ceiling:** " + "; ".join(
                f"{wl.key} F/G = {ratio(wl, 'F', 'G')}" for wl in fe)
            + " (the queues, Azurite and result writes; target F/D >= 0.9 read as F against "
            "its own in-process batches, G, since D is the transformers engine's)."
        )
    ce = [wl for wl in workloads if "E" in wl.runs and "C" in wl.runs]
    if ce:
        out.append(
            "- **Continuous batching (E) against padded batches (C):** " + "; ".join(
                f"{wl.key} E/C = {ratio(wl, 'E', 'C')}" for wl in ce)
            + ". Transformers' continuous batching drops the repetition penalty and pays a "
            f"manager build per model (transformers {version_of('transformers')}); the worker "
            "keeps padded batches when it runs transformers."
        )
    out.append("")
    return out


def version_of(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"
