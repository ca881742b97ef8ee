"""Polling costs: the storage requests a web process makes idle, and for one bot call.

Every storage request is billed on Azure (and costs CPU here), so this counts them from
outside: a counting reverse proxy sits between the web process and Azurite, and the web
process (``playhouse web --no-scheduler``, default settings) reaches storage only through
it. A real text worker answers, connected to Azurite directly (not counted). For each tree
measured (this checkout, and with ``--before REV`` an earlier commit in a temporary git
worktree, side by side in one run, each in its own storage namespace):

1. **idle**: after a warm-up, the requests a minute of a web process nobody uses;
2. **one call**: a logged-in person posts ``u/CoopBot ...`` once, and every request in the
   ``--tail`` seconds after it is counted; minus the idle rate over the same time, that is
   what the call cost. Also: the requests in the 2 s around the call, the empty receives,
   and the call's latency (post to the bot's answer on the socket).

Prints a table and writes it to ``bench/results/polling.md`` (``--out``).

    .venv/bin/python bench/polling.py --before 2b9bf0a    # old design vs this tree
    .venv/bin/python bench/polling.py --quick             # smoke check
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
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
from aiohttp import ClientSession, ClientTimeout, web  # noqa: E402
from sitetools import Socket, ensure_models, register, spawn, wait_up  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from yarl import URL  # noqa: E402

from playhouse.constants import AZURITE_ACCOUNT, AZURITE_KEY  # noqa: E402
from playhouse.emulator import Azurite, free_port  # noqa: E402
from playhouse.personas import load_cast_strict  # noqa: E402

ROOM = "Technology"
BOT = "CoopBot"
_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "host"}


@dataclass
class Request:
    at: float
    method: str
    path: str
    empty_receive: bool


@dataclass
class CountingProxy:
    """One reverse proxy per storage service, each request recorded as it passes."""

    target: dict[str, int]
    """Service name -> Azurite's port."""
    log: list[Request] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    async def start(self) -> None:
        self.session = ClientSession(auto_decompress=False, timeout=ClientTimeout(total=120))
        self.runners: list[web.AppRunner] = []
        for service, port in self.target.items():
            app = web.Application(client_max_size=64 << 20)
            app.router.add_route("*", "/{tail:.*}", self._forward(port))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            mine = free_port()
            await web.TCPSite(runner, "127.0.0.1", mine).start()
            self.runners.append(runner)
            self.ports[service] = mine

    def _forward(self, port: int) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
            # The raw path, never re-quoted: the request is signed over the bytes the SDK
            # sent (a table key with a quote or a blob name with an escape would not match).
            url = URL(f"http://127.0.0.1:{port}{request.raw_path}", encoded=True)
            async with self.session.request(
                request.method, url, headers=headers,
                data=body or None, allow_redirects=False,
                # Content-Type is signed: never let aiohttp add one the SDK did not send.
                skip_auto_headers=("Content-Type",),
            ) as answer:
                data = await answer.read()
                out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
            empty = (request.method == "GET" and request.path.endswith("/messages")
                     and b"<QueueMessage>" not in data)
            self.log.append(Request(time.monotonic(), request.method, request.path, empty))
            return web.Response(status=answer.status, headers=out, body=data)

        return handle

    def connection_string(self) -> str:
        base = "http://127.0.0.1:{}/" + AZURITE_ACCOUNT
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};BlobEndpoint={base.format(self.ports['blob'])};"
                f"QueueEndpoint={base.format(self.ports['queue'])};"
                f"TableEndpoint={base.format(self.ports['table'])};")

    def between(self, start: float, end: float) -> list[Request]:
        return [r for r in self.log if start <= r.at < end]

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        await self.session.close()


@dataclass
class Measured:
    tree: str
    idle_per_min: float
    call_total: int
    call_above_idle: float
    call_around: int
    call_empty: int
    latency_ms: float


