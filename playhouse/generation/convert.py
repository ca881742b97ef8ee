"""Hugging Face models converted for CTranslate2, once each, into a cache on disk.

A conversion is keyed by the model's files (their names, sizes and a digest of their bytes)
and by the quantization, so a retrained model or another quantization converts anew and an
unchanged one is reused by every worker and every restart. A conversion is built in a
staging folder and moved into place only once it is complete, its file sizes recorded in
``playhouse-ct2.json``, written last: a worker killed half way leaves a staging folder
(removed by the next conversion of that key) and never a half-written cache; a cache folder
that fails that record (a copy cut short, a disk that filled up) is detected, removed and
rebuilt. One conversion per key at a time: a second worker waits on the key's lock, then
finds the cache.

Every conversion passes a quality gate before it serves: the converted model's perplexity
on held-out text in the tag grammar (:data:`PROBE_THREADS`) must be within ``tolerance`` of
the original model's in float32 (3 % for a quantized model, 1 % for a float one), and a
float32 conversion, made alongside a quantized one and thrown away, within 1 %: a model
CTranslate2 reads wrongly (a config flag its converter ignores, say) fails that however
little it is trained, and is not mistaken for quantization noise. The verdict is part of
the record, and so is a model CTranslate2 cannot convert at all, so neither is retried on
every load. Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog

from playhouse import grammar
from playhouse.constants import STAGING_PREFIX
from playhouse.errors import ModelUnavailable

log = structlog.get_logger()

FORMAT: Final = 1
"""Bump when the way models are converted changes: every cache entry is then rebuilt."""
RECORD: Final = "playhouse-ct2.json"
QUANTIZED_TOLERANCE: Final = 0.03
"""Largest relative perplexity change a quantized conversion may show (item 6 of issue 15)."""
FLOAT_TOLERANCE: Final = 0.01
"""Largest relative perplexity change a float conversion may show (it should be ~0)."""
FLOAT_TYPES: Final = ("float32", "float16", "bfloat16")
PROBE_TOKENS: Final = 256
"""Probe lines are cut to this many tokens (and to the model's context)."""

PROBE_THREADS: Final[tuple[tuple[str, str, str, tuple[tuple[str, str], ...]], ...]] = (
    ("cooking", "What is your go-to weeknight dinner?", "Something quick, under half an hour.",
     (("marta", "Pasta with garlic, chili and whatever greens are left."),
      ("dev_null", "Rice bowls. Fry an egg, add leftover vegetables, done."),
      ("marta", "Eggs fix everything, honestly."))),
    ("technology", "Is it worth upgrading my laptop this year?", "It is four years old.",
     (("quietfox", "If the battery still lasts a day I would wait."),
      ("Pat7", "More memory helps more than a faster processor for most people."))),
    ("gardening", "My tomatoes keep splitting", "They crack right before they are ripe.",
     (("alice_22", "That is uneven watering. Water deeply and less often."),
      ("bob-k", "Mulch helps keep the soil moisture steady too."),
      ("alice_22", "Good point, I forgot about mulch."))),
    ("football", "Who wins the league this season?", "",
     (("Visitor", "Hard to say, the top three are very close."),
      ("quietfox", "Whoever has fewer injuries in spring, as usual."))),
    ("cats", "Why does my cat knock things off the table?", "Every single morning.",
     (("Pat7", "Attention. It works, so she keeps doing it."),
      ("marta", "Mine only does it when the food bowl is empty."))),
    ("AskPlayhouse", "What is a small thing that made your week better?", "",
     (("bob-k", "A stranger held the door and we talked about the rain."),
      ("dev_null", "Finally fixed a bug I had been chasing for days."),
      ("bob-k", "That feeling is the best part of the job."))),
)
"""Held-out text for the quality gate: a few threads no persona was trained on."""


class CannotConvert(ModelUnavailable):
    """CTranslate2 cannot serve this model, or not faithfully enough; the message says why.

    ``gate`` is set when the conversion worked but failed the quality gate (another
    quantization may pass it)."""

    def __init__(self, reason: str, *, gate: bool = False) -> None:
        super().__init__(reason)
        self.gate = gate


@dataclass(frozen=True)
class Converted:
    """A conversion ready to serve."""

    path: Path
    quantization: str
    source: str
    record: dict[str, Any]

    @property
    def memory_bytes(self) -> int:
        """The weights as CTranslate2 holds them: the converted files (converted in the
        quantization they are served in, so no second copy is made at load time)."""
        return int(sum(self.record.get("files", {}).values()))


def probe_lines() -> list[str]:
    """:data:`PROBE_THREADS` as training lines of the tag grammar."""
    lines = []
    for room, title, body, comments in PROBE_THREADS:
        post = grammar.Post(room=room, title=title, body=body, url=None, author="Visitor")
        chain = [grammar.ChainEntry(author=a, text=t) for a, t in comments]
        lines.append(grammar.training_line(post, chain))
    return lines


# --- keys ----------------------------------------------------------------------------------

_digests: dict[tuple[str, int, int, int], str] = {}
"""File digests by (path, size, mtime, inode): a file is read again only when it changed."""


def _digest(path: Path) -> str:
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo not in _digests:
        with path.open("rb") as handle:
            _digests[memo] = hashlib.file_digest(handle, "blake2b").hexdigest()[:32]
    return _digests[memo]


def model_files(source: Path) -> list[Path]:
    """The files that make up the model folder ``source``: its top-level files (what
    ``from_pretrained`` reads; sub-folders such as training checkpoints are not the model),
    sorted, hidden ones left out."""
    return sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))


