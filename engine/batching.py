"""Batch sizes from measurements, and running batches so that no chunk is ever lost.

- `estimate_batch` (pure): peak memory measured at two small batches gives a per-item cost and a base;
  the largest batch whose extrapolated peak fits the memory this process can use, minus a margin, wins.
  "Can use" = free device memory (`torch.cuda.mem_get_info`, not the total) + what torch's caching
  allocator already holds, because the measured peaks count the weights and cached blocks too.
- `measure_auto_batch` (torch): resets the peak counter, runs the two batches, calls the estimator.
- `BatchRunner`: runs batches; on out-of-memory it frees the cache, halves the batch and remembers the
  lower cap for the rest of the run and for later runs; any other failure splits the batch to isolate the
  bad chunk. A chunk that still fails alone is reported with its index and text, never skipped.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MARGIN = 0.15  # fragmentation and allocator slack; accelerate's finder backs off ×0.9 per retry
DEFAULT_MAX_BATCH = 256
DEFAULT_CPU_BATCH = 4
SAMPLE_BATCHES = (1, 4)
OOM_MARKERS = ("out of memory", "can't allocate memory", "not enough memory", "failed to allocate memory")


@dataclass(frozen=True)
class PeakSample:
    batch: int
    peak_bytes: int


@dataclass(frozen=True)
class BatchEstimate:
    batch: int
    per_item_bytes: int
    base_bytes: int
    budget_bytes: int
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"batch": self.batch, "per_item_bytes": self.per_item_bytes, "base_bytes": self.base_bytes,
                "budget_bytes": self.budget_bytes, "reason": self.reason}


def estimate_batch(a: PeakSample, b: PeakSample, *, available_bytes: int, margin: float = DEFAULT_MARGIN,
                   max_batch: int = DEFAULT_MAX_BATCH) -> BatchEstimate:
    """Largest batch whose linear extrapolation of the peak fits `available_bytes × (1 - margin)`."""
    if a.batch == b.batch:
        raise ValueError("two different batch sizes are needed")
    lo, hi = sorted((a, b), key=lambda s: s.batch)
    per_item = max(0, (hi.peak_bytes - lo.peak_bytes) // (hi.batch - lo.batch))
    base = max(0, lo.peak_bytes - per_item * lo.batch)
    budget = int(available_bytes * (1.0 - margin))
    if per_item == 0:
        return BatchEstimate(max_batch, 0, base, budget, "peak memory did not grow with the batch; using the maximum")
    if base + per_item > budget:
        return BatchEstimate(1, per_item, base, budget, "even batch 1 exceeds the memory budget; using 1")
    batch = min(max_batch, (budget - base) // per_item)
    mib = 1024 * 1024
    return BatchEstimate(int(batch), per_item, base, budget,
                         f"{per_item / mib:.1f} MiB per item + {base / mib:.0f} MiB base fits "
                         f"{budget / mib:.0f} MiB ({margin:.0%} margin kept)")


def is_oom(exc: BaseException) -> bool:
    """torch's OOM types, Python's MemoryError, or the CPU allocator's RuntimeError text."""
    try:
        import torch
    except ImportError:  # pragma: no cover - the engine always has torch
        pass
    else:
        types = tuple(t for t in (getattr(torch.cuda, "OutOfMemoryError", None),
                                  getattr(torch, "OutOfMemoryError", None)) if isinstance(t, type))
        if types and isinstance(exc, types):
            return True
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MARKERS)


def free_memory() -> None:
    """Drop what an OOM'd batch left behind and return cached blocks to the driver."""
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    cuda: Any = torch.cuda
    if cuda.is_available() and cuda.is_initialized():
        cuda.empty_cache()


def measure_auto_batch(run: Callable[[int], object], *, device: str, margin: float = DEFAULT_MARGIN,
                       max_batch: int = DEFAULT_MAX_BATCH,
                       samples: tuple[int, int] = SAMPLE_BATCHES) -> tuple[BatchEstimate, tuple[PeakSample, ...]]:
    """Run `run(batch)` at two small batches on a CUDA device and extrapolate against free memory."""
    import torch

    dev = torch.device(device)
    peaks = []
    for batch in samples:
        free_memory()
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        run(batch)
        torch.cuda.synchronize(dev)
        peaks.append(PeakSample(batch, int(torch.cuda.max_memory_allocated(dev))))
    free_bytes, _total = torch.cuda.mem_get_info(dev)
    available = int(free_bytes) + int(torch.cuda.memory_reserved(dev))
    return estimate_batch(peaks[0], peaks[1], available_bytes=available, margin=margin,
                          max_batch=max_batch), tuple(peaks)


