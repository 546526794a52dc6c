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
from engine.adapters.base import LoadSpec
from engine.adapters.causal_lm import CausalLMAdapter, CausalLMLoaded
from engine.attention import AttentionFacts, ModelSupport
from engine.errors import AttentionUnavailableError, EngineExit, EngineInputError
from engine.facts import flash_attn_import_error, gather_facts
from engine.loader import live_attention, load_model
from engine.model_host import ModelHost
from engine.settings import AttentionImpl, DType, EngineSettings
from tests.support.engine_models import StandInAdapter, save_tiny_model, write_settings
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
    _loaded, report = load_model(StandInAdapter(), model_path=str(models["llama"]), requested=AttentionImpl.AUTO,
                                 facts=on_gpu, device="cuda:0", dtype=DType.BFLOAT16, log=log)
    assert report.in_use == "sdpa"
    assert log.lines[0] == "Flash Attention 2.7.4 detected - attempting to use it"
    fallback = next(line for line in log.lines if line.startswith("⚠️"))
    assert fallback.startswith("⚠️ Flash Attention 2 not used: flash-attn 2.7.4 is installed but")
    assert "does not import" in fallback and UNDEFINED in fallback and fallback.endswith("using sdpa instead")
    with pytest.raises(AttentionUnavailableError) as info:
        load_model(StandInAdapter(), model_path=str(models["llama"]), requested=AttentionImpl.FLASH_ATTENTION_2,
                   facts=on_gpu, device="cuda:0", dtype=DType.BFLOAT16, log=ActivityLog(echo=False))
    assert info.value.check == "flash_attn_2_cuda import" and "vox1-setup install" in (info.value.hint or "")


def ampere_facts(cpu: AttentionFacts) -> AttentionFacts:
    return dataclasses.replace(cpu, cuda_available=True, capability=(8, 6), device_name="NVIDIA RTX A4000",
                               flash_attn_version="2.7.4", flash_attn_import_error=None)


