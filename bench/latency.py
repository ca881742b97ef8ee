"""Latency benchmark: a person's post to the bot's reply on screen, idle vs. a busy playhouse.

Starts its own Azurite (in a temporary folder), the real web app (``playhouse web
--no-scheduler``, so the only bot traffic is what this script makes) and one real text
worker (``playhouse worker --kind text``), both as child processes with their default
settings, on the offline demo models (built under ``var/models`` when missing, as
``playhouse run`` does). Then, through the web app's websocket like a browser:

1. log in (the real register form, CSRF token included), start a thread in r/Technology
   and subscribe to it;
2. **idle**: post ``u/CoopBot ...`` comments one at a time, a pause of a few seconds
   between them (an idle playhouse: the worker and the results consumer have backed off
   to their slowest poll), and time each from sending the frame to the
   ``comment_replaced`` event that turns the bot's placeholder into its answer;
3. **loaded**: fill ``gen-background`` with bot-to-bot reply requests for every text
   persona (``asking.submit``, as the scheduler does, so their results go through the same
   consumer and broadcasts) and keep it topped up, so the worker is always busy on a
   batch of mixed personas; then the same posts again.

The generation time of each answer is the worker's own ``elapsed_ms`` (in the result
message; the web app logs it when it applies the result), so

* ``ratio loaded/idle`` = p50 latency loaded / p50 latency idle (target <= 1.5: people's
  requests overtake the bots' queue);
* ``overhead`` = latency - generation time, idle (queue + storage + broadcast; target
  p50 <= 150 ms, p95 <= 400 ms).

Prints a table and writes it to ``bench/results/latency.md`` (``--out``).

    .venv/bin/python bench/latency.py            # the full run, a few minutes
    .venv/bin/python bench/latency.py --quick    # smoke check, about a minute
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
from sitetools import Child, Socket, ensure_models, pct, register, spawn, wait_up  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from playhouse import asking, ids  # noqa: E402
from playhouse.constants import QUEUE_BACKGROUND, QUEUE_RESULTS  # noqa: E402
from playhouse.emulator import Azurite, free_port  # noqa: E402
from playhouse.personas import Cast, load_cast_strict  # noqa: E402
from playhouse.storage import Storage  # noqa: E402
from playhouse.storage.models import Thread  # noqa: E402

ROOM = "Technology"
BOT = "CoopBot"
QUESTIONS = [
    "what do you make of the new chips?", "is the coffee machine still broken?",
    "why does my code only work on Fridays?", "how do you keep the playhouse running?",
    "which dog would win a chess game?", "how many tabs are too many?",
    "what is the best way to learn Python?", "why are keyboards so loud?",
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: few trials, small load")
    p.add_argument("--trials", type=int, help="timed posts per phase (default 30, quick 6)")
    p.add_argument("--warmup", type=int, default=2, help="untimed posts first (model load)")
    p.add_argument("--background", type=int,
                   help="background requests kept queued while loaded (default 96, quick 48)")
    p.add_argument("--pause", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="seconds between posts (default 3 5, quick 1 2)")
    p.add_argument("--models", type=Path, default=ROOT / "var" / "models",
                   help="demo models folder (built when missing)")
    p.add_argument("--out", type=Path, help="markdown table (default bench/results/latency.md; "
                   "--quick: var/bench/latency-quick.md)")
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args(argv)
    args.trials = args.trials or (6 if args.quick else 30)
    args.background = args.background or (48 if args.quick else 96)
    args.pause = args.pause or ((1.0, 2.0) if args.quick else (3.0, 5.0))
    args.out = args.out or (ROOT / "var" / "bench" / "latency-quick.md" if args.quick
                            else ROOT / "bench" / "results" / "latency.md")
    return args


@dataclass
class Trial:
    phase: str
    latency_ms: float
    placeholder: str
    status: str
    sent_at: float = 0.0
    generation_ms: float | None = None
    stages: dict[str, float] = field(default_factory=dict)
    """Milliseconds per stage of the path (:data:`STAGES`), from the children's log lines."""

    @property
    def overhead_ms(self) -> float | None:
        if self.generation_ms is None:
            return None
        return self.latency_ms - self.generation_ms


