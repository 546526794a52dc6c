"""Real tiny Llama / Qwen2 checkpoints, saved and reloaded offline, through the engine's loader."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.activity_log import ActivityLog
from engine.adapters.base import LoadedModel, LoadSpec
from engine.adapters.causal_lm import CausalLMAdapter, CausalLMLoaded
from engine.attention import AttentionFacts, ModelSupport
from engine.errors import AttentionUnavailableError, EngineExit, EngineInputError
from engine.facts import flash_attn_import_error, gather_facts
from engine.loader import live_attention, load_model
from engine.model_host import ModelHost
from engine.settings import AttentionImpl, DType, EngineSettings
from tests.support.engine_models import save_tiny_model, write_settings
from tests.support.venvs import write_fixture_package

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
UNDEFINED = "undefined symbol: _ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {family: save_tiny_model(root, family) for family in ("llama", "qwen2")}


@pytest.fixture(scope="module")
def cpu_facts() -> AttentionFacts:
    return gather_facts()


@pytest.fixture
def no_import_cache() -> Iterator[None]:
    """The import check and transformers' availability check are cached per process: reset around a test."""
    from transformers.utils import import_utils

    def clear() -> None:
        flash_attn_import_error.cache_clear()
        for name in ("is_flash_attn_2_available", "is_flash_attn_greater_or_equal"):
            getattr(getattr(import_utils, name, None), "cache_clear", lambda: None)()

    clear()
    yield
    clear()


def fixture_flash_attn(site: Path, *, broken: bool) -> None:
    """A flash-attn 2.7.4 distribution; `broken`: its CUDA extension fails like a wheel built for another ABI."""
    err = f"raise ImportError({(str(site / 'flash_attn_2_cuda.so') + ': ' + UNDEFINED)!r})\n" if broken else ""
    write_fixture_package(site, "flash_attn", {"flash_attn/__init__.py": err + "__version__ = '2.7.4'\n",
                                               "flash_attn_2_cuda.py": err}, "2.7.4", dist_name="flash_attn")


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_eager_and_sdpa_agree_on_padded_batches(models: dict[str, Path], family: str) -> None:
    import torch

    adapter = CausalLMAdapter(max_new_tokens=6)
    texts = ["a longer prompt for the left padding test", "short"]
    logits: dict[str, Any] = {}
    tokens: dict[str, Any] = {}
    for impl in (AttentionImpl.EAGER, AttentionImpl.SDPA):
        loaded = adapter.load(LoadSpec(str(models[family]), impl, DType.FLOAT32, "cpu"))
        assert loaded.live_attention() == {"config": impl.value}
        ids, mask = loaded.batch_inputs(texts)
        with torch.inference_mode():
            logits[impl.value] = loaded.model(input_ids=ids, attention_mask=mask).logits
        tokens[impl.value] = loaded.generate(texts)
        mask_b = mask.bool()
    assert tokens["eager"] == tokens["sdpa"]
    assert all(len(t["tokens"]) >= 1 for t in tokens["sdpa"])
    assert torch.allclose(logits["eager"][mask_b], logits["sdpa"][mask_b], atol=1e-5, rtol=1e-4)


def test_batched_generation_matches_one_by_one(models: dict[str, Path]) -> None:
    loaded = CausalLMAdapter(max_new_tokens=5).load(LoadSpec(str(models["llama"]), AttentionImpl.SDPA,
                                                             DType.FLOAT32, "cpu"))
    texts = ["first text, longer than the second", "second", "third one"]
    assert loaded.generate(texts) == [loaded.generate([t])[0] for t in texts]


def test_auto_on_cpu_loads_sdpa_says_no_cuda_and_reads_it_back(models: dict[str, Path],
                                                                 cpu_facts: AttentionFacts) -> None:
    log = ActivityLog(echo=False)
    loaded, report = load_model(CausalLMAdapter(), model_path=str(models["qwen2"]), requested=AttentionImpl.AUTO,
                                facts=cpu_facts, device="cpu", dtype=DType.FLOAT32, log=log)
    assert report.used is AttentionImpl.SDPA and report.in_use == "sdpa"
    assert report.live == {"config": "sdpa"}
    assert report.attempts[0].impl is AttentionImpl.FLASH_ATTENTION_2 and "no CUDA" in (report.attempts[0].error or "")
    assert any(line.startswith("⚠️ Flash Attention 2 not used: no CUDA") and line.endswith("using sdpa instead")
               for line in log.lines)
    assert log.lines[-1] == "Attention implementation in use: sdpa (config=sdpa)"
    # what transformers really runs, not what was asked
    assert isinstance(loaded, CausalLMLoaded)
    assert loaded.model.config._attn_implementation == "sdpa"


