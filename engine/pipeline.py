"""Text in, outputs out, in order: chunk → sort by length → batch → generate → reorder → report.

The batch size is the settings' integer, or under "auto" measured on the GPU (two small batches on the
longest chunk, see `engine.batching`), or the CPU default. The OOM-learned cap is kept by the host and
applies to the next run too. Every chunk is either in `outputs` or in `failures`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.batching import (
    BatchEstimate,
    BatchRunner,
    ChunkFailure,
    CudaMeter,
    MemoryMeter,
    measure_auto_batch,
)
from engine.chunking import Chunk, chunk_text
from engine.errors import EngineError
from engine.model_host import ModelHost
from engine.options import engine_options

RUN_SCHEMA = "vox1-engine-run/1"


@dataclass(frozen=True)
class PipelineResult:
    chunks: tuple[Chunk, ...]
    outputs: tuple[Any, ...]  # original chunk order; None where the chunk failed
    failures: tuple[ChunkFailure, ...]
    batch_size: int  # the batch size the run started with
    batch_source: str  # "settings", "auto (measured)", "auto (CPU default)", "remembered cap"
    final_cap: int
    estimate: BatchEstimate | None
    attention: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, object]:
        return {
            "schema": RUN_SCHEMA,
            "ok": self.ok,
            "attention": self.attention,
            "batch_size": self.batch_size,
            "batch_source": self.batch_source,
            "final_cap": self.final_cap,
            "estimate": self.estimate.to_dict() if self.estimate else None,
            "seconds": round(self.seconds, 3),
            "chunks": [{**c.to_dict(), "output": o} for c, o in zip(self.chunks, self.outputs, strict=True)],
            "failures": [f.to_dict() for f in self.failures],
        }


class Pipeline:
    def __init__(self, host: ModelHost, meter: Callable[[str], MemoryMeter] = CudaMeter) -> None:
        self.host = host
        self.meter = meter  # device → memory counters for `batch_size: auto`

    @property
    def log(self) -> Callable[[str], None]:
        return self.host.log

    def _batch_size(self, longest: str) -> tuple[int, str, BatchEstimate | None]:
        settings = self.host.settings
        if isinstance(settings.batch_size, int):
            return settings.batch_size, "settings", None
        if self.host.runner is not None:
            return self.host.runner.cap, "remembered cap", None
        report = self.host.report
        loaded = self.host.loaded
        if report is None or loaded is None:
            raise EngineError("the model is not loaded")
        if not report.device.startswith("cuda"):
            return self.host.cpu_batch_size(), "auto (CPU default)", None
        estimate, peaks = measure_auto_batch(lambda n: loaded.generate([longest] * n), self.meter(report.device),
                                             max_batch=engine_options(settings).max_batch)
        mib = 1024 * 1024
        measured = ", ".join(f"batch {p.batch}: {p.peak_bytes / mib:.0f} MiB" for p in peaks)
        self.log(f"Batch size auto → {estimate.batch} (peak {measured}; {estimate.reason})")
        return estimate.batch, "auto (measured)", estimate

    def run(self, text: str, *, progress: Callable[[int, int], None] | None = None) -> PipelineResult:
        started = time.perf_counter()
        loaded = self.host.loaded
        if loaded is None:
            raise EngineError("the model is not loaded")
        max_chars = engine_options(self.host.settings).max_chunk_chars
        chunks = tuple(chunk_text(text, max_chars))
        attention = self.host.report.in_use if self.host.report else None
        if not chunks:
            self.log("Nothing to synthesize (empty text)")
            return PipelineResult((), (), (), 0, "none", self.host.runner.cap if self.host.runner else 0, None,
                                  attention, time.perf_counter() - started)
        texts = [c.text for c in chunks]
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # longest first: less padding, early OOM
        self.log(f"Split text into {len(chunks)} chunks (max {max_chars} characters)")
        batch, source, estimate = self._batch_size(texts[order[0]])
        runner = self.host.runner
        if runner is None:
            runner = self.host.runner = BatchRunner(batch, log=self.log)
        elif runner.cap < batch:  # an earlier run hit out-of-memory at this size
            batch, source = runner.cap, "remembered cap"
        runner.cap = batch
        self.log(f"Batch size: {batch} ({source})")

        def report_progress(done: int, total: int) -> None:
            self.log(f"Progress: {done}/{total} chunks")
            if progress:
                progress(done, total)

        result = runner.run(texts, loaded.generate, order=order, progress=report_progress)
        seconds = time.perf_counter() - started
        if result.failures:
            self.log(f"❌ Finished in {seconds:.1f} s with {len(result.failures)} failed chunk(s): "
                     + ", ".join(str(f.index) for f in result.failures))
        else:
            self.log(f"✅ Finished {len(chunks)} chunks in {seconds:.1f} s")
        return PipelineResult(chunks, result.outputs, result.failures, batch, source, result.cap, estimate,
                              attention, seconds)