async def measure(label: str, tree: Path, namespace: str, proxy: CountingProxy,
                  direct: str, args: argparse.Namespace, work: Path) -> Measured:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYHOUSE_")}
    env.update({
        "PYTHONPATH": str(tree), "PLAYHOUSE_VAR_DIR": str(work / f"var-{namespace}"),
        "PLAYHOUSE_MODELS_DIR": str(args.models),
        "PLAYHOUSE_PERSONAS_DIR": str(tree / "personas"), "PLAYHOUSE_LOG_FORMAT": "json",
        "PLAYHOUSE_SCHEDULER_ENABLED": "false", "PLAYHOUSE_STORAGE_NAMESPACE": namespace,
    })
    port = free_port()
    web_child = spawn(f"web-{namespace}", ["web", "--no-scheduler", "--port", str(port)],
                      {**env, "PLAYHOUSE_STORAGE": proxy.connection_string()}, work, cwd=tree)
    worker = spawn(f"worker-{namespace}", ["worker", "--kind", "text"],
                   {**env, "PLAYHOUSE_STORAGE": direct}, work, cwd=tree)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_up(base, web_child)
        async with httpx.AsyncClient(base_url=base) as client:
            await register(client, f"poll{namespace}")
            cookie = "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)
        url = base.replace("http://", "ws://") + "/ws"
        async with connect(url, additional_headers={"Cookie": cookie}) as ws:
            sock = Socket(ws)
            await sock.wait("hello")
            await sock.send({"type": "subscribe", "room": ROOM})
            await sock.send({"type": "post", "room": ROOM, "client_id": "t",
                             "title": "Polling bench", "text": "one question"})
            _, ack = await sock.wait("ack", lambda e: e.client_id == "t")
            await sock.send({"type": "subscribe", "room": ROOM, "thread_id": ack.thread_id})
            print(f"{label}: warm-up {args.warm:g} s, then idle {args.idle:g} s", flush=True)
            await asyncio.sleep(args.warm)
            start = time.monotonic()
            await asyncio.sleep(args.idle)
            idle = proxy.between(start, time.monotonic())
            idle_per_s = len(idle) / args.idle
            print(f"{label}: one call, then {args.tail:g} s", flush=True)
            call_at = time.monotonic()
            sent = await sock.send({"type": "post", "room": ROOM, "client_id": "q",
                                    "thread_id": ack.thread_id,
                                    "text": f"u/{BOT} what do you think?"})
            await sock.wait("ack", lambda e: e.client_id == "q", within=30)
            answered, _ = await sock.wait("comment_replaced", within=120)
            await asyncio.sleep(max(0.0, args.tail - (time.monotonic() - call_at)))
            window = proxy.between(call_at, call_at + args.tail)
            around = proxy.between(call_at - 1.0, call_at + 1.0)
        return Measured(
            tree=label, idle_per_min=idle_per_s * 60, call_total=len(window),
            call_above_idle=len(window) - idle_per_s * args.tail, call_around=len(around),
            call_empty=sum(r.empty_receive for r in window),
            latency_ms=(answered - sent) * 1000,
        )
    finally:
        web_child.stop()
        worker.stop()


def worktree(rev: str, work: Path) -> Path:
    path = work / f"tree-{rev}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                   check=True, capture_output=True)
    (path / "node_modules").symlink_to(ROOT / "node_modules")
    return path


async def run(args: argparse.Namespace, work: Path,
              trees: list[tuple[str, Path]]) -> list[Measured]:
    azurite = Azurite(work / "azurite", root=ROOT)
    azurite.start()
    blob, queue, table = azurite.ports
    proxy = CountingProxy({"blob": blob, "queue": queue, "table": table})
    await proxy.start()
    out = []
    try:
        for n, (label, tree) in enumerate(trees):
            out.append(await measure(label, tree, f"poll{n}", proxy,
                                     azurite.connection_string, args, work))
    finally:
        await proxy.stop()
        azurite.stop()
    return out


def report(args: argparse.Namespace, rows: list[Measured]) -> str:
    lines = [
        "# Polling: storage requests of a web process, idle and for one bot call",
        "",
        "`bench/polling.py`: the web process (`playhouse web --no-scheduler`, default "
        "settings) reaches Azurite only through a counting reverse proxy; a real text worker "
        "answers (uncounted). Idle: requests a minute after a "
        f"{args.warm:g} s warm-up, over {args.idle:g} s. One call: a person's "
        f"`u/{BOT}` mention, every request in the {args.tail:g} s after it; above idle = "
        "that minus the idle rate over the same time.",
        "",
        "| tree | idle requests/min | one call: requests in window | above idle "
        "| in the 2 s around it | empty receives | call latency ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r.tree} | {r.idle_per_min:.1f} | {r.call_total} "
                     f"| {r.call_above_idle:.0f} | {r.call_around} | {r.call_empty} "
                     f"| {r.latency_ms:.0f} |")
    lines.append("")
    if len(rows) == 2:
        before, now = rows
        lines.append(f"ratio idle before/now = {before.idle_per_min / now.idle_per_min:.2f}")
        lines.append(f"ratio call before/now = "
                     f"{before.call_above_idle / max(1.0, now.call_above_idle):.2f}")
    lines += ["", "Targets: idle <= 40 requests a minute; <= 300 above idle for one call.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", metavar="REV", help="also measure this commit, side by side")
    p.add_argument("--warm", type=float, default=15.0, help="seconds before the idle count")
    p.add_argument("--idle", type=float, default=60.0, help="seconds of idle counted")
    p.add_argument("--tail", type=float, default=130.0,
                   help="seconds after the call counted (the old design polled 120 s)")
    p.add_argument("--quick", action="store_true", help="short windows, a smoke check")
    p.add_argument("--models", type=Path, default=ROOT / "var" / "models")
    p.add_argument("--out", type=Path, help="default bench/results/polling.md")
    args = p.parse_args(argv)
    if args.quick:
        args.warm, args.idle, args.tail = 5.0, 15.0, 20.0
    args.out = args.out or (ROOT / "var" / "bench" / "polling-quick.md" if args.quick
                            else ROOT / "bench" / "results" / "polling.md")
    from playhouse import logconfig

    logconfig.configure("warning", "console")
    ensure_models(args.models, load_cast_strict(ROOT / "personas"))
    work = Path(tempfile.mkdtemp(prefix="playhouse-polling-"))
    trees = [(f"before ({args.before})", worktree(args.before, work))] if args.before else []
    trees.append(("this tree", ROOT))
    try:
        rows = asyncio.run(run(args, work, trees))
    except BaseException:
        print(f"logs kept under {work}", file=sys.stderr)
        raise
    finally:
        if args.before:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(trees[0][1])], check=False, capture_output=True)
    text = report(args, rows)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"written to {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