def cache_key(source: Path, quantization: str) -> str:
    """What a conversion of ``source`` in ``quantization`` is stored under."""
    import ctranslate2

    h = hashlib.blake2b(digest_size=12)
    h.update(f"format={FORMAT};ct2={ctranslate2.__version__};q={quantization}\n".encode())
    for path in model_files(source):
        rel = path.relative_to(source).as_posix()
        h.update(f"{rel}:{path.stat().st_size}:{_digest(path)}\n".encode())
    return h.hexdigest()


def _entry_name(source: Path, key: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in source.name)[:40]
    return f"{safe or 'model'}-{key}"


# --- the cache -----------------------------------------------------------------------------


def _read_record(entry: Path, key: str) -> dict[str, Any] | None:
    """The entry's record when the entry is whole: every recorded file there, at its size."""
    try:
        record: dict[str, Any] = json.loads((entry / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("key") != key or record.get("format") != FORMAT:
        return None
    for name, size in record.get("files", {}).items():
        file = entry / name
        if not file.is_file() or file.stat().st_size != size:
            return None
    return record


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    import fcntl

    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_converted(
    source: Path,
    cache_dir: Path,
    quantization: str,
    *,
    device: str = "cpu",
    tolerance: float | None = None,
) -> Converted:
    """``source`` converted in ``quantization`` and past the quality gate, from the cache
    when it is there; raises :class:`CannotConvert` with the reason otherwise.

    ``device`` is where the gate runs the converted model (where it will serve).
    """
    if not source.is_dir():
        raise CannotConvert(f"not a local model folder: {source}")
    key = cache_key(source, quantization)
    cache_dir.mkdir(parents=True, exist_ok=True)
    entry = cache_dir / _entry_name(source, key)
    with _locked(cache_dir / f".{entry.name}.lock"):
        record = _read_record(entry, key)
        if record is None and entry.exists():
            log.warning("ct2.cache_broken", path=str(entry),
                        reason="incomplete or altered (a conversion cut short); rebuilding")
            shutil.rmtree(entry, ignore_errors=True)
        if record is None:
            record = _convert(source, entry, key, quantization, device=device,
                              tolerance=tolerance)
        else:
            log.info("ct2.cache_hit", model=str(source), quantization=quantization,
                     path=str(entry))
    if record.get("error"):
        raise CannotConvert(str(record["error"]), gate=bool(record.get("gate_failed")))
    return Converted(entry, quantization, str(source), record)


def _convert(
    source: Path, entry: Path, key: str, quantization: str, *, device: str,
    tolerance: float | None,
) -> dict[str, Any]:
    """Convert into a staging folder, gate it, record it, move it into place."""
    from ctranslate2.converters import TransformersConverter

    for old in entry.parent.glob(f"{STAGING_PREFIX}{entry.name}*"):
        shutil.rmtree(old, ignore_errors=True)  # a conversion killed part way (we hold the lock)
    staging = entry.parent / f"{STAGING_PREFIX}{entry.name}-{os.getpid()}"
    started = time.perf_counter()
    record: dict[str, Any] = {"format": FORMAT, "key": key, "source": str(source),
                              "quantization": quantization, "files": {}}
    try:
        converter = TransformersConverter(str(source), low_cpu_mem_usage=True)
        converter.convert(str(staging), quantization=quantization, force=True)
        checks = [(staging, quantization)]
        faithful = staging / ".float32"
        if quantization not in FLOAT_TYPES:
            # Quantization error and conversion error look alike in a perplexity: a float32
            # conversion, scored and thrown away, tells them apart.
            TransformersConverter(str(source), low_cpu_mem_usage=True).convert(
                str(faithful), quantization="float32", force=True
            )
            checks.append((faithful, "float32"))
        gate = quality_gate(source, checks, device=device)
        shutil.rmtree(faithful, ignore_errors=True)
        limit = tolerance if tolerance is not None else (
            FLOAT_TOLERANCE if quantization in FLOAT_TYPES else QUANTIZED_TOLERANCE
        )
        record["gate"] = {**gate, "tolerance": limit}
        reference = gate["reference"]
        as_float = gate.get("float32", gate[quantization])
        if abs(as_float / reference - 1) > FLOAT_TOLERANCE:
            record["error"] = (
                f"CTranslate2 reads {source.name} differently from transformers: its float "
                f"perplexity is {as_float / reference - 1:+.1%} off the original's "
                f"{reference:.3f} (limit {FLOAT_TOLERANCE:.0%})"
            )
        elif abs(gate["change"]) > limit:
            record["gate_failed"] = True
            record["error"] = (
                f"{quantization} perplexity {gate[quantization]:.3f} is {gate['change']:+.1%} "
                f"off the original's {reference:.3f} (limit {limit:.0%})"
            )
    except Exception as exc:  # the converter's errors are of every kind (ValueError, KeyError…)
        record["error"] = f"CTranslate2 cannot convert {source.name}: {type(exc).__name__}: {exc}"
        shutil.rmtree(staging, ignore_errors=True)
    if record.get("error"):
        # Keep only the verdict: a model that cannot convert is not tried again on every load.
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        log.warning("ct2.convert_refused", model=str(source), quantization=quantization,
                    reason=record["error"])
    else:
        record["files"] = {p.relative_to(staging).as_posix(): p.stat().st_size
                           for p in model_files(staging)}
        log.info("ct2.converted", model=str(source), quantization=quantization,
                 seconds=round(time.perf_counter() - started, 2), path=str(entry),
                 perplexity=round(record["gate"][quantization], 3),
                 reference=round(record["gate"]["reference"], 3))
    record["seconds"] = round(time.perf_counter() - started, 2)
    tmp = staging / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, staging / RECORD)
    os.replace(staging, entry)
    return record


# --- the quality gate ----------------------------------------------------------------------


def perplexity(log_probs: Sequence[Sequence[float]]) -> float:
    """exp of the mean negative log-likelihood over every token of every line."""
    total = sum(-lp for line in log_probs for lp in line)
    count = sum(len(line) for line in log_probs)
    return math.exp(total / max(1, count))


def probe_ids(tokenizer: Any, context: int, lines: Sequence[str] | None = None) -> list[list[int]]:
    """Token ids of the probe ``lines`` (default :func:`probe_lines`), each cut to fit."""
    limit = min(PROBE_TOKENS, context)
    encoded = tokenizer(list(lines or probe_lines()), add_special_tokens=False)["input_ids"]
    return [ids[:limit] for ids in encoded if len(ids) > 1]


def reference_log_probs(source: Path, ids: Sequence[Sequence[int]]) -> list[list[float]]:
    """Per-token log-probabilities (from the second token on) of the original model, fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    model.eval()
    out: list[list[float]] = []
    with torch.inference_mode():
        for row in ids:
            x = torch.tensor([list(row)])
            logp = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), dim=-1)
            out.append(logp.gather(1, x[0, 1:, None])[:, 0].tolist())
    del model
    return out


def converted_log_probs(path: Path, ids: Sequence[Sequence[int]], tokens: Sequence[str], *,
                        device: str, compute_type: str) -> list[list[float]]:
    """The same from the converted model (CTranslate2's ``score_batch``)."""
    import ctranslate2

    generator = ctranslate2.Generator(str(path), device=device, compute_type=compute_type,
                                      intra_threads=_threads())
    try:
        results = generator.score_batch([[tokens[i] for i in row] for row in ids])
        return [list(r.log_probs) for r in results]
    finally:
        del generator


def quality_gate(source: Path, converted: Sequence[tuple[Path, str]], *, device: str,
                 lines: Sequence[str] | None = None) -> dict[str, float]:
    """Perplexity on the probe lines of the original model (fp32, ``reference``) and of each
    ``(folder, compute type)`` conversion (under its compute type); ``change`` is the first
    conversion's relative difference."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    ids = probe_ids(tokenizer, context_size(source), lines)
    if not ids:
        raise CannotConvert("the probe text tokenizes to nothing")
    out = {"reference": perplexity(reference_log_probs(source, ids)),
           "tokens": float(sum(len(r) - 1 for r in ids))}
    for path, compute_type in converted:
        tokens = vocabulary(path)
        out[compute_type] = perplexity(converted_log_probs(
            path, ids, tokens, device=device, compute_type=compute_type))
    out["change"] = out[converted[0][1]] / out["reference"] - 1.0
    return out


def vocabulary(path: Path) -> list[str]:
    """The converted model's tokens, by id."""
    for name in ("vocabulary.json", "vocabulary.txt"):
        file = path / name
        if file.is_file():
            text = file.read_text(encoding="utf-8")
            if name.endswith(".json"):
                tokens: list[str] = json.loads(text)
                return tokens
            return text.split("\n")
    raise CannotConvert(f"no vocabulary in {path}")


def context_size(source: Path) -> int:
    """The positions the model in ``source`` holds (its config; 1024 when it does not say)."""
    try:
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 1024
    return int(config.get("n_positions") or config.get("max_position_embeddings") or 1024)


def _threads() -> int:
    import torch

    return max(1, torch.get_num_threads())
