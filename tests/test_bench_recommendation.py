"""The last `vox1-setup bench` measurement feeds doctor's and the wizard's recommendations."""

from __future__ import annotations

from pathlib import Path

from tests.test_doctor import facts, machine
from tests.test_wizard import PICK
from vox1_setup.bench_results import BenchRecommendation, last_recommendation, recommendation_from, save_last
from vox1_setup.doctor import examine
from vox1_setup.paths import default_paths
from vox1_setup.wizard import plan_wizard

TALKER = BenchRecommendation(attention_implementation="sdpa", batch_size=12, reason="best decode tokens/s",
                             preset="qwen3-tts-talker", device_name="NVIDIA GeForce RTX 4090",
                             python="/opt/vox-1/system_python/bin/python", measured_at="2026-11-28T00:00:00Z")


def _doc(preset: str, batch: int, attention: str = "sdpa") -> dict[str, object]:
    return {"schema": "vox1-bench/1", "preset": {"name": preset},
            "recommendation": {"attention_implementation": attention, "batch_size": batch, "reason": "fastest"},
            "device_name": "RTX", "target_python": "/py"}


def test_saved_report_round_trips_and_only_the_talker_preset_gives_a_batch_size(vox1_home: Path) -> None:
    paths = default_paths()
    assert last_recommendation(paths) is None
    save_last(paths, _doc("qwen3-tts-talker", 12))
    rec = last_recommendation(paths)
    assert rec is not None and rec.batch_size == 12 and rec.attention_implementation == "sdpa"
    tiny = recommendation_from(_doc("tiny", 16))
    assert tiny is not None and tiny.batch_size is None
    assert recommendation_from({"schema": "other/1"}) is None


def test_doctor_uses_the_measured_batch_and_attention() -> None:
    plain = examine(facts(machine())).recommendation
    assert plain.batch_size == "auto"
    measured = examine(facts(machine(), bench=TALKER)).recommendation
    assert measured.batch_size == "12"
    assert measured.attention == "sdpa"
    assert "vox1-setup bench" in measured.batch_reason


def test_doctor_ignores_a_measured_fa2_that_cannot_be_used_here() -> None:
    fa2 = BenchRecommendation("flash_attention_2", 8, "fastest", "qwen3-tts-talker", None, None, None)
    rec = examine(facts(machine(cc="7.5", gpu_name="Tesla T4"), bench=fa2)).recommendation
    assert rec.attention == "sdpa"  # Turing: FA2 is impossible whatever was measured


def test_wizard_plan_defaults_to_the_measurement() -> None:
    assert plan_wizard(machine(), PICK).batch_size == "auto"
    plan = plan_wizard(machine(), PICK, bench=TALKER)
    assert plan.batch_size == 12
    assert plan.attention.value == "sdpa"
    cpu = plan_wizard(machine(torch="2.13.0+cpu", cuda=None, cc=None, driver=None), None, bench=TALKER)
    assert cpu.batch_size == "auto"  # a GPU measurement says nothing about a CPU run: the engine's CPU default
