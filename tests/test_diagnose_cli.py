"""`vox1-setup explain-error`: text from an argument, a file or stdin; JSON schema; environment-aware answers."""

from __future__ import annotations

import io
import json
import platform
import sys
from pathlib import Path
from typing import Any

import pytest

from vox1_setup.cli import run_cli
from vox1_setup.errors import ExitCode
from vox1_setup.manifest import Manifest, WheelEntry, dump_manifest

ABI_TEXT = ("ImportError: /venv/lib/python3.11/site-packages/flash_attn_2_cuda.cpython-311-x86_64-linux-gnu.so: "
            "undefined symbol: _ZN3c105ErrorC2ENS_14SourceLocationESs")


def _explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = run_cli(["explain-error", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_text_argument(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _explain(capsys, ABI_TEXT)
    assert code == 0
    assert doc["schema"] == "vox1-explain/1"
    assert doc["cause"] == "abi-mismatch"
    assert doc["summary"] and doc["fix"] and "undefined symbol" in doc["matched"]


def test_several_words_are_joined(capsys: pytest.CaptureFixture[str]) -> None:
    _code, doc = _explain(capsys, "RuntimeError:", "FlashAttention", "only", "supports", "Ampere", "GPUs", "or",
                          "newer.")
    assert doc["cause"] == "gpu-unsupported"


def test_file_in_utf16_from_powershell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "activity log.txt"
    log.write_bytes(("line 1\r\nImportError: DLL load failed while importing flash_attn_2_cuda: The specified "
                     "module could not be found.\r\n").encode("utf-16"))
    _code, doc = _explain(capsys, "--file", str(log))
    assert doc["cause"] == "dll-missing"


def test_stdin_dash(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    text = "  Guessing wheel URL: https://x/y.whl\n  Precompiled wheel not found. Building from source...\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    _code, doc = _explain(capsys, "-")
    assert doc["cause"] == "source-build"


def test_unknown_text_says_so_and_points_to_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _explain(capsys, "something odd happened")
    assert code == 0
    assert doc["cause"] is None and doc["matched"] is None
    assert "doctor" in doc["fix"]
    capsys.readouterr()
    run_cli(["explain-error", "something odd happened"])
    assert "Unknown error" in capsys.readouterr().out


def test_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["explain-error", ABI_TEXT]) == 0
    out = capsys.readouterr().out
    assert "Cause:" in out and "[abi-mismatch]" in out and "Fix:" in out


@pytest.mark.parametrize("args", [[], ["   "], ["--file", "/nonexistent/log.txt"]])
def test_no_usable_input_is_bad_input(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert run_cli(["explain-error", *args]) == ExitCode.BAD_INPUT


def test_text_and_file_together_is_bad_input(tmp_path: Path) -> None:
    f = tmp_path / "log"
    f.write_text("x", encoding="utf-8")
    assert run_cli(["explain-error", "x", "--file", str(f)]) == ExitCode.BAD_INPUT


def _wheel_name() -> str:
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    return f"flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-{tag}-{tag}-linux_x86_64.whl"


def test_with_an_environment_names_the_wheel_and_the_command(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    env = {"schema": "vox1-env/1", "os": "linux", "machine": "x86_64", "glibc": "2.35",
           "python": {"version": platform.python_version()},
           "torch": {"version": "2.8.0+cu128", "cuda": "12.8", "cxx11abi": True, "cuda_available": True},
           "driver": {"version": "570.86.10", "cuda": "12.8"},
           "gpus": [{"index": 0, "name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}]}
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps(env), encoding="utf-8")
    entry = WheelEntry.from_filename(_wheel_name(), url=f"https://example.invalid/{_wheel_name()}", sha256=None,
                                     size=123, evidence="listed")
    manifest = tmp_path / "wheels.json"
    manifest.write_bytes(dump_manifest(Manifest(entries=(entry,), origin=str(manifest))))
    _code, doc = _explain(capsys, ABI_TEXT, "--env", str(env_file), "--manifest", str(manifest))
    assert doc["cause"] == "abi-mismatch"
    assert "cxx11abiTRUE" in doc["fix"]  # this torch's ABI, from the environment
    assert doc["wheel"] == _wheel_name() and doc["command"].startswith("vox1-setup install")
    # the same error with an environment that no wheel fits says so
    env["torch"]["version"] = "2.99.0+cu128"  # type: ignore[index]
    env_file.write_text(json.dumps(env), encoding="utf-8")
    _code, doc = _explain(capsys, ABI_TEXT, "--env", str(env_file), "--manifest", str(manifest))
    assert doc["wheel"] is None and doc["advice"]


def test_a_legacy_windows_code_page_does_not_crash_the_output(tmp_path: Path) -> None:
    """Redirected output on Windows is cp1252/cp850: typographic characters are replaced, not fatal."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONIOENCODING": "cp1252", "VOX1_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "vox1_setup", "explain-error",
                           "FlashAttention only supports Ampere GPUs or newer."],
                          capture_output=True, env=env, check=False, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert b"[gpu-unsupported]" in proc.stdout


def test_quiet_prints_only_the_result_line(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run_cli(["-q", "explain-error", ABI_TEXT]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("abi-mismatch: ")