async def one_post(sock: Socket, thread_id: str, n: int, rng: random.Random,
                   phase: str) -> Trial:
    client_id = f"{phase}-{n}"
    text = f"u/{BOT} {rng.choice(QUESTIONS)} ({phase} {n})"
    sent = await sock.send({"type": "post", "room": ROOM, "thread_id": thread_id,
                            "client_id": client_id, "text": text})
    _, ack = await sock.wait("ack", lambda e: e.client_id == client_id, within=30)
    _, thinking = await sock.wait("thinking", lambda e: e.comment.parent_id == ack.comment_id,
                                  within=30)
    placeholder = thinking.comment.id
    at, replaced = await sock.wait("comment_replaced",
                                   lambda e: e.comment.id == placeholder, within=300)
    return Trial(phase, (at - sent) * 1000, placeholder, replaced.comment.status,
                 sent_at=time.time() - (time.perf_counter() - sent))


STAGES = ("accept", "queued", "generate", "results", "show")
"""Where a person's wait goes: accept = the frame sent to the request on its queue (web:
``job.submitted``); queued = on the queue until the worker starts the group (the worker's
``request.answered`` less its batch's generation time); generate = that batch's generation
time; results = the result on its queue until the web app applied it (``result.applied``);
show = applied until the bench saw ``comment_replaced``."""


def _at(event: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def attribute(trials: Sequence[Trial], web: Sequence[dict[str, Any]],
              worker: Sequence[dict[str, Any]]) -> None:
    """Fill each trial's generation time and :data:`STAGES` from the children's logs."""
    applied = {e["comment_id"]: e for e in web
               if e.get("event") == "result.applied" and e.get("comment_id")}
    submitted = {e["request_id"]: _at(e) for e in web if e.get("event") == "job.submitted"}
    answered = {e["request_id"]: _at(e) for e in worker
                if e.get("event") == "request.answered" and e.get("request_id")}
    for trial in trials:
        event = applied.get(trial.placeholder)
        if event is None:
            continue
        trial.generation_ms = float(event["elapsed_ms"])
        request_id = str(event["request_id"])
        if request_id not in submitted or request_id not in answered:
            continue
        done_at = trial.sent_at + trial.latency_ms / 1000
        marks = [trial.sent_at, submitted[request_id],
                 answered[request_id] - trial.generation_ms / 1000, answered[request_id],
                 _at(event), done_at]
        trial.stages = {name: (b - a) * 1000 for name, a, b in zip(STAGES, marks, marks[1:],
                                                                    strict=False)}


# --------------------------------------------------------------------------- background
@dataclass
class Load:
    storage: Storage
    cast: Cast
    thread: Thread
    target: int
    submitted: int = 0
    depths: list[int] = field(default_factory=list)
    backlogs: list[int] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    filled: asyncio.Event = field(default_factory=asyncio.Event)
    limit: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(16))

    async def _submit(self, request: Any) -> None:
        async with self.limit:
            await asking.submit(self.storage, request)

    async def top_up(self) -> None:
        """Keep ``gen-background`` at least ``target`` deep until stopped."""
        personas = itertools.cycle([p for _, p in sorted(self.cast.personas.items())
                                    if p.kind == "text" and p.name != BOT])
        while not self.stop.is_set():
            depth = await self.storage.queues.depth(QUEUE_BACKGROUND)
            backlog = await self.storage.queues.depth(QUEUE_RESULTS)
            self.depths.append(depth)
            self.backlogs.append(backlog)
            # The worker outruns the results consumer on the tiny demo models: topping up
            # regardless would grow gen-results without bound, and every timed answer would
            # wait behind that backlog. Keep the pipeline full, not overflowing.
            missing = self.target - depth if backlog < self.target else 0
            if missing > 0:
                batch = [asking.reply_request(persona=next(personas), thread=self.thread,
                                              chain=[], parent_id=None, queue=QUEUE_BACKGROUND,
                                              request_id=ids.new_id())
                         for _ in range(missing)]
                await asyncio.gather(*(self._submit(r) for r in batch))
                self.submitted += len(batch)
            self.filled.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.5)


