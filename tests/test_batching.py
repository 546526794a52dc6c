"""Batch sizing and the OOM back-off: every chunk comes back, in order, or is reported."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.activity_log import ActivityLog
from engine.adapters.base import LoadedModel, LoadSpec
from engine.adapters.causal_lm import CausalLMAdapter
from engine.attention import ModelSupport
from engine.batching import BatchRunner, PeakSample, estimate_batch, is_oom
from engine.facts import gather_facts
from engine.model_host import ModelHost
from engine.pipeline import Pipeline
from engine.settings import EngineSettings
from tests.support.engine_models import save_tiny_model

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
    assert result.cap == 1  # the OOM chunk drove the cap down to 1, and it stays remembered
    assert any(line.startswith("❌ Chunk 3 failed at batch size 1") and repr(bad_oom) in line for line in log.lines)


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


class OomAbove:
    """The real tiny model, on a "GPU" whose memory ends above `limit` chunks per batch (no GPU here)."""

    def __init__(self, limit: int) -> None:
        self.inner = CausalLMAdapter(max_new_tokens=3)
        self.name = "causal-lm"
        self.limit = limit
        self.sizes: list[int] = []

    def support(self, model_path: str) -> ModelSupport:
        return self.inner.support(model_path)

    def load(self, spec: LoadSpec) -> LoadedModel:
        loaded = self.inner.load(spec)
        real = loaded.generate

        def generate(batch: Sequence[str]) -> list[dict[str, Any]]:
            self.sizes.append(len(batch))
            if len(batch) > self.limit:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
            return real(batch)

        loaded.generate = generate  # type: ignore[method-assign,assignment]
        return loaded


@pytest.mark.slow
def test_pipeline_with_a_real_model_survives_oom_in_order(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path, "llama")
    settings = EngineSettings(model_path=str(model), batch_size=8, extra={"max_chunk_chars": 30})
    log = ActivityLog(tmp_path / "activity.log", echo=False)
    adapter = OomAbove(limit=3)
    host = ModelHost(settings, adapter, gather_facts(), log)
    host.load()
    text = " ".join(f"Sentence number {i} is here." for i in range(10))
    result = Pipeline(host).run(text)
    assert result.ok and len(result.chunks) == 10
    assert " ".join(c.text for c in result.chunks) == text
    # outputs are in chunk order and equal to what each chunk gives alone
    assert host.loaded is not None
    assert list(result.outputs) == [host.loaded.generate([c.text])[0] for c in result.chunks]
    assert (result.batch_size, result.final_cap) == (8, 2)
    assert adapter.sizes[:2] == [8, 4]
    # the cap is remembered for the next run
    adapter.sizes.clear()
    second = Pipeline(host).run(text)
    assert second.ok and second.batch_size == 2 and second.batch_source == "remembered cap"
    assert max(adapter.sizes) == 2
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
