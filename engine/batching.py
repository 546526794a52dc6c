"""Batch sizes from measurements, and running batches so that no chunk is ever lost.

- `estimate_batch` (pure): peak memory measured at two small batches gives a per-item cost and a base;
  the largest batch whose extrapolated peak fits the memory this process can use, minus a margin, wins.
  "Can use" = free device memory (`torch.cuda.mem_get_info`, not the total) + what torch's caching
  allocator already holds, because the measured peaks count the weights and cached blocks too.
- `measure_auto_batch`: resets the peak counter, runs the two batches, calls the estimator; the counters
  come from a `MemoryMeter` (`CudaMeter`: `reset_peak_memory_stats`, `max_memory_allocated`, `mem_get_info`).
- `BatchRunner`: runs batches; on out-of-memory it frees the cache, halves the batch and remembers the
  lower cap for the rest of the run and for later runs; any other failure splits the batch to isolate the
  bad chunk. A chunk that still fails alone is reported with its index and text, never skipped.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.errors import short_error

DEFAULT_MARGIN = 0.15  # fragmentation and allocator slack; accelerate's finder backs off ×0.9 per retry
DEFAULT_MAX_BATCH = 256
DEFAULT_CPU_BATCH = 4
SAMPLE_BATCHES = (1, 4)
OOM_MARKERS = ("out of memory", "can't allocate memory", "not enough memory", "failed to allocate memory",
               "cublas_status_alloc_failed")  # cuBLAS cannot get its workspace when the GPU is full


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


class MemoryMeter(Protocol):
    """The device-memory counters the planner reads (`CudaMeter` on a GPU; tests bring their own)."""

    def reset_peak(self) -> None: ...

    def peak_bytes(self) -> int: ...

    def available_bytes(self) -> int: ...


class CudaMeter:
    """`torch.cuda` counters of one device. `available` = free memory (`mem_get_info`, not the total) + what
    the caching allocator holds, since the measured peaks include the weights and cached blocks too."""

    def __init__(self, device: str) -> None:
        import torch

        self._cuda: Any = torch.cuda
        self._device = torch.device(device)

    def reset_peak(self) -> None:
        free_memory()
        self._cuda.synchronize(self._device)
        self._cuda.reset_peak_memory_stats(self._device)

    def peak_bytes(self) -> int:
        self._cuda.synchronize(self._device)
        return int(self._cuda.max_memory_allocated(self._device))

    def available_bytes(self) -> int:
        free_bytes, _total = self._cuda.mem_get_info(self._device)
        return int(free_bytes) + int(self._cuda.memory_reserved(self._device))


def measure_auto_batch(run: Callable[[int], object], meter: MemoryMeter, *, margin: float = DEFAULT_MARGIN,
                       max_batch: int = DEFAULT_MAX_BATCH,
                       samples: tuple[int, int] = SAMPLE_BATCHES) -> tuple[BatchEstimate, tuple[PeakSample, ...]]:
    """Run `run(batch)` at two small batches and extrapolate their peaks against the available memory.

    A sample that runs out of memory ends the measurement: the batch starts at the last size that ran (1 at
    least) and the runner's back-off takes it from there."""
    peaks: list[PeakSample] = []
    for batch in samples:
        meter.reset_peak()
        try:
            run(batch)
            peak = meter.peak_bytes()
        except Exception as exc:
            if not is_oom(exc):
                raise
            peak = None
        if peak is None:  # out of the except block, so the failed run's tensors can be freed
            free_memory()
            start = peaks[-1].batch if peaks else 1
            return BatchEstimate(start, 0, peaks[-1].peak_bytes if peaks else 0, 0,
                                 f"out of memory while measuring batch {batch}; starting at {start}"), tuple(peaks)
        peaks.append(PeakSample(batch, peak))
    return estimate_batch(peaks[0], peaks[1], available_bytes=meter.available_bytes(), margin=margin,
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
        cap_before_oom: int | None = None  # the cap before the current run of OOMs (reset by a success)
        done = 0
        while isolate or pending:
            batch = isolate.popleft() if isolate else [pending.popleft() for _ in range(min(self.cap, len(pending)))]
            error: str | None = None
            oom = False
            try:
                results = list(generate([items[i] for i in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"the model returned {len(results)} outputs for {len(batch)} inputs")
            except Exception as exc:
                error, oom = short_error(exc), is_oom(exc)
            # Outside the except block: its traceback no longer pins the failed batch's tensors, so the
            # cache can really be returned to the driver.
            if error is None:
                for idx, out in zip(batch, results, strict=True):
                    outputs[idx] = out
                done += len(batch)
                cap_before_oom = None
                events.append(BatchEvent("ok", len(batch), tuple(batch)))
                if progress:
                    progress(done, n)
                continue
            if oom:
                self._on_oom()
            if len(batch) == 1:
                idx = batch[0]
                what = f"out of memory even at batch size 1 ({error})" if oom else error
                failures.append(ChunkFailure(idx, items[idx], what, oom))
                events.append(BatchEvent("failed", 1, (idx,), what))
                self._log(f"❌ Chunk {idx} failed at batch size 1: {what} - text: {items[idx]!r}")
                if oom and cap_before_oom is not None and pending and len(items[idx]) > len(items[pending[0]]):
                    # The OOMs came from this chunk's length, not from the batch size: undo what they taught.
                    self.cap, cap_before_oom = cap_before_oom, None
                    self._log(f"Batch size cap back to {self.cap}: only chunk {idx}, the longest, did not fit")
                done += 1
                if progress:
                    progress(done, n)
            elif oom:
                if cap_before_oom is None:
                    cap_before_oom = self.cap
                self.cap = max(1, min(self.cap, len(batch) // 2))
                pending.extendleft(reversed(batch))
                events.append(BatchEvent("oom", len(batch), tuple(batch), f"cap now {self.cap}"))
                self._log(f"⚠️ Out of memory at batch size {len(batch)} - splitting; batch size is now "
                          f"capped at {self.cap}")
            else:
                half = len(batch) // 2
                isolate.extendleft([batch[half:], batch[:half]])
                events.append(BatchEvent("error", len(batch), tuple(batch), error))
                self._log(f"⚠️ Batch of {len(batch)} failed ({error}) - splitting it to find the chunk")
        return BatchRunResult(tuple(outputs), tuple(sorted(failures, key=lambda f: f.index)), start_cap, self.cap,
                              tuple(events))
