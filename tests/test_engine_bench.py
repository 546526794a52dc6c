"""The benchmark: pure recommendation, an in-process CPU run, and `vox1-setup bench` against a real venv."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.bench import Measurement, parse_impls, parse_int_list, recommend, render_table, run_bench, search_largest
from engine.errors import EngineInputError
from engine.facts import gather_facts
from engine.settings import AttentionImpl, load_settings
from tests.support.venvs import make_venv
from vox1_setup.bench_results import last_recommendation, recommendation_from
from vox1_setup.cli import run_cli
from vox1_setup.errors import ExitCode
from vox1_setup.paths import default_paths

EAGER, SDPA, FA2 = AttentionImpl.EAGER, AttentionImpl.SDPA, AttentionImpl.FLASH_ATTENTION_2
QUICK = ["--batch", "1,2", "--seq", "16", "--decode-tokens", "2", "--repeats", "1"]


def m(impl: AttentionImpl, batch: int, decode: float, ok: bool = True) -> Measurement:
    return Measurement(impl, batch, ok, 1000.0, decode if ok else None, None, None if ok else "out of memory")


def test_recommend_picks_the_fastest_and_the_smallest_near_best_batch() -> None:
    rec = recommend([m(EAGER, 1, 100), m(EAGER, 8, 700), m(SDPA, 1, 120), m(SDPA, 8, 900), m(SDPA, 16, 960),
                     m(FA2, 8, 600), m(FA2, 16, 0, ok=False)])
    assert rec is not None
    assert (rec.attention_implementation, rec.batch_size) == (SDPA, 8)  # 900 >= 90% of 960
    assert "sdpa decodes fastest: 960 tokens/s at batch 16" in rec.reason


def test_recommend_prefers_sdpa_within_a_tie_and_fa2_when_clearly_faster() -> None:
    tie = recommend([m(FA2, 4, 1010), m(SDPA, 4, 1000)])
    assert tie is not None and tie.attention_implementation is SDPA
    clear = recommend([m(FA2, 4, 1500), m(SDPA, 4, 1000)])
    assert clear is not None and clear.attention_implementation is FA2
    assert recommend([m(SDPA, 4, 0, ok=False)]) is None


def test_parsers_reject_bad_input() -> None:
    assert parse_int_list("16, 1,4,4") == (1, 4, 16)
    assert parse_impls("auto") == (EAGER, SDPA, FA2)
    assert parse_impls("sdpa,eager") == (SDPA, EAGER)
    for bad in ("0,1", "a", ""):
        with pytest.raises(EngineInputError):
            parse_int_list(bad)
    with pytest.raises(EngineInputError, match="unknown attention"):
        parse_impls("flash")


@pytest.mark.slow
def test_cpu_run_uses_tiny_says_so_and_skips_fa2_with_the_reason() -> None:
    lines: list[str] = []
    partial: list[dict[str, Any]] = []
    doc = run_bench(preset_name="qwen3-tts-talker", impls=(EAGER, SDPA, FA2), batches=(1, 2), seq=16,
                    decode_tokens=2, repeats=1, device_setting="auto", find_max=True, max_search=64,
                    time_limit_s=60, facts=gather_facts(), log=lines.append, checkpoint=partial.append)
    # a partial document after every point, so a run killed from outside still leaves what it measured
    assert [len(d["results"]) for d in partial] == [1, 2, 3, 4] and not any(d["complete"] for d in partial)
    assert doc["complete"] and doc["results"] == partial[-1]["results"]
    assert "INCOMPLETE" in render_table(partial[0]) and "INCOMPLETE" not in render_table(doc)
    assert doc["schema"] == "vox1-bench/1" and doc["preset"]["name"] == "tiny"
    assert doc["requested_preset"] == "qwen3-tts-talker"
    assert any("needs a GPU; measured the tiny preset" in n for n in doc["notes"])
    assert [(r["impl"], r["batch"], r["ok"]) for r in doc["results"]] == [
        ("eager", 1, True), ("eager", 2, True), ("sdpa", 1, True), ("sdpa", 2, True)]
    assert all(r["prefill_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0 for r in doc["results"])
    assert doc["skipped"][0]["impl"] == "flash_attention_2" and "no CUDA" in doc["skipped"][0]["reason"]
    assert doc["in_use"] == {"eager": "eager", "sdpa": "sdpa"}
    assert doc["largest_batch"] == {}  # a CPU has no memory limit to search
    assert any("no largest-batch search on the CPU" in n for n in doc["notes"])
    assert doc["recommendation"]["attention_implementation"] in ("eager", "sdpa")
    table = render_table(doc)
    assert "recommendation: attention_implementation=" in table and "skipped: no CUDA" in table


@pytest.mark.slow
def test_cli_bench_runs_in_the_target_and_writes_the_settings(tmp_path: Path, vox1_home: Path) -> None:
    target = make_venv(tmp_path / "vox1 python", pip=False, real_torch=True)
    code = ("import sys, json; from vox1_setup.cli import run_cli; "
            f"rc = run_cli(['--json', 'bench', '--python', {str(target)!r}, '--write-settings', *{QUICK!r}]); "
            "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    *report_lines, status_line = out.stdout.strip().splitlines()
    status = json.loads(status_line)
    assert status == {"rc": 0, "torch": False}, out.stderr  # the CLI process never imports torch
    doc = json.loads("\n".join(report_lines))
    assert doc["schema"] == "vox1-bench/1" and doc["target_python"] == str(target)
    assert doc["preset"]["name"] == "tiny" and len(doc["results"]) == 4
    written = doc["settings_written"]
    assert written["path"] == str(vox1_home / "config" / "settings.json")
    assert written["values"] == {"attention_implementation": doc["recommendation"]["attention_implementation"]}
    settings = load_settings(Path(written["path"]))
    assert settings.attention_implementation.value == doc["recommendation"]["attention_implementation"]
    assert settings.batch_size == "auto"  # a tiny model's batch size says nothing about VOX-1's model
    # kept for the wizard and doctor
    last = last_recommendation(default_paths())
    assert last is not None and last.python == str(target) and last.preset == "tiny" and last.batch_size is None
    assert last.attention_implementation == doc["recommendation"]["attention_implementation"]


@pytest.mark.slow
def test_cli_bench_quiet_prints_only_the_recommendation(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["bench", "-q", "--impl", "sdpa", *QUICK]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("recommendation: attention_implementation=sdpa, batch_size=")


def test_cli_bench_target_without_torch_is_not_supported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = make_venv(tmp_path / "bare", pip=False)
    assert run_cli(["bench", "--python", str(bare), *QUICK]) == ExitCode.NOT_SUPPORTED
    err = capsys.readouterr().err
    assert "torch or transformers is not installed there" in err and "hint:" in err


def test_cli_bench_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["bench", "--python", str(tmp_path / "nope" / "python")]) == ExitCode.BAD_INPUT
    assert "does not exist" in capsys.readouterr().err
    bad_settings = tmp_path / "settings.json"
    bad_settings.write_text('{"batch_size": 0}', encoding="utf-8")
    # refused before minutes of measuring, and the file is left as it was
    assert run_cli(["bench", "--write-settings", "--settings-file", str(bad_settings), *QUICK]) == ExitCode.BAD_INPUT
    assert "batch_size" in capsys.readouterr().err
    assert bad_settings.read_text(encoding="utf-8") == '{"batch_size": 0}'
    assert run_cli(["bench", "--batch", "0"]) == ExitCode.BAD_INPUT
    assert "batch sizes must be integers >= 1" in capsys.readouterr().err
    assert run_cli(["bench", "--device", "gpu"]) == ExitCode.BAD_INPUT
    assert "use auto, cpu, cuda or cuda:N" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_bench_that_measures_nothing_says_why_and_fails(vox1_home: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--json", "bench", "--impl", "flash_attention_2", *QUICK]) == ExitCode.NOT_SUPPORTED
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert doc["schema"] == "vox1-bench/1" and doc["results"] == [] and doc["recommendation"] is None
    assert doc["skipped"][0]["impl"] == "flash_attention_2" and "no CUDA" in doc["skipped"][0]["reason"]
    assert "nothing could be measured" in out.err and "hint:" in out.err
    assert last_recommendation(default_paths()) is None  # an empty run is not kept as a measurement


@pytest.mark.parametrize(("true_max", "start", "limit", "expected", "exact"),
                         [(37, 4, 4096, 37, True), (1, 1, 64, 1, True), (0, 1, 64, 0, True),
                          (5000, 64, 4096, 4096, False), (3000, 64, 4096, 3000, True)])
def test_largest_batch_search_finds_the_true_maximum(true_max: int, start: int, limit: int, expected: int,
                                                     exact: bool) -> None:
    probed: list[int] = []

    def fits(batch: int) -> bool:
        probed.append(batch)
        return batch <= true_max

    found = search_largest(fits, start=start, limit=limit, deadline=float("inf"))
    assert (found["largest"], found["exact"]) == (expected, exact)
    assert found["probes"] == len(probed) <= 2 * limit.bit_length() + 2


def test_largest_batch_search_stops_at_the_deadline() -> None:
    ticks = iter(range(100))
    found = search_largest(lambda b: True, start=1, limit=10**9, deadline=3, clock=lambda: next(ticks))
    assert found == {"largest": 4, "exact": False, "probes": 3, "note": "time limit reached"}


def test_cli_side_modules_do_not_import_torch() -> None:
    code = ("import sys, engine.bench, engine.pipeline, engine.loader, vox1_setup.commands.bench; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_write_recommendation_stores_the_batch_only_for_the_real_geometry(tmp_path: Path) -> None:
    from vox1_setup.commands.bench import write_recommendation

    path = tmp_path / "app" / "vox1-settings.json"
    rec = {"attention_implementation": "flash_attention_2", "batch_size": 24, "reason": "measured"}
    assert write_recommendation({"preset": {"name": "qwen3-tts-talker"}, "recommendation": rec}, path) == {
        "attention_implementation": "flash_attention_2", "batch_size": 24}
    settings = load_settings(path)
    assert (settings.attention_implementation, settings.batch_size) == (FA2, 24)
    rec = {"attention_implementation": "sdpa", "batch_size": 16, "reason": "measured"}
    assert write_recommendation({"preset": {"name": "tiny"}, "recommendation": rec}, path) == {
        "attention_implementation": "sdpa"}
    assert load_settings(path).batch_size == 24
    assert write_recommendation({"preset": {"name": "tiny"}, "recommendation": None}, path) is None
    assert load_settings(path).attention_implementation is SDPA


def test_the_kept_recommendation_gives_a_batch_size_only_for_vox1s_geometry() -> None:
    rec = {"attention_implementation": "sdpa", "batch_size": 24, "reason": "measured"}
    talker = recommendation_from({"schema": "vox1-bench/1", "preset": {"name": "qwen3-tts-talker"},
                                  "recommendation": rec, "device_name": "NVIDIA H100", "measured_at": "2026-11-28Z"})
    assert talker is not None and (talker.attention_implementation, talker.batch_size) == ("sdpa", 24)
    assert talker.device_name == "NVIDIA H100" and talker.to_dict()["measured_at"] == "2026-11-28Z"
    tiny = recommendation_from({"schema": "vox1-bench/1", "preset": {"name": "tiny"}, "recommendation": rec})
    assert tiny is not None and tiny.batch_size is None
    foreign: list[Any] = [None, [], {"schema": "vox1-bench/0", "preset": {}, "recommendation": rec},
                          {"schema": "vox1-bench/1", "preset": {"name": "tiny"}, "recommendation": None}]
    for doc in foreign:
        assert recommendation_from(doc) is None