def test_forced_fa2_on_cpu_raises_our_error(models: dict[str, Path], cpu_facts: AttentionFacts) -> None:
    with pytest.raises(AttentionUnavailableError) as info:
        load_model(CausalLMAdapter(), model_path=str(models["llama"]), requested=AttentionImpl.FLASH_ATTENTION_2,
                   facts=cpu_facts, device="cpu", dtype=DType.FLOAT32, log=ActivityLog(echo=False))
    assert info.value.check == "CUDA" and "no CUDA" in info.value.message


def test_broken_flash_attn_wheel_is_detected_and_auto_falls_back(
        models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_import_cache: None) -> None:
    site = tmp_path / "site"
    fixture_flash_attn(site, broken=True)
    monkeypatch.syspath_prepend(str(site))
    facts = gather_facts()  # real metadata look-up and a real import in a child interpreter
    assert facts.flash_attn_version == "2.7.4"
    assert facts.flash_attn_import_error is not None and UNDEFINED in facts.flash_attn_import_error
    # The GPU cannot exist here: the facts say Ampere, everything else is what this interpreter found.
    on_gpu = dataclasses.replace(facts, cuda_available=True, capability=(8, 6), device_name="NVIDIA RTX A4000")
    log = ActivityLog(echo=False)
    _loaded, report = load_model(CudaStandIn(), model_path=str(models["llama"]), requested=AttentionImpl.AUTO,
                                 facts=on_gpu, device="cuda:0", dtype=DType.BFLOAT16, log=log)
    assert report.in_use == "sdpa"
    assert log.lines[0] == "Flash Attention 2.7.4 detected - attempting to use it"
    fallback = next(line for line in log.lines if line.startswith("⚠️"))
    assert fallback.startswith("⚠️ Flash Attention 2 not used: flash-attn 2.7.4 is installed but")
    assert "does not import" in fallback and UNDEFINED in fallback and fallback.endswith("using sdpa instead")
    with pytest.raises(AttentionUnavailableError) as info:
        load_model(CudaStandIn(), model_path=str(models["llama"]), requested=AttentionImpl.FLASH_ATTENTION_2,
                   facts=on_gpu, device="cuda:0", dtype=DType.BFLOAT16, log=ActivityLog(echo=False))
    assert info.value.check == "flash_attn_2_cuda import" and "vox1-setup install" in (info.value.hint or "")


class CudaStandIn:
    """Runs the real adapter on the CPU where the plan said cuda:0 (no GPU here); can fail FA2's first forward."""

    def __init__(self, fail_fa2_smoke: bool = False) -> None:
        self.inner = CausalLMAdapter()
        self.name = "causal-lm"
        self.fail_fa2_smoke = fail_fa2_smoke

    def support(self, model_path: str) -> ModelSupport:
        return self.inner.support(model_path)

    def load(self, spec: LoadSpec) -> LoadedModel:
        loaded = self.inner.load(dataclasses.replace(spec, device="cpu"))
        if self.fail_fa2_smoke and spec.attention is AttentionImpl.FLASH_ATTENTION_2:
            def smoke() -> None:
                raise RuntimeError("FlashAttention only supports Ampere GPUs or newer.")
            loaded.smoke = smoke  # type: ignore[method-assign]
        return loaded


def ampere_facts(cpu: AttentionFacts) -> AttentionFacts:
    return dataclasses.replace(cpu, cuda_available=True, capability=(8, 6), device_name="NVIDIA RTX A4000",
                               flash_attn_version="2.7.4", flash_attn_import_error=None)