# --------------------------------------------------------------------------- the run
async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cast = load_cast_strict(ROOT / "personas")
    ensure_models(args.models, cast)
    rng = random.Random(args.seed)
    azurite = Azurite(work / "azurite", root=ROOT)
    azurite.start()
    children: list[Child] = []
    storage: Storage | None = None
    try:
        conn = azurite.connection_string
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYHOUSE_")}
        env.update({
            "PLAYHOUSE_STORAGE": conn, "PLAYHOUSE_VAR_DIR": str(work / "var"),
            "PLAYHOUSE_MODELS_DIR": str(args.models),
            "PLAYHOUSE_PERSONAS_DIR": str(ROOT / "personas"), "PLAYHOUSE_LOG_FORMAT": "json",
            "PLAYHOUSE_SCHEDULER_ENABLED": "false",
            "PLAYHOUSE_WEB_POSTS_PER_MINUTE": "1000",  # one person posting on a timer
            "PLAYHOUSE_WEB_BOT_CALLS_PER_MINUTE": "1000",  # every post calls CoopBot
            "PLAYHOUSE_WEB_PEOPLE_MEET_CAPS": "false",  # ...and CoopBot answers every one
        })
        port = free_port()
        web = spawn("web", ["web", "--no-scheduler", "--port", str(port)], env, work)
        worker = spawn("worker", ["worker", "--kind", "text"], env, work)
        children += [web, worker]
        base = f"http://127.0.0.1:{port}"
        await wait_up(base, web)
        storage = await Storage.connect(conn)

        async with httpx.AsyncClient(base_url=base) as client:
            await register(client, "benchperson")
            cookie = "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)
        url = base.replace("http://", "ws://") + "/ws"
        async with connect(url, additional_headers={"Cookie": cookie},
                           max_size=4 * 1024 * 1024) as ws:
            sock = Socket(ws)
            await sock.wait("hello")
            await sock.send({"type": "subscribe", "room": ROOM})
            await sock.send({"type": "post", "room": ROOM, "client_id": "thread",
                             "title": "Latency bench: ask the bot", "text": "timed questions"})
            _, ack = await sock.wait("ack", lambda e: e.client_id == "thread")
            thread_id = ack.thread_id
            await sock.send({"type": "subscribe", "room": ROOM, "thread_id": thread_id})

            print(f"warm-up: {args.warmup} posts (the worker loads the model)", flush=True)
            for n in range(args.warmup):
                await one_post(sock, thread_id, n, rng, "warmup")
            trials: list[Trial] = []
            print(f"idle: {args.trials} posts, {args.pause[0]:g}-{args.pause[1]:g} s apart",
                  flush=True)
            for n in range(args.trials):
                await asyncio.sleep(rng.uniform(*args.pause))
                trials.append(await one_post(sock, thread_id, n, rng, "idle"))

            now = time.time()
            bg_thread = Thread(
                thread_id=ids.new_id(now), room=ROOM, title="Bots talking among themselves",
                body="background traffic", url=None, author="ByteBot", is_bot=True,
                persona="ByteBot", created_at=now, last_activity=now)
            await storage.threads.create(bg_thread)
            load = Load(storage, cast, bg_thread, args.background)
            filler = asyncio.create_task(load.top_up())
            await load.filled.wait()
            await asyncio.sleep(3)  # the worker is well into the background batches
            answered_before = sum(1 for e in worker.events()
                                  if e.get("event") == "request.answered")
            print(f"loaded: {args.trials} posts with gen-background kept "
                  f">= {args.background} deep", flush=True)
            try:
                for n in range(args.trials):
                    await asyncio.sleep(rng.uniform(*args.pause))
                    trials.append(await one_post(sock, thread_id, n, rng, "loaded"))
            finally:
                load.stop.set()
                await filler
            answered_during = sum(1 for e in worker.events()
                                  if e.get("event") == "request.answered") - answered_before

        await asyncio.sleep(1)  # the last result.applied lines reach the web log
        attribute(trials, web.events(), worker.events())
        return {"trials": trials, "load": load, "answered_during": answered_during,
                "codes": {c.name: c.stop() for c in children}}
    finally:
        for child in children:
            child.stop()
        if storage is not None:
            await storage.close()
        azurite.stop()