@dataclass(frozen=True)
class ChunkFailure:
    index: int
    text: str
    error: str
    out_of_memory: bool

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "text": self.text, "error": self.error, "out_of_memory": self.out_of_memory}


@dataclass(frozen=True)
class BatchEvent:
    kind: str  # "ok", "oom", "error", "failed"
    size: int
    indices: tuple[int, ...]
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "size": self.size, "indices": list(self.indices), "detail": self.detail}


@dataclass(frozen=True)
class BatchRunResult:
    outputs: tuple[Any, ...]  # in the original order; None where the chunk failed
    failures: tuple[ChunkFailure, ...]
    start_cap: int
    cap: int  # the cap after this run (lower than start_cap after an OOM)
    events: tuple[BatchEvent, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.failures


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class BatchRunner:
    """Runs `generate` over batches; the cap it learns from OOMs outlives a run (kept by its owner)."""

    def __init__(self, cap: int, *, on_oom: Callable[[], None] = free_memory,
                 log: Callable[[str], None] | None = None) -> None:
        if cap < 1:
            raise ValueError("batch cap must be >= 1")
        self.cap = cap
        self._on_oom = on_oom
        self._log = log or (lambda _m: None)

    def run(self, items: Sequence[str], generate: Callable[[list[str]], Sequence[Any]], *,
            order: Sequence[int] | None = None,
            progress: Callable[[int, int], None] | None = None) -> BatchRunResult:
        """`order`: the processing order (default: longest first, so an OOM shows up on the first batch)."""
        n = len(items)
        if order is None:
            order = sorted(range(n), key=lambda i: -len(items[i]))
        if sorted(order) != list(range(n)):
            raise ValueError("order must be a permutation of the item indices")
        start_cap = self.cap
        outputs: list[Any] = [None] * n
        failures: list[ChunkFailure] = []
        events: list[BatchEvent] = []
        pending: deque[int] = deque(order)
        isolate: deque[list[int]] = deque()  # halves of a batch that failed for a reason other than memory
        done = 0
        while isolate or pending:
            batch = isolate.popleft() if isolate else [pending.popleft() for _ in range(min(self.cap, len(pending)))]
            try:
                results = list(generate([items[i] for i in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"the model returned {len(results)} outputs for {len(batch)} inputs")
            except Exception as exc:
                oom = is_oom(exc)
                if oom:
                    self._on_oom()
                if len(batch) == 1:
                    idx = batch[0]
                    what = "out of memory even at batch size 1" if oom else _short(exc)
                    failures.append(ChunkFailure(idx, items[idx], what if not oom else f"{what} ({_short(exc)})",
                                                 oom))
                    events.append(BatchEvent("failed", 1, (idx,), what))
                    self._log(f"❌ Chunk {idx} failed at batch size 1: {what} - text: {items[idx]!r}")
                    done += 1
                    if progress:
                        progress(done, n)
                elif oom:
                    self.cap = max(1, min(self.cap, len(batch) // 2))
                    pending.extendleft(reversed(batch))
                    events.append(BatchEvent("oom", len(batch), tuple(batch), f"cap now {self.cap}"))
                    self._log(f"⚠️ Out of memory at batch size {len(batch)} - splitting; batch size is now "
                              f"capped at {self.cap}")
                else:
                    half = len(batch) // 2
                    isolate.extendleft([batch[half:], batch[:half]])
                    events.append(BatchEvent("error", len(batch), tuple(batch), _short(exc)))
                    self._log(f"⚠️ Batch of {len(batch)} failed ({_short(exc)}) - splitting it to find the chunk")
                continue
            for idx, out in zip(batch, results, strict=True):
                outputs[idx] = out
            done += len(batch)
            events.append(BatchEvent("ok", len(batch), tuple(batch)))
            if progress:
                progress(done, n)
        return BatchRunResult(tuple(outputs), tuple(sorted(failures, key=lambda f: f.index)), start_cap, self.cap,
                              tuple(events))