def test_transformers_refusing_fa2_at_load_falls_back_under_auto(
        models: dict[str, Path], cpu_facts: AttentionFacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        no_import_cache: None) -> None:
    fixture_flash_attn(tmp_path / "site", broken=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    log = ActivityLog(echo=False)
    _loaded, report = load_model(CudaStandIn(), model_path=str(models["llama"]), requested=AttentionImpl.AUTO,
                                 facts=ampere_facts(cpu_facts), device="cuda:0", dtype=DType.BFLOAT16, log=log)
    assert [(a.impl, a.stage) for a in report.attempts] == [(AttentionImpl.FLASH_ATTENTION_2, "load"),
                                                           (AttentionImpl.SDPA, "ok")]
    assert report.in_use == "sdpa"
    assert any("Flash Attention 2 failed to load" in line and "using sdpa instead" in line for line in log.lines)
    # forced: our error, naming the stage, not a transformers stack trace
    with pytest.raises(AttentionUnavailableError) as info:
        load_model(CudaStandIn(), model_path=str(models["llama"]), requested=AttentionImpl.FLASH_ATTENTION_2,
                   facts=ampere_facts(cpu_facts), device="cuda:0", dtype=DType.BFLOAT16, log=ActivityLog(echo=False))
    assert info.value.check == "load"


def test_smoke_forward_failure_falls_back(models: dict[str, Path], cpu_facts: AttentionFacts) -> None:
    log = ActivityLog(echo=False)
    # transformers would accept FA2 on a Turing GPU and fail at the first forward: the smoke test catches it
    adapter = CudaStandIn(fail_fa2_smoke=True)
    orig = adapter.inner.load

    def load_fa2_as_eager(spec: LoadSpec) -> CausalLMLoaded:  # FA2 kernels cannot run on this CPU
        impl = AttentionImpl.EAGER if spec.attention is AttentionImpl.FLASH_ATTENTION_2 else spec.attention
        return orig(dataclasses.replace(spec, attention=impl))

    adapter.inner.load = load_fa2_as_eager  # type: ignore[method-assign]
    _loaded, report = load_model(adapter, model_path=str(models["qwen2"]), requested=AttentionImpl.AUTO,
                                 facts=ampere_facts(cpu_facts), device="cuda:0", dtype=DType.BFLOAT16, log=log)
    assert report.attempts[0].stage == "smoke" and "Ampere" in (report.attempts[0].error or "")
    assert report.in_use == "sdpa"
    assert any("first forward pass failed" in line for line in log.lines)


def test_live_attention_reads_sub_configs() -> None:
    import transformers

    outer = transformers.PretrainedConfig()
    outer._attn_implementation = "sdpa"
    llama_config: Any = transformers.LlamaConfig
    talker = llama_config(hidden_size=64, num_attention_heads=4)
    talker._attn_implementation = "flash_attention_2"
    outer.talker_config = talker
    assert live_attention(outer) == {"config": "sdpa", "config.talker_config": "flash_attention_2"}


def test_apply_settings_reloads_only_when_needed_and_keeps_the_old_model_on_failure(
        models: dict[str, Path], cpu_facts: AttentionFacts) -> None:
    log = ActivityLog(echo=False)
    start = EngineSettings(model_path=str(models["llama"]), attention_implementation=AttentionImpl.EAGER)
    host = ModelHost(start, CausalLMAdapter(), cpu_facts, log)
    host.load()
    first = host.loaded
    same = host.apply_settings(start.with_value("batch_size", 2))
    assert (same.reloaded, same.ok) == (False, True) and host.loaded is first and host.settings.batch_size == 2
    changed = host.apply_settings(host.settings.with_value("attention_implementation", "sdpa"))
    assert changed.reloaded and changed.changed == ("attention_implementation",)
    assert host.report is not None and host.report.in_use == "sdpa"
    working = host.loaded
    bad = host.apply_settings(host.settings.with_value("attention_implementation", "flash_attention_2"))
    assert not bad.ok and not bad.reloaded and "flash_attention_2 cannot be used" in (bad.error or "")
    assert host.loaded is working and host.settings.attention_implementation is AttentionImpl.SDPA
    assert "still using the previous model" in log.lines[-1]


def test_python_dash_m_engine_runs_the_pipeline(models: dict[str, Path], tmp_path: Path) -> None:
    settings = write_settings(tmp_path / "settings.json", model_path=str(models["llama"]), max_chunk_chars=30,
                              max_new_tokens=3, activity_log=str(tmp_path / "activity.log"))
    text = "Hello world. This is the engine, speaking in chunks! Nothing may be lost. Ever."
    out = subprocess.run([sys.executable, "-m", "engine", "--settings", str(settings), "--text", text, "--json"],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == EngineExit.OK, out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "vox1-engine-run/1" and doc["ok"] and doc["attention"] == "sdpa"
    assert " ".join(c["text"] for c in doc["chunks"]) == text
    assert all(c["output"]["tokens"] for c in doc["chunks"])
    assert doc["load"]["live"] == {"config": "sdpa"}
    logged = (tmp_path / "activity.log").read_text(encoding="utf-8")
    assert "Attention implementation in use: sdpa" in logged and "Finished 4 chunks" in logged


def test_a_missing_model_is_bad_input(tmp_path: Path, cpu_facts: AttentionFacts) -> None:
    with pytest.raises(EngineInputError, match="cannot read the model at") as info:
        load_model(CausalLMAdapter(), model_path=str(tmp_path / "nowhere"), requested=AttentionImpl.AUTO,
                   facts=cpu_facts, device="cpu", dtype=DType.FLOAT32, log=ActivityLog(echo=False))
    assert info.value.exit_code == EngineExit.BAD_INPUT and "model_path" in (info.value.hint or "")


def test_python_dash_m_engine_reports_bad_settings(tmp_path: Path) -> None:
    bad = write_settings(tmp_path / "s.json", attention_implementation="flash")
    out = subprocess.run([sys.executable, "-m", "engine", "--settings", str(bad), "--json"], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    assert out.returncode == EngineExit.BAD_INPUT
    assert "attention_implementation" in out.stderr and "hint:" in out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "vox1-engine-load/1" and doc["error"]["exit_code"] == 2
