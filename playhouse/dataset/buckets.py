"""Temporary bucket files: how the build stays within flat memory on a dump of any size.

Two uses. Records are *partitioned* by thread (the submission id hashed with CRC-32), so
that every comment of a thread lands in the same bucket as its submission whatever file and
month it came from; the build then rebuilds threads one bucket at a time. Examples are
*scattered* into buckets chosen at random and each bucket is shuffled in memory on the way
out: a uniform shuffle of the whole output with at most one bucket in memory. A bucket that
grew past the memory limit is scattered again into smaller ones first.

Files are written through small buffers (many are open at once), one record per line.
"""

from __future__ import annotations

import contextlib
import random
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

BUFFER_BYTES: Final = 32 * 1024
MAX_OPEN: Final = 256


class Buckets:
    """``count`` append-only files named ``PREFIX-NNNN`` in ``folder``."""

    def __init__(self, folder: Path, prefix: str, count: int) -> None:
        if not 1 <= count <= MAX_OPEN:
            raise ValueError(f"bucket count must be 1..{MAX_OPEN}, not {count}")
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = [folder / f"{prefix}-{i:04d}" for i in range(count)]
        self._files: list[BinaryIO] | None = [
            path.open("wb", buffering=BUFFER_BYTES) for path in self.paths
        ]
        self.lines = [0] * count

    def __len__(self) -> int:
        return len(self.paths)

    def add(self, index: int, line: bytes) -> None:
        """Append ``line`` (no newline in it) to bucket ``index``."""
        if self._files is None:
            raise ValueError("buckets are closed")
        self._files[index].write(line + b"\n")
        self.lines[index] += 1

    def add_keyed(self, key: str, line: bytes) -> None:
        """Append ``line`` to the bucket that ``key`` hashes to (stable across runs)."""
        self.add(zlib.crc32(key.encode()) % len(self.paths), line)

    def close(self) -> None:
        """Flush and close every file (raises what a failed flush raises, e.g. disk full)."""
        files, self._files = self._files, None
        if files is None:
            return
        error: OSError | None = None
        for fh in files:
            try:
                fh.close()
            except OSError as exc:
                error = error or exc
        if error is not None:
            raise error

    def discard(self) -> None:
        """Close without caring about errors and delete the files."""
        files, self._files = self._files, None
        for fh in files or []:
            with contextlib.suppress(OSError):
                fh.close()
        for path in self.paths:
            path.unlink(missing_ok=True)


def read_bucket(path: Path) -> Iterator[bytes]:
    """The lines of a bucket file, without newlines."""
    with path.open("rb") as fh:
        for line in fh:
            yield line.rstrip(b"\n")


def shuffled(path: Path, rng: random.Random, *, max_bytes: int) -> Iterator[bytes]:
    """The lines of ``path`` in random order, holding at most about ``max_bytes`` of them.

    A file over the limit is scattered at random into smaller files beside it first (and
    so on, until each fits). Every file read is deleted once its lines are out.
    """
    size = path.stat().st_size
    if size <= max_bytes:
        lines = list(read_bucket(path))
        rng.shuffle(lines)
        path.unlink()
        yield from lines
        return
    parts = Buckets(path.parent, path.name + "s", min(MAX_OPEN, 2 * (size // max_bytes + 1)))
    try:
        for line in read_bucket(path):
            parts.add(rng.randrange(len(parts)), line)
        parts.close()
    except BaseException:
        parts.discard()
        raise
    path.unlink()
    for part in parts.paths:
        yield from shuffled(part, rng, max_bytes=max_bytes)
