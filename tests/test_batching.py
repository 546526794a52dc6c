"""Batch sizing and the OOM back-off: every chunk comes back, in order, or is reported."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.activity_log import ActivityLog
from engine.adapters.causal_lm import CausalLMAdapter
from engine.batching import BatchRunner, PeakSample, estimate_batch, is_oom, measure_auto_batch
from engine.facts import gather_facts
from engine.model_host import ModelHost
from engine.pipeline import Pipeline
from engine.settings import EngineSettings
from tests.support.engine_models import StandInAdapter, save_tiny_model

MIB = 1024 * 1024


def test_estimate_extrapolates_against_available_memory_with_a_margin() -> None:
    # 2 GiB base (weights) + 100 MiB per item; 10 GiB usable, 15% kept back → (8704 - 2048) / 100 = 66
    est = estimate_batch(PeakSample(1, 2148 * MIB), PeakSample(4, 2448 * MIB), available_bytes=10240 * MIB)
    assert (est.per_item_bytes, est.base_bytes, est.batch) == (100 * MIB, 2048 * MIB, 66)
    assert "15% margin" in est.reason


def test_estimate_limits() -> None:
    flat = estimate_batch(PeakSample(1, 500), PeakSample(4, 500), available_bytes=10**9, max_batch=64)
    assert flat.batch == 64 and "did not grow" in flat.reason
    tight = estimate_batch(PeakSample(1, 900 * MIB), PeakSample(4, 1200 * MIB), available_bytes=1000 * MIB)
    assert tight.batch == 1 and "even batch 1" in tight.reason
    capped = estimate_batch(PeakSample(1, MIB), PeakSample(2, 2 * MIB), available_bytes=10**12, max_batch=32)
    assert capped.batch == 32
    with pytest.raises(ValueError, match="two different"):
        estimate_batch(PeakSample(2, 1), PeakSample(2, 5), available_bytes=100)


def test_oom_detection_uses_the_real_types_and_allocator_text() -> None:
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)"))
    assert is_oom(MemoryError())
    assert is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("out of memory"))  # only the types torch raises


class MemoryLimited:
    """Generates like a model whose memory runs out above `limit` items per batch (the real OOM type);
    `poisoned` chunks fail whatever the batch size."""

    def __init__(self, limit: int, poisoned: Sequence[str] = (), oom_alone: Sequence[str] = ()) -> None:
        self.limit, self.poisoned, self.oom_alone = limit, set(poisoned), set(oom_alone)
        self.sizes: list[int] = []

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        self.sizes.append(len(texts))
        if len(texts) > self.limit or self.oom_alone & set(texts):
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(texts) * 512} MiB")
        if self.poisoned & set(texts):
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
        return [{"echo": t} for t in texts]


def texts(n: int) -> list[str]:
    return [f"chunk {i} " + "x" * (i * 7 % 23) for i in range(n)]


def test_oom_backoff_returns_everything_in_order_and_remembers_the_cap() -> None:
    items = texts(37)
    gen = MemoryLimited(limit=5)
    freed: list[int] = []
    log = ActivityLog(echo=False)
    runner = BatchRunner(16, on_oom=lambda: freed.append(1), log=log)
    result = runner.run(items, gen)
    assert result.ok and [o["echo"] for o in result.outputs] == items
    assert (result.start_cap, result.cap) == (16, 4)
    assert gen.sizes[:3] == [16, 8, 4] and max(gen.sizes[3:]) == 4
    assert len(freed) == 2
    assert [e.kind for e in result.events].count("oom") == 2
    assert any("Out of memory at batch size 16" in line for line in log.lines)
    # the next run starts at the learned cap: no OOM again
    gen.sizes.clear()
    again = runner.run(items, gen)
    assert again.ok and again.start_cap == 4 and max(gen.sizes) == 4


def test_a_chunk_failing_at_batch_1_is_reported_not_skipped() -> None:
    items = texts(12)
    bad_oom, bad_err = items[3], items[8]
    gen = MemoryLimited(limit=4, poisoned=[bad_err], oom_alone=[bad_oom])
    log = ActivityLog(echo=False)
    result = BatchRunner(8, on_oom=lambda: None, log=log).run(items, gen)
    assert not result.ok
    assert [(f.index, f.text, f.out_of_memory) for f in result.failures] == [(3, bad_oom, True), (8, bad_err, False)]
    assert "even at batch size 1" in result.failures[0].error
    assert "inf" in result.failures[1].error
    assert [o is None for o in result.outputs] == [i in (3, 8) for i in range(12)]
    assert [o["echo"] for i, o in enumerate(result.outputs) if i not in (3, 8)] == [
        t for i, t in enumerate(items) if i not in (3, 8)]
    assert any(line.startswith("❌ Chunk 3 failed at batch size 1") and repr(bad_oom) in line for line in log.lines)
    # chunk 3 is the longest: its OOMs said nothing about the batch size, so the cap went back to 8 and was
    # then learned from the other chunks: 4, the real limit (not 1)
    assert "Batch size cap back to 8: only chunk 3, the longest, did not fit" in log.lines
    assert result.cap == 4


def test_same_length_chunks_that_fail_alone_keep_the_lowered_cap() -> None:
    # Every chunk as long as the next: no sign that one chunk's length is to blame, memory is simply short.
    items = ["same"] * 6
    gen = MemoryLimited(limit=2, oom_alone=["same"])
    result = BatchRunner(4, on_oom=lambda: None).run(items, gen)
    assert [f.index for f in result.failures] == list(range(6)) and result.cap == 1
    assert gen.sizes == [4, 2, 1, 1, 1, 1, 1, 1]


def test_progress_and_order_validation() -> None:
    seen: list[tuple[int, int]] = []
    result = BatchRunner(3).run(texts(7), MemoryLimited(limit=99), progress=lambda d, t: seen.append((d, t)))
    assert result.ok and seen == [(3, 7), (6, 7), (7, 7)]
    with pytest.raises(ValueError, match="permutation"):
        BatchRunner(2).run(["a", "b"], MemoryLimited(9), order=[0, 0])


def test_wrong_output_count_is_a_failure_not_a_silent_gap() -> None:
    result = BatchRunner(4).run(["a", "b"], lambda batch: [{"x": 1}] * (len(batch) - 1))
    assert [f.index for f in result.failures] == [0, 1]
    assert result.failures[0].error == "RuntimeError: the model returned 0 outputs for 1 inputs"
    assert [e.kind for e in result.events] == ["error", "failed", "failed"]


def oom_above(limit: int, sizes: list[int]) -> Callable[[Sequence[str]], None]:
    """A "GPU" whose memory ends above `limit` chunks per batch: the real OOM type, raised before generating."""

    def check(batch: Sequence[str]) -> None:
        sizes.append(len(batch))
        if len(batch) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    return check


@pytest.mark.slow
def test_pipeline_with_a_real_model_survives_oom_in_order(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path, "llama")
    settings = EngineSettings(model_path=str(model), batch_size=8, extra={"max_chunk_chars": 30})
    log = ActivityLog(tmp_path / "activity.log", echo=False)
    sizes: list[int] = []
    host = ModelHost(settings, StandInAdapter(on_generate=oom_above(3, sizes)), gather_facts(), log)
    host.load()
    text = " ".join(f"Sentence number {i} is here." for i in range(10))
    result = Pipeline(host).run(text)
    assert result.ok and len(result.chunks) == 10
    assert " ".join(c.text for c in result.chunks) == text
    # outputs are in chunk order and equal to what each chunk gives alone
    assert host.loaded is not None
    assert list(result.outputs) == [host.loaded.generate([c.text])[0] for c in result.chunks]
    assert (result.batch_size, result.final_cap) == (8, 2)
    assert sizes[:2] == [8, 4]
    # the cap is remembered for the next run
    sizes.clear()
    second = Pipeline(host).run(text)
    assert second.ok and second.batch_size == 2 and second.batch_source == "remembered cap"
    assert max(sizes) == 2
    assert "Out of memory at batch size 8" in (tmp_path / "activity.log").read_text(encoding="utf-8")


@pytest.mark.slow
def test_pipeline_auto_batch_on_cpu_uses_the_configured_default(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path, "qwen2")
    settings = EngineSettings(model_path=str(model), extra={"cpu_batch_size": 3, "max_new_tokens": 2})
    host = ModelHost(settings, CausalLMAdapter(), gather_facts(), ActivityLog(echo=False))
    host.load()
    result = Pipeline(host).run("One. Two. Three. Four. Five.", progress=None)
    assert result.ok and result.batch_source == "auto (CPU default)" and result.batch_size == 3
    assert result.to_dict()["schema"] == "vox1-engine-run/1"
    empty = Pipeline(host).run("   ")
    assert empty.ok and empty.chunks == ()


def test_the_cpu_allocators_real_error_is_backed_off_like_a_gpu_oom() -> None:
    def generate(batch: list[str]) -> list[int]:
        if len(batch) > 2:  # asks the real CPU allocator for a petabyte: its own "can't allocate memory" error
            torch.empty(2**50 * len(batch), dtype=torch.uint8)
        return [len(t) for t in batch]

    items = texts(9)
    result = BatchRunner(8, on_oom=lambda: None).run(items, generate)
    assert result.ok and list(result.outputs) == [len(t) for t in items] and result.cap == 2
    assert result.events[0].kind == "oom"


class FakeCudaMeter:
    """The `torch.cuda` counters of a GPU that cannot exist here: the peak grows linearly with the batch that
    last ran (base + per item), free memory is fixed; an over-budget batch raises the real OOM type."""

    def __init__(self, base: int, per_item: int, available: int) -> None:
        self.base, self.per_item, self.available = base, per_item, available
        self.last_batch = 0
        self.resets = 0

    def run(self, batch: int) -> None:
        if self.base + self.per_item * batch > self.available:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {self.per_item} bytes")
        self.last_batch = batch

    def reset_peak(self) -> None:
        self.resets += 1
        self.last_batch = 0

    def peak_bytes(self) -> int:
        return self.base + self.per_item * self.last_batch

    def available_bytes(self) -> int:
        return self.available


def test_auto_batch_measures_two_batches_and_extrapolates_against_free_memory() -> None:
    meter = FakeCudaMeter(base=2048 * MIB, per_item=100 * MIB, available=10240 * MIB)
    estimate, peaks = measure_auto_batch(meter.run, meter)
    assert [(p.batch, p.peak_bytes) for p in peaks] == [(1, 2148 * MIB), (4, 2448 * MIB)]
    assert meter.resets == 2  # the peak counter is reset before each sample
    assert (estimate.batch, estimate.per_item_bytes, estimate.base_bytes) == (66, 100 * MIB, 2048 * MIB)


def test_auto_batch_starts_small_when_measuring_itself_runs_out_of_memory() -> None:
    meter = FakeCudaMeter(base=2048 * MIB, per_item=1000 * MIB, available=4096 * MIB)  # batch 4 does not fit
    estimate, peaks = measure_auto_batch(meter.run, meter)
    assert estimate.batch == 1 and [p.batch for p in peaks] == [1]
    assert "out of memory while measuring batch 4" in estimate.reason
    with pytest.raises(ValueError, match="boom"):  # anything else is not swallowed
        measure_auto_batch(lambda _b: (_ for _ in ()).throw(ValueError("boom")), meter)


@pytest.mark.slow
def test_pipeline_auto_batch_on_a_gpu_measures_the_longest_chunk(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path, "llama")
    meter = FakeCudaMeter(base=3000 * MIB, per_item=200 * MIB, available=5000 * MIB)  # (4250 - 3000) / 200 → 6
    seen: list[list[str]] = []

    def on_generate(batch: Sequence[str]) -> None:
        seen.append(list(batch))
        meter.run(len(batch))

    facts = dataclasses.replace(gather_facts(), cuda_available=True, capability=(8, 6), device_name="RTX A4000")
    log = ActivityLog(echo=False)
    host = ModelHost(EngineSettings(model_path=str(model), extra={"max_chunk_chars": 40}),
                     StandInAdapter(on_generate=on_generate), facts, log)
    host.load()
    assert host.report is not None and host.report.device == "cuda:0"
    text = "Short one. " + "A much longer sentence that is the longest chunk here. " + "Tiny. " * 60
    result = Pipeline(host, meter=lambda device: meter).run(text)
    longest = max((c.text for c in result.chunks), key=len)
    assert seen[:2] == [[longest], [longest] * 4]  # two small batches of the longest pending chunk
    assert (result.batch_source, result.batch_size) == ("auto (measured)", 6)
    assert result.estimate is not None and result.estimate.per_item_bytes == 200 * MIB
    assert result.ok and len(result.chunks) > 6 and len(seen[2]) == 6 and max(len(b) for b in seen[2:]) == 6
    assert any(line.startswith("Batch size auto → 6 (peak batch 1: 3200 MiB, batch 4: 3800 MiB;") for line in log.lines)
