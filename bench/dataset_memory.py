"""Peak memory of ``playhouse dataset build`` against input size: it should stay flat.

Generates Pushshift-shaped dumps (a submissions file and a comments file, records padded
with the kind of fields real dumps carry) of each size in a temporary folder, runs the real
command in a child process for each, and prints a table of input size, examples, seconds and
the child's peak RSS (``ru_maxrss``). Not run by the tests.

    .venv/bin/python bench/dataset_memory.py                 # 100 MB and 1 GB, plain NDJSON
    .venv/bin/python bench/dataset_memory.py --sizes 50,200 --zst
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_WORD_LIST = "coffee tea bean roast grind brew cup milk sugar foam latte mocha espresso kettle"
WORDS = (*_WORD_LIST.split(), "morning", "mug", "filter", "press", "decaf", "crema", "☕", "café")
PADDING = {f"field_{i}": None for i in range(20)} | {
    "all_awardings": [], "author_flair_richtext": [], "gildings": {}, "locked": False,
    "stickied": False, "retrieved_on": 1_600_000_000, "author_fullname": "t2_abcdef",
}


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def generate(folder: Path, target_bytes: int, *, seed: int = 1) -> list[Path]:
    """Write RS_bench.ndjson and RC_bench.ndjson totalling about ``target_bytes``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rs, rc = folder / "RS_bench.ndjson", folder / "RC_bench.ndjson"
    written = 0
    post = 0
    with rs.open("w", encoding="utf-8") as subs, rc.open("w", encoding="utf-8") as coms:
        while written < target_bytes:
            pid = f"p{post:x}"
            record = {"id": pid, "subreddit": "CoopTalk", "author": f"user{rng.randrange(5000)}",
                      "title": _text(rng, 3, 12), "selftext": _text(rng, 0, 80), "is_self": True,
                      "url": "", "created_utc": 1_600_000_000 + post, "score": rng.randint(0, 99),
                      **PADDING}
            line = json.dumps(record, ensure_ascii=False) + "\n"
            subs.write(line)
            written += len(line)
            ids: list[str] = []
            for c in range(rng.randint(0, 20)):
                cid = f"{pid}c{c}"
                parent = f"t1_{rng.choice(ids)}" if ids and rng.random() < 0.5 else f"t3_{pid}"
                comment = {"id": cid, "link_id": f"t3_{pid}", "parent_id": parent,
                           "subreddit": "CoopTalk", "author": f"user{rng.randrange(5000)}",
                           "body": _text(rng, 1, 60), "created_utc": 1_600_000_000 + post + c,
                           "score": rng.randint(-5, 50), **PADDING}
                line = json.dumps(comment, ensure_ascii=False) + "\n"
                coms.write(line)
                written += len(line)
                ids.append(cid)
            post += 1
    return [rs, rc]


def compress(paths: list[Path]) -> list[Path]:
    import zstandard

    out = []
    for path in paths:
        target = path.with_suffix(".zst")
        with path.open("rb") as src, target.open("wb") as dst:
            zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
        path.unlink()
        out.append(target)
    return out


def run_build(inputs: list[Path], out: Path) -> tuple[float, int, dict[str, object]]:
    """(seconds, peak RSS in bytes, stats) of one build in a child process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PLAYHOUSE_LOG_LEVEL": "warning"}
    started = time.monotonic()
    code = """
import resource, sys
from playhouse.cli import main
rc = main(sys.argv[1:])
sys.stderr.write("MAXRSS %d\\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(rc)
"""
    done = subprocess.run(
        [sys.executable, "-c", code, "--config", "/dev/null", "dataset", "build",
         *map(str, inputs), "--subreddit", "CoopTalk", "--out", str(out), "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"build failed:\n{done.stderr[-2000:]}")
    peak_kb = max(int(line.split()[1]) for line in done.stderr.splitlines()
                  if line.startswith("MAXRSS"))
    stats = json.loads((out / "stats.json").read_text())
    return seconds, peak_kb * 1024, stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000", help="input sizes in MB, comma-separated")
    parser.add_argument("--zst", action="store_true", help="compress the dumps with zstandard")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows = []
    tmp = tempfile.mkdtemp(prefix="dataset-bench-")
    try:
        for size_mb in (int(s) for s in args.sizes.split(",")):
            folder = Path(tmp) / f"{size_mb}mb"
            inputs = generate(folder / "dump", size_mb * 1_000_000)
            raw = sum(p.stat().st_size for p in inputs)
            if args.zst:
                inputs = compress(inputs)
            on_disk = sum(p.stat().st_size for p in inputs)
            seconds, peak, stats = run_build(inputs, folder / "out")
            rows.append((raw, on_disk, stats["lines"], stats["examples"], seconds, peak))
            for path in inputs:
                path.unlink()
            for name in ("train.txt", "eval.txt"):
                (folder / "out" / name).unlink()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"python baseline RSS of this process: {baseline / 1e6:.0f} MB")
    print(f"{'input MB':>9} {'on disk MB':>11} {'lines':>10} {'examples':>10} "
          f"{'seconds':>8} {'peak RSS MB':>12} {'RSS / input':>12}")
    for raw, on_disk, lines, examples, seconds, peak in rows:
        print(f"{raw / 1e6:>9.0f} {on_disk / 1e6:>11.0f} {lines:>10,} {examples:>10,} "
              f"{seconds:>8.1f} {peak / 1e6:>12.0f} {peak / raw:>12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
