"""The attention plan is pure: facts in, verdicts out. Facts describe GPUs that cannot exist here."""

from __future__ import annotations

import pytest

from engine.attention import AttentionFacts, ModelSupport, plan_attention
from engine.errors import AttentionUnavailableError, EngineExit, EngineInputError
from engine.runtime import resolve_device, resolve_dtype
from engine.settings import AttentionImpl, DType

AUTO, FA2, SDPA, EAGER = AttentionImpl.AUTO, AttentionImpl.FLASH_ATTENTION_2, AttentionImpl.SDPA, AttentionImpl.EAGER
CPU = AttentionFacts(torch_version="2.13.0+cpu", torch_cuda=None, cuda_available=False)


def gpu(cap: tuple[int, int], fa: str | None = "2.7.4", import_error: str | None = None,
        name: str = "NVIDIA GeForce RTX 4090") -> AttentionFacts:
    return AttentionFacts(torch_version="2.7.1+cu128", torch_cuda="12.8", cuda_available=True, device_name=name,
                          capability=cap, flash_attn_version=fa, flash_attn_import_error=import_error)


def test_auto_on_cpu_picks_sdpa_because_there_is_no_cuda() -> None:
    plan = plan_attention(AUTO, CPU, device="cpu", dtype=DType.FLOAT32)
    assert plan.order == (SDPA, EAGER)
    skipped = plan.skipped()
    assert [v.impl for v in skipped] == [FA2]
    assert skipped[0].failed[0].check == "CUDA"
    assert "no CUDA" in skipped[0].reason


def test_auto_on_ampere_with_a_working_wheel_tries_fa2_first() -> None:
    plan = plan_attention(AUTO, gpu((8, 6)), device="cuda:0", dtype=DType.BFLOAT16)
    assert plan.order == (FA2, SDPA, EAGER)
    assert plan.skipped() == ()


@pytest.mark.parametrize(
    ("facts", "dtype", "support", "check", "words"),
    [
        (gpu((7, 5), name="Tesla T4"), DType.FLOAT16, ModelSupport(), "GPU capability", "7.5"),
        (gpu((8, 6), fa=None), DType.BFLOAT16, ModelSupport(), "flash_attn installed", "not installed"),
        (gpu((8, 6), import_error="ImportError: undefined symbol: _ZN3c105ErrorC2ENS_14SourceLocationESs"),
         DType.BFLOAT16, ModelSupport(), "flash_attn_2_cuda import", "undefined symbol"),
        (gpu((12, 0), fa="2.7.2"), DType.BFLOAT16, ModelSupport(), "Blackwell support", "2.7.3"),
        (gpu((8, 9)), DType.FLOAT32, ModelSupport(), "dtype", "float32"),
        (gpu((9, 0)), DType.BFLOAT16, ModelSupport(head_dim=512), "head dim", "512"),
        (gpu((8, 0)), DType.BFLOAT16, ModelSupport(flash_attn=False, model_class="OldModel"), "model support",
         "OldModel"),
    ],
)
def test_each_fa2_check_names_itself_and_auto_falls_back(facts: AttentionFacts, dtype: DType,
                                                         support: ModelSupport, check: str, words: str) -> None:
    plan = plan_attention(AUTO, facts, device="cuda:0", dtype=dtype, support=support)
    assert plan.order[0] is SDPA
    fa2 = plan.verdict(FA2)
    assert [f.check for f in fa2.failed] == [check]
    assert words in fa2.reason
    with pytest.raises(AttentionUnavailableError) as info:
        plan_attention(FA2, facts, device="cuda:0", dtype=dtype, support=support)
    err = info.value
    assert err.check == check and words in err.message
    assert int(err.exit_code) == int(EngineExit.NOT_SUPPORTED) == 11
    assert err.hint and "auto" in err.hint


def test_blackwell_with_a_new_enough_wheel_is_accepted() -> None:
    assert plan_attention(AUTO, gpu((12, 0), fa="2.8.3"), device="cuda:0", dtype=DType.BFLOAT16).order[0] is FA2


def test_forced_fa2_on_cpu_raises_our_error_with_the_fix() -> None:
    with pytest.raises(AttentionUnavailableError) as info:
        plan_attention(FA2, CPU, device="cpu", dtype=DType.FLOAT32)
    assert info.value.check == "CUDA"
    assert "attention_implementation=flash_attention_2 cannot be used" in info.value.message
    assert "sdpa works here" in (info.value.hint or "")


def test_a_gpu_present_but_device_set_to_cpu_is_named() -> None:
    plan = plan_attention(AUTO, gpu((8, 6)), device="cpu", dtype=DType.BFLOAT16)
    assert "device is set to cpu" in plan.verdict(FA2).reason


def test_model_without_sdpa_falls_back_to_eager_and_forced_sdpa_fails() -> None:
    support = ModelSupport(flash_attn=False, sdpa=False, model_class="Legacy")
    assert plan_attention(AUTO, CPU, device="cpu", dtype=DType.FLOAT32, support=support).order == (EAGER,)
    with pytest.raises(AttentionUnavailableError, match="Legacy does not support sdpa"):
        plan_attention(SDPA, CPU, device="cpu", dtype=DType.FLOAT32, support=support)


def test_forced_eager_and_sdpa_are_single_option_plans() -> None:
    assert plan_attention(EAGER, CPU, device="cpu", dtype=DType.FLOAT32).order == (EAGER,)
    assert plan_attention(SDPA, CPU, device="cpu", dtype=DType.FLOAT32).order == (SDPA,)


def test_plan_serialises_every_verdict() -> None:
    doc = plan_attention(AUTO, CPU, device="cpu", dtype=DType.FLOAT32).to_dict()
    assert doc["order"] == ["sdpa", "eager"]
    verdicts = doc["verdicts"]
    assert isinstance(verdicts, list)
    assert [v["impl"] for v in verdicts] == ["flash_attention_2", "sdpa", "eager"]


def test_dtype_must_be_resolved_first() -> None:
    with pytest.raises(ValueError, match="resolve dtype"):
        plan_attention(AUTO, CPU, device="cpu", dtype=DType.AUTO)


@pytest.mark.parametrize(
    ("setting", "facts", "device", "dtype"),
    [
        ("auto", CPU, "cpu", DType.FLOAT32),
        ("auto", gpu((8, 6)), "cuda:0", DType.BFLOAT16),
        ("auto", gpu((7, 5)), "cuda:0", DType.FLOAT16),
        ("cuda", gpu((9, 0)), "cuda:0", DType.BFLOAT16),
        ("cuda:1", gpu((8, 0)), "cuda:1", DType.BFLOAT16),
        ("cpu", gpu((8, 6)), "cpu", DType.FLOAT32),
    ],
)
def test_device_and_dtype_resolution(setting: str, facts: AttentionFacts, device: str, dtype: DType) -> None:
    assert resolve_device(setting, facts) == device
    assert resolve_dtype(DType.AUTO, device, facts) is dtype
    assert resolve_dtype(DType.FLOAT16, device, facts) is DType.FLOAT16


def test_cuda_device_without_cuda_is_bad_input() -> None:
    with pytest.raises(EngineInputError, match="cannot use CUDA"):
        resolve_device("cuda", CPU)