def test_transformers_refusing_fa2_at_load_falls_back_under_auto(
        models: dict[str, Path], cpu_facts: AttentionFacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        no_import_cache: None) -> None:
    fixture_flash_attn(tmp_path / "site", broken=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    log = ActivityLog(echo=False)
    _loaded, report = load_model(StandInAdapter(), model_path=str(models["llama"]), requested=AttentionImpl.AUTO,
                                 facts=ampere_facts(cpu_facts), device="cuda:0", dtype=DType.BFLOAT16, log=log)
    assert [(a.impl, a.stage) for a in report.attempts] == [(AttentionImpl.FLASH_ATTENTION_2, "load"),
                                                           (AttentionImpl.SDPA, "ok")]
    assert report.in_use == "sdpa"
    assert any("Flash Attention 2 failed to load" in line and "using sdpa instead" in line for line in log.lines)
    # forced: our error, naming the stage, not a transformers stack trace
    with pytest.raises(AttentionUnavailableError) as info:
        load_model(StandInAdapter(), model_path=str(models["llama"]), requested=AttentionImpl.FLASH_ATTENTION_2,
                   facts=ampere_facts(cpu_facts), device="cuda:0", dtype=DType.BFLOAT16, log=ActivityLog(echo=False))
    assert info.value.check == "load"


def test_smoke_forward_failure_falls_back(models: dict[str, Path], cpu_facts: AttentionFacts) -> None:
    log = ActivityLog(echo=False)
    # transformers would accept FA2 on a Turing GPU and fail at the first forward: the smoke test catches it
    adapter = StandInAdapter(fail_fa2_smoke=True, fa2_as_eager=True)  # FA2 kernels cannot run on this CPU
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
    app = tmp_path / "VOX-1 app"
    app.mkdir()
    settings = write_settings(app / "settings.json", model_path=str(models["llama"]), max_chunk_chars=30,
                              max_new_tokens=3, activity_log="logs/activity.log")  # relative: beside the settings
    text = "Hello world. This is the engine, speaking in chunks! Nothing may be lost. Ever."
    out = subprocess.run([sys.executable, "-m", "engine", "--settings", str(settings), "--text", text, "--json"],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == EngineExit.OK, out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "vox1-engine-run/1" and doc["ok"] and doc["attention"] == "sdpa"
    assert " ".join(c["text"] for c in doc["chunks"]) == text
    assert all(c["output"]["tokens"] for c in doc["chunks"])
    assert doc["load"]["live"] == {"config": "sdpa"}
    logged = (app / "logs" / "activity.log").read_text(encoding="utf-8")
    assert "Attention implementation in use: sdpa" in logged and "Finished 4 chunks" in logged
    assert out.stderr.count("] Progress: 4/4 chunks") == 1  # the console gets the same lines, timestamped


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


def test_apply_settings_run_options_need_no_reload_and_a_failed_load_keeps_serving(
        models: dict[str, Path], cpu_facts: AttentionFacts, tmp_path: Path) -> None:
    log = ActivityLog(echo=False)
    adapter = StandInAdapter(max_new_tokens=2)
    start = EngineSettings(model_path=str(models["qwen2"]), attention_implementation=AttentionImpl.SDPA)
    host = ModelHost(start, adapter, cpu_facts, log)
    host.load()
    first = host.loaded
    assert isinstance(first, CausalLMLoaded) and first.max_new_tokens == 2
    # max_new_tokens and chunking apply to the next run: same model object, new value
    quick = host.apply_settings(start.with_value("max_new_tokens", 7).with_value("max_chunk_chars", 50))
    assert (quick.reloaded, quick.ok) == (False, True) and host.loaded is first and len(adapter.specs) == 1
    assert first.max_new_tokens == 7
    # a folder with a config but no weights: support() reads it, every load fails → the old model keeps serving
    broken = tmp_path / "no-weights"
    broken.mkdir()
    (broken / "config.json").write_text((models["qwen2"] / "config.json").read_text(encoding="utf-8"),
                                        encoding="utf-8")
    failed = host.apply_settings(host.settings.with_value("model_path", str(broken))
                                 .with_value("attention_implementation", "auto"))
    assert (failed.reloaded, failed.ok) == (False, False)
    assert failed.changed == ("attention_implementation", "model_path")
    assert failed.error is not None and "could not load" in failed.error
    assert host.loaded is first and host.settings.model_path == str(models["qwen2"])
    assert "still using the previous model" in log.lines[-1]
    # dtype is a reload; bad engine options are refused before anything is loaded
    assert host.apply_settings(host.settings.with_value("max_batch", "many")).ok is False
    assert host.apply_settings(host.settings.with_value("dtype", "bfloat16")).reloaded
    assert host.report is not None and host.report.dtype is DType.BFLOAT16 and adapter.specs[-1].dtype is DType.BFLOAT16


def test_apply_settings_builds_the_adapter_the_new_settings_name(models: dict[str, Path],
                                                                 cpu_facts: AttentionFacts) -> None:
    start = EngineSettings(model_path=str(models["llama"]))
    host = ModelHost(start, StandInAdapter(), cpu_facts, ActivityLog(echo=False))
    host.load()
    changed = host.apply_settings(start.with_value("adapter_options", {"max_new_tokens": 1}))
    assert changed.reloaded and changed.changed == ("adapter_options",)
    assert isinstance(host.adapter, CausalLMAdapter) and host.adapter.max_new_tokens == 1
    unknown = host.apply_settings(host.settings.with_value("adapter", "qwen3-tts"))
    assert not unknown.ok and "unknown model adapter 'qwen3-tts'" in (unknown.error or "")
    assert isinstance(host.adapter, CausalLMAdapter)


@pytest.mark.parametrize(("key", "value"), [("max_chunk_chars", 0), ("cpu_batch_size", "four"),
                                            ("max_new_tokens", 2.5), ("adapter_options", [1]),
                                            ("adapter_options", {"temperature": 2})])
def test_bad_engine_options_are_bad_input_and_the_error_report_is_written(tmp_path: Path, key: str,
                                                                          value: object) -> None:
    from engine.__main__ import run

    settings = write_settings(tmp_path / "settings.json", model_path=str(tmp_path), **{key: value})
    report = tmp_path / "out dir" / "report.json"
    assert run(["--settings", str(settings), "--text", "Hi.", "--output", str(report), "-q"]) == EngineExit.BAD_INPUT
    doc = json.loads(report.read_text(encoding="utf-8"))
    assert doc["schema"] == "vox1-engine-load/1" and key in doc["error"]["message"] and doc["error"]["hint"]


class Fa2OnGpu:
    """What a working FA2 setup on an Ampere GPU gives at the adapter interface (no GPU here): the load and the
    first forward pass succeed and the config reads back `reports`."""

    name = "causal-lm"

    def __init__(self, reports: str) -> None:
        self.reports = reports

    def support(self, model_path: str) -> ModelSupport:
        return ModelSupport(head_dim=128, model_class="Qwen3ForCausalLM")

    def load(self, spec: LoadSpec) -> Any:
        reports = self.reports

        class Loaded:
            def smoke(self) -> None:
                pass

            def live_attention(self) -> dict[str, str]:
                return {"config": reports, "config.talker_config": reports}

            def close(self) -> None:
                pass

        return Loaded()


def test_the_activity_log_says_what_users_know_when_fa2_works(cpu_facts: AttentionFacts) -> None:
    log = ActivityLog(echo=False)
    _loaded, report = load_model(Fa2OnGpu("flash_attention_2"), model_path="C:/VOX-1/models/Qwen3 TTS",
                                 requested=AttentionImpl.AUTO, facts=ampere_facts(cpu_facts), device="cuda:0",
                                 dtype=DType.BFLOAT16, log=log)
    assert report.in_use == "flash_attention_2" and not report.fell_back
    assert log.lines == [
        "Flash Attention 2.7.4 detected - attempting to use it",
        "Loading C:/VOX-1/models/Qwen3 TTS with attention_implementation=flash_attention_2, dtype=bfloat16, "
        "device=cuda:0",
        "✅ Flash Attention 2 enabled successfully",
        "Attention implementation in use: flash_attention_2 (config=flash_attention_2, "
        "config.talker_config=flash_attention_2)",
    ]


def test_what_the_model_reports_wins_over_what_was_asked(cpu_facts: AttentionFacts) -> None:
    log = ActivityLog(echo=False)
    _loaded, report = load_model(Fa2OnGpu("sdpa"), model_path="m", requested=AttentionImpl.AUTO,
                                 facts=ampere_facts(cpu_facts), device="cuda:0", dtype=DType.BFLOAT16, log=log)
    assert (report.used, report.in_use) == (AttentionImpl.FLASH_ATTENTION_2, "sdpa")
    assert "⚠️ requested flash_attention_2 but the model reports sdpa" in log.lines
    assert "✅ Flash Attention 2 enabled successfully" not in log.lines
