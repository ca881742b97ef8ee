"""Find the dump files and stream their lines without ever holding a whole file.

Pushshift's monthly dumps (``RS_2023-01.zst`` submissions, ``RC_2023-01.zst`` comments) and
the per-subreddit dumps shared today (``NAME_submissions.zst``, ``NAME_comments.zst``) are
all newline-delimited JSON, zstandard-compressed with a long window (up to 2 GiB). Older
months came as ``.xz`` or ``.bz2``; hand-made extracts are often plain ``.ndjson``/``.jsonl``
(or ``.json``) or gzipped. Every one of them is read here as a stream of raw lines.

A truncated file is an error (:class:`DatasetError` naming the file) unless the caller allows
it, in which case the lines read before the cut are kept and a warning is logged. zstandard's
stream reader ends silently at a cut, so frames are decoded with a ``decompressobj`` whose
``eof`` flag says whether the last frame was complete.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Final

import structlog

from playhouse.dataset import DatasetError

log = structlog.get_logger()

ZSTD_MAX_WINDOW: Final = 1 << 31
"""Pushshift compresses with ``--long=31``; the default window limit refuses those files."""
READ_SIZE: Final = 1 << 20
SUFFIXES: Final[dict[str, str]] = {
    ".zst": "zst",
    ".zstd": "zst",
    ".xz": "xz",
    ".bz2": "bz2",
    ".gz": "gz",
    ".ndjson": "plain",
    ".jsonl": "plain",
    ".json": "plain",
}
"""File name endings read as dumps, and how each is decompressed."""

ProgressCallback = Callable[[int], None]
"""Called with the number of (compressed) file bytes consumed since the last call."""


class Truncated(DatasetError):
    """A compressed file ends in the middle of a frame or stream."""


def compression_of(path: Path) -> str:
    """``zst``, ``xz``, ``bz2``, ``gz`` or ``plain``; :class:`DatasetError` for other names."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(SUFFIXES))
        raise DatasetError(f"{path}: not a dump file name (expected one ending in {known})")
    return kind


def discover(inputs: Sequence[Path]) -> list[Path]:
    """The dump files named by ``inputs``; a directory contributes its dump files, recursively.

    Files are returned in the order given (a directory's in name order), each once.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        if item.is_dir():
            inside = sorted(
                p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
            )
            if not inside:
                raise DatasetError(f"{item}: no dump files in this folder")
            candidates = inside
        elif item.is_file():
            compression_of(item)
            candidates = [item]
        else:
            raise DatasetError(f"{item}: no such file or folder")
        for path in candidates:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                found.append(path)
    if not found:
        raise DatasetError("no input files")
    return found


def estimated_size(path: Path) -> int:
    """A rough size of ``path``'s decompressed text, to size the temporary buckets."""
    ratio = {"zst": 8, "xz": 8, "bz2": 6, "gz": 5, "plain": 1}[compression_of(path)]
    return path.stat().st_size * ratio


def _raw_chunks(fh: BinaryIO, progress: ProgressCallback | None) -> Iterator[bytes]:
    while raw := fh.read(READ_SIZE):
        if progress is not None:
            progress(len(raw))
        yield raw


def _zstd_chunks(fh: BinaryIO, progress: ProgressCallback | None) -> Iterator[bytes]:
    import zstandard

    dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    frame = dctx.decompressobj()
    started = False
    for raw in _raw_chunks(fh, progress):
        while raw:
            try:
                out = frame.decompress(raw)
            except zstandard.ZstdError as exc:
                raise DatasetError(f"corrupt zstandard data: {exc}") from exc
            started = True
            if out:
                yield out
            if frame.eof:  # a frame ended; what follows it starts the next one
                raw = frame.unused_data
                frame = dctx.decompressobj()
                started = False
            else:
                raw = b""
    if started and not frame.eof:
        raise Truncated("the zstandard stream ends in the middle of a frame")


def _stream_chunks(
    module_open: Callable[[BinaryIO], io.BufferedIOBase],
    fh: BinaryIO,
    progress: ProgressCallback | None,
) -> Iterator[bytes]:
    last = 0
    with module_open(fh) as stream:
        while True:
            try:
                out = stream.read1(READ_SIZE)
            except EOFError as exc:
                raise Truncated(f"the compressed stream ends early: {exc}") from exc
            except (OSError, lzma.LZMAError) as exc:
                raise DatasetError(f"corrupt compressed data: {exc}") from exc
            if progress is not None:
                position = fh.tell()
                progress(position - last)
                last = position
            if not out:
                return
            yield out


def _chunks(kind: str, fh: BinaryIO, progress: ProgressCallback | None) -> Iterator[bytes]:
    if kind == "zst":
        return _zstd_chunks(fh, progress)
    if kind == "xz":
        return _stream_chunks(lambda f: lzma.LZMAFile(f, "rb"), fh, progress)
    if kind == "bz2":
        return _stream_chunks(lambda f: bz2.BZ2File(f, "rb"), fh, progress)
    if kind == "gz":
        return _stream_chunks(lambda f: gzip.GzipFile(fileobj=f, mode="rb"), fh, progress)
    return _raw_chunks(fh, progress)


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole lines (without their ``\\n``) from a stream of byte chunks; blank lines skipped.

    The last line is returned even without a final newline.
    """
    tail = b""
    for chunk in chunks:
        data = tail + chunk if tail else chunk
        lines = data.split(b"\n")
        tail = lines.pop()
        for line in lines:
            if line.strip():
                yield line
    if tail.strip():
        yield tail


def read_lines(
    path: Path, *, progress: ProgressCallback | None = None, allow_truncated: bool = False
) -> Iterator[bytes]:
    """Every non-blank line of the dump at ``path``, decompressed, in file order.

    ``progress`` is told how many bytes of the file were consumed as reading goes on.
    Raises :class:`DatasetError` naming ``path`` when the file cannot be read or is corrupt,
    and :class:`Truncated` when it ends early (unless ``allow_truncated``).
    """
    kind = compression_of(path)
    try:
        with path.open("rb") as fh:
            try:
                yield from split_lines(_chunks(kind, fh, progress))
            except Truncated as exc:
                if not allow_truncated:
                    raise Truncated(
                        f"{path}: truncated file ({exc}); download it again, or pass "
                        "--allow-truncated to keep the records read before the cut"
                    ) from exc
                log.warning("dump.truncated", path=str(path), reason=str(exc))
            except DatasetError as exc:
                raise DatasetError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
