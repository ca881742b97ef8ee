"""Fan-out benchmark: 500 websocket viewers on one room while 5 people post through ``/ws``.

The script starts its own Azurite (in a temporary folder) and ``playhouse web`` as a
subprocess on a free port, so the server's CPU can be read from its process. One client
process (this one, asyncio + ``websockets``) then

1. registers ``--posters`` users through the real form (CSRF token, session cookie);
2. opens ``--viewers`` anonymous sockets, each subscribed to ``--room`` (a public room
   with no default bot, so a post calls no bot: the path measured is validate → store in
   Azurite → broadcast), and waits until the presence chatter of the joins has settled;
3. has the posters post new threads through their own sockets at ``--rate`` posts/s in
   all for ``--seconds`` s, open-loop (each post is sent at its scheduled time whatever
   the server is doing), each title carrying its sequence number;
4. counts, per viewer, the ``thread`` events for those titles, and times each one from
   the moment its post was sent to the moment the viewer received it (one clock: the
   posters and viewers share this process).

Posting limits and the cap on sockets per address are raised for the run
(``PLAYHOUSE_WEB_POSTS_PER_MINUTE``, ``PLAYHOUSE_WEB_WS_SOCKETS_PER_ADDRESS``): the benchmark
measures fan-out, not the limits. The sockets offer permessage-deflate, as browsers do.

Prints a table and writes it to ``bench/results/fanout.md`` (``--out``), with the lines
``delivered = N/M`` and ``p99_ms = x``. ``--quick`` (50 viewers, 2 s) writes under
``var/bench`` unless ``--out`` says otherwise.

    .venv/bin/python bench/fanout.py            # 500 viewers, 20 posts/s for 10 s
    .venv/bin/python bench/fanout.py --quick    # smoke check, ~15 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psutil
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from playhouse.emulator import Azurite, free_port  # noqa: E402

PASSWORD = "correct horse battery staple"
SECRET = "fanout-bench-secret-" + "x" * 32
TITLE = "fanout {seq}"
_CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


# ----------------------------------------------------------------------------- frames
class _ThreadProbe(msgspec.Struct):
    title: str = ""


class _Probe(msgspec.Struct):
    """The part of a server event the benchmark reads (msgspec skips the rest)."""

    type: str
    thread: _ThreadProbe | None = None
    client_id: str | None = None
    reason: str | None = None


_decode = msgspec.json.Decoder(_Probe).decode


def _seq_of(event: _Probe) -> int | None:
    if event.type != "thread" or event.thread is None:
        return None
    head, _, tail = event.thread.title.partition(" ")
    return int(tail) if head == "fanout" and tail.isdigit() else None


# ----------------------------------------------------------------------------- state
@dataclass
class Run:
    """Everything the clients record; one instance shared by posters and viewers."""

    posts: int
    viewers: int
    sent: list[float] = field(default_factory=list)
    acked: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    seen: list[set[int]] = field(default_factory=list)
    duplicates: int = 0
    unique: int = 0
    expected: int = -1
    complete: asyncio.Event = field(default_factory=asyncio.Event)
    frames: int = 0
    last_frame: float = 0.0
    recording: bool = False

    def __post_init__(self) -> None:
        self.sent = [0.0] * self.posts
        self.acked = [0.0] * self.posts
        self.seen = [set() for _ in range(self.viewers)]

    @property
    def delivered(self) -> int:
        return sum(len(s) for s in self.seen)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ----------------------------------------------------------------------------- processes
@contextlib.contextmanager
def web_server(connection_string: str, workdir: Path, port: int,
               profile: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``playhouse web`` on ``port``, its output in ``workdir/web.log``; SIGTERM after.

    With ``profile``, the server runs under cProfile and writes its stats there on exit.
    """
    env = {
        **os.environ,
        "PLAYHOUSE_STORAGE": connection_string,
        "PLAYHOUSE_STORAGE_NAMESPACE": "fanout",
        "PLAYHOUSE_VAR_DIR": str(workdir / "var"),
        "PLAYHOUSE_PERSONAS_DIR": str(ROOT / "personas"),
        "PLAYHOUSE_WEB_SECRET_KEY": SECRET,
        "PLAYHOUSE_WEB_POSTS_PER_MINUTE": "100000",
        "PLAYHOUSE_WEB_LOGINS_PER_MINUTE": "1000",
        "PLAYHOUSE_WEB_WS_SOCKETS_PER_ADDRESS": "100000",  # every client is on loopback
        "PLAYHOUSE_SCHEDULER_ENABLED": "false",
        "PLAYHOUSE_LOG_FORMAT": "json",
        "PLAYHOUSE_LOG_LEVEL": "info",
    }
    log = workdir / "web.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else []),
             "-m", "playhouse", "--config", "/dev/null", "web",
             "--host", "127.0.0.1", "--port", str(port), "--no-scheduler"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:  # uvicorn re-raises SIGTERM; SIGINT lets cProfile write
            os.killpg(proc.pid, signal.SIGINT if profile else signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


async def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path,
                     limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(base_url=base) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/api/rooms")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    text = await asyncio.to_thread(log.read_text, errors="replace")
    tail = "\n".join(text.splitlines()[-30:])
    raise SystemExit(f"playhouse web did not come up:\n{tail}")


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def machine_busy() -> float:
    """CPU seconds every process on the machine has used (all cores, not idle)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def azurite_process() -> psutil.Process | None:
    """Azurite is this process's ``node`` child (started by playhouse.emulator)."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "node" in child.name():
                return child
    return None


# ----------------------------------------------------------------------------- clients
async def login(base: str, name: str) -> str:
    """Register ``name`` through the real form; the session cookie header to send."""
    async with httpx.AsyncClient(base_url=base, follow_redirects=False) as client:
        page = await client.get("/register")
        match = _CSRF.search(page.text)
        assert match, "no CSRF token on /register"
        answer = await client.post("/register", data={
            "username": name, "password": PASSWORD, "password2": PASSWORD,
            "_csrf_token": match.group(1),
        })
        if answer.status_code not in (302, 303):
            raise SystemExit(f"could not register {name}: {answer.status_code} {answer.text}")
        return "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)


async def open_socket(url: str, room: str, cookie: str | None = None, *,
                      deflate: bool = True) -> ClientConnection:
    headers = {"Cookie": cookie} if cookie else {}
    ws = await connect(url, additional_headers=headers, max_size=4 * 1024 * 1024,
                       open_timeout=60, ping_interval=None,
                       compression="deflate" if deflate else None)
    hello = _decode(await ws.recv())
    assert hello.type == "hello", hello
    await ws.send(msgspec.json.encode({"type": "subscribe", "room": room}).decode())
    while True:  # subscribed, then the history page (or an error)
        event = _decode(await ws.recv())
        if event.type == "history":
            return ws
        if event.type == "error":
            raise SystemExit(f"could not subscribe to r/{room}: {event.reason}")


async def viewer(ws: ClientConnection, index: int, run: Run) -> None:
    seen = run.seen[index]
    with contextlib.suppress(Exception):
        async for frame in ws:
            now = time.perf_counter()
            run.frames += 1
            run.last_frame = now
            if not run.recording:
                continue
            seq = _seq_of(_decode(frame))
            if seq is None:
                continue
            if seq in seen:
                run.duplicates += 1
                continue
            seen.add(seq)
            run.latencies.append(now - run.sent[seq])
            run.unique += 1
            if run.unique == run.expected:
                run.complete.set()


async def poster_reader(ws: ClientConnection, run: Run) -> None:
    with contextlib.suppress(Exception):
        async for frame in ws:
            now = time.perf_counter()
            event = _decode(frame)
            if event.type in ("ack", "error") and event.client_id:
                seq = int(event.client_id)
                if event.type == "ack":
                    run.acked[seq] = now
                else:
                    run.errors.append(f"{seq}: {event.reason}")


async def poster(ws: ClientConnection, room: str, seqs: range, start: float,
                 rate: float, run: Run) -> None:
    for seq in seqs:
        delay = start + seq / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = msgspec.json.encode({
            "type": "post", "room": room, "client_id": str(seq),
            "title": TITLE.format(seq=seq), "text": f"post {seq} of the fan-out benchmark",
        }).decode()
        run.sent[seq] = time.perf_counter()
        await ws.send(frame)


async def gather_limited(jobs: list[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(j) for j in jobs))


async def settle(run: Run, quiet_s: float, limit_s: float) -> None:
    """Wait until no socket has received anything for ``quiet_s`` (at most ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    quiet = time.perf_counter() - run.last_frame
    while quiet < quiet_s and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        quiet = time.perf_counter() - run.last_frame


# ----------------------------------------------------------------------------- the run
@dataclass
class Report:
    args: argparse.Namespace
    run: Run
    setup_s: float
    window_s: float
    server_cpu_s: float
    azurite_cpu_s: float
    client_cpu_s: float
    machine_busy_s: float
    deflate: bool

    @property
    def others_s(self) -> float:
        return self.machine_busy_s - self.server_cpu_s - self.azurite_cpu_s - self.client_cpu_s

    def lines(self) -> list[str]:
        run, a = self.run, self.args
        expected = run.posts * run.viewers
        acks = [run.acked[i] - run.sent[i] for i in range(run.posts) if run.acked[i]]
        lat_ms = [x * 1000 for x in run.latencies]
        ack_ms = [x * 1000 for x in acks]
        p50, p99 = _percentile(lat_ms, 0.50), _percentile(lat_ms, 0.99)
        pct = lambda s: 100 * s / self.window_s  # noqa: E731
        rows = [
            ("viewers (anonymous sockets on one room)", f"{run.viewers}"),
            ("posters (logged-in sockets)", f"{a.posters}"),
            ("posts sent / acknowledged / refused",
             f"{run.posts} / {len(acks)} / {len(run.errors)}"),
            ("rate", f"{a.rate:g} posts/s for {a.seconds:g} s"),
            ("deliveries expected", f"{expected:,}"),
            ("delivered (unique)", f"{run.delivered:,} ({100 * run.delivered / expected:.2f} %)"),
            ("duplicates", f"{run.duplicates}"),
            ("delivery latency p50 / p90 / p99 / max (ms)",
             f"{p50:.1f} / {_percentile(lat_ms, 0.90):.1f} / {p99:.1f} / "
             f"{max(lat_ms, default=float('nan')):.1f}"),
            ("post → ack p50 / p99 (ms)",
             f"{_percentile(ack_ms, 0.50):.1f} / {_percentile(ack_ms, 0.99):.1f}"),
            ("deliveries/s during the window", f"{run.delivered / self.window_s:,.0f}"),
            ("measured window (posting + drain)", f"{self.window_s:.1f} s"),
            ("server CPU (playhouse web)",
             f"{self.server_cpu_s:.1f} s = {pct(self.server_cpu_s):.0f} % of one core"),
            ("Azurite CPU", f"{self.azurite_cpu_s:.1f} s = {pct(self.azurite_cpu_s):.0f} %"),
            ("client CPU (this process)",
             f"{self.client_cpu_s:.1f} s = {pct(self.client_cpu_s):.0f} %"),
            ("other processes on the machine (neighbours)",
             f"{max(0.0, self.others_s):.1f} CPU s = {pct(max(0.0, self.others_s)):.0f} %"),
            ("setup (register, connect, subscribe, settle)", f"{self.setup_s:.1f} s"),
            ("permessage-deflate negotiated", "yes" if self.deflate else "no"),
        ]
        out = [
            "| measure | value |",
            "|---|---|",
            *(f"| {k} | {v} |" for k, v in rows),
            "",
            "```",
            f"delivered = {run.delivered}/{expected}",
            f"p50_ms = {p50:.1f}",
            f"p99_ms = {p99:.1f}",
            "```",
        ]
        if run.errors:
            out += ["", "Refused posts (first 5): " + "; ".join(run.errors[:5])]
        return out


async def measure(args: argparse.Namespace, base: str, server: psutil.Process) -> Report:
    url = base.replace("http://", "ws://") + "/ws"
    posts = round(args.rate * args.seconds)
    run = Run(posts=posts, viewers=args.viewers)
    t0 = time.perf_counter()
    cookies = [await login(base, f"poster{i + 1}") for i in range(args.posters)]
    deflate = not args.no_deflate
    senders = [await open_socket(url, args.room, c, deflate=deflate) for c in cookies]
    viewers: list[ClientConnection] = await gather_limited(
        [lambda: open_socket(url, args.room, deflate=deflate) for _ in range(args.viewers)],
        args.connect_limit)
    deflate = "permessage-deflate" in (viewers[0].response.headers.get(
        "Sec-WebSocket-Extensions", "") if viewers[0].response else "")
    tasks = [asyncio.create_task(viewer(ws, i, run)) for i, ws in enumerate(viewers)]
    tasks += [asyncio.create_task(poster_reader(ws, run)) for ws in senders]
    run.last_frame = time.perf_counter()
    await settle(run, quiet_s=1.0, limit_s=120)  # the joins' presence events
    setup_s = time.perf_counter() - t0

    azurite = azurite_process()
    cpu0 = (cpu_seconds(server), cpu_seconds(azurite) if azurite else 0.0,
            sum(os.times()[:2]), machine_busy())
    run.recording = True
    start = time.perf_counter() + 0.2
    await asyncio.gather(*(
        poster(ws, args.room, range(i, posts, args.posters), start, args.rate, run)
        for i, ws in enumerate(senders)
    ))
    expected = posts * args.viewers
    run.expected = expected
    if run.unique < expected:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.complete.wait(), args.drain)
    window_s = time.perf_counter() - start
    cpu1 = (cpu_seconds(server), cpu_seconds(azurite) if azurite else 0.0,
            sum(os.times()[:2]), machine_busy())
    run.recording = False

    for ws in [*senders, *viewers]:
        with contextlib.suppress(Exception):
            await ws.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return Report(args=args, run=run, setup_s=setup_s, window_s=window_s,
                  server_cpu_s=cpu1[0] - cpu0[0], azurite_cpu_s=cpu1[1] - cpu0[1],
                  client_cpu_s=cpu1[2] - cpu0[2], machine_busy_s=cpu1[3] - cpu0[3],
                  deflate=deflate)


async def bench(args: argparse.Namespace) -> Report:
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        workdir = Path(tmp)
        azurite = Azurite(workdir / "azurite", root=ROOT)
        azurite.start()
        try:
            port = free_port()
            with web_server(azurite.connection_string, workdir, port, args.profile) as proc:
                base = f"http://127.0.0.1:{port}"
                await wait_ready(base, proc, workdir / "web.log")
                report = await measure(args, base, psutil.Process(proc.pid))
                if args.keep_log:
                    args.keep_log.write_bytes((workdir / "web.log").read_bytes())
                return report
        finally:
            azurite.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--viewers", type=int, default=500)
    p.add_argument("--posters", type=int, default=5)
    p.add_argument("--rate", type=float, default=20.0, help="posts per second, all posters")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--room", default="Sports", help="a public room (default: no default bot)")
    p.add_argument("--drain", type=float, default=15.0, help="seconds to wait for stragglers")
    p.add_argument("--connect-limit", type=int, default=25, help="sockets opened at once")
    p.add_argument("--no-deflate", action="store_true",
                   help="the sockets do not offer permessage-deflate (browsers do)")
    p.add_argument("--quick", action="store_true", help="50 viewers for 2 s (smoke check)")
    p.add_argument("--out", type=Path, help="default: bench/results/fanout.md")
    p.add_argument("--keep-log", type=Path, help="copy the server's log here")
    p.add_argument("--profile", type=Path, help="run the server under cProfile, stats here")
    args = p.parse_args(argv)
    if args.quick:
        args.viewers, args.seconds = 50, 2.0
    out: Path = args.out or (ROOT / ("var/bench/fanout-quick.md" if args.quick
                                     else "bench/results/fanout.md"))
    try:
        import uvloop
    except ImportError:
        report = asyncio.run(bench(args))
    else:
        report = uvloop.run(bench(args))
    lines = report.lines()
    command = "python bench/fanout.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = [
        "# Fan-out benchmark",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `{command.strip()}` on "
        f"{os.cpu_count()} CPU cores (shared), Python {platform.python_version()}; "
        "Azurite, `playhouse web` (one instance, memory channels) and this client on the "
        "same machine.",
        "",
        f"{report.run.viewers} viewers subscribed to r/{args.room}; {args.posters} posters "
        f"post new threads through `/ws` at {args.rate:g}/s in all for {args.seconds:g} s; "
        "latency = post sent → `thread` event received by a viewer (same clock).",
        "",
    ]
    text = "\n".join(header + lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print("\n".join(lines))
    print(f"\nwritten to {out}")
    expected = report.run.posts * report.run.viewers
    p99 = _percentile([x * 1000 for x in report.run.latencies], 0.99)
    return 0 if report.run.delivered == expected and p99 <= 100 else 1


if __name__ == "__main__":
    raise SystemExit(main())