def report(args: argparse.Namespace, out: dict[str, Any]) -> str:
    trials: list[Trial] = out["trials"]
    load: Load = out["load"]
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for phase in ("idle", "loaded"):
        mine = [t for t in trials if t.phase == phase]
        lat = [t.latency_ms for t in mine]
        gen = [t.generation_ms for t in mine if t.generation_ms is not None]
        over = [o for t in mine if (o := t.overhead_ms) is not None]
        summary[phase] = {"p50": pct(lat, 0.5), "over50": pct(over, 0.5),
                          "over95": pct(over, 0.95)}
        rows.append(
            f"| {phase} | {len(mine)} | {sum(t.status == 'ok' for t in mine)} "
            f"| {pct(lat, 0.5):.0f} | {pct(lat, 0.95):.0f} | {max(lat):.0f} "
            f"| {pct(gen, 0.5):.0f} | {pct(over, 0.5):.0f} | {pct(over, 0.95):.0f} |"
        )
    ratio = summary["loaded"]["p50"] / summary["idle"]["p50"]
    stage_rows = []
    for phase in ("idle", "loaded"):
        staged = [t.stages for t in trials if t.phase == phase and t.stages]
        cells = " | ".join(f"{pct([s[name] for s in staged], 0.5):.0f}" for name in STAGES)
        stage_rows.append(f"| {phase} | {len(staged)} | {cells} |")
    depths = load.depths or [0]
    lines = [
        "# Latency: a person's post to the bot's reply on screen",
        "",
        f"`bench/latency.py{' --quick' if args.quick else ''}`: the real web app "
        "(`playhouse web --no-scheduler`), one real text worker (`playhouse worker --kind "
        "text`, default settings) and Azurite, all on this machine "
        f"({os.cpu_count()} CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); "
        f"demo models. A logged-in websocket posts `u/{BOT} ...` comments, "
        f"{args.pause[0]:g}-{args.pause[1]:g} s apart, and times each to the "
        "`comment_replaced` event of the bot's answer. Generation = the worker's "
        "`elapsed_ms` for the batch that answered; overhead = latency - generation "
        "(queues, storage, results consumer, broadcast).",
        "",
        "| phase | posts | answered ok | latency p50 ms | p95 ms | max ms "
        "| generation p50 ms | overhead p50 ms | overhead p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Where the wait goes (p50 ms per stage; the stages are from the web app's and the "
        "worker's log lines: accept = the frame to the request on its queue, queued = on the "
        "queue until its group started, generate, results = the result on its queue until "
        "applied, show = applied to on screen):",
        "",
        "| phase | traced | " + " | ".join(STAGES) + " |",
        "|---|---:|" + "---:|" * len(STAGES),
        *stage_rows,
        "",
        f"Loaded: `gen-background` kept >= {load.target} deep with bot-to-bot reply requests "
        f"for every other text persona ({load.submitted} submitted; depth seen "
        f"{min(depths)}-{max(depths)}, gen-results {min(load.backlogs or [0])}-"
        f"{max(load.backlogs or [0])}; topped up only while gen-results is under the same "
        "depth: the consumer, not the worker, is the slower stage on these tiny models); "
        f"the worker answered {out['answered_during']} requests during the loaded posts.",
        "",
        f"ratio loaded/idle = {ratio:.2f}",
        f"overhead_p50_ms = {summary['idle']['over50']:.0f}",
        f"overhead_p95_ms = {summary['idle']['over95']:.0f}",
        "",
        "Targets: ratio <= 1.5 (people's requests overtake the bots' queue); overhead "
        "(idle) p50 <= 150 ms, p95 <= 400 ms.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from playhouse import logconfig

    logconfig.configure("warning", "console")
    work = Path(tempfile.mkdtemp(prefix="playhouse-latency-"))
    try:
        out = asyncio.run(run(args, work))
    except BaseException:
        print(f"logs kept under {work}", file=sys.stderr)
        raise
    text = report(args, out)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"written to {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
