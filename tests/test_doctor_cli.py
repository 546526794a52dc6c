"""`vox1-setup doctor` end to end against real venvs: fixture torch and flash-attn packages, the real probe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.torch_fixtures import CUDA_TORCH, NVIDIA_NAMESPACE
from tests.support.venvs import make_venv, site_packages, write_fixture_package
from vox1_setup.cli import run_cli
from vox1_setup.errors import ExitCode

FLASH_OK = {
    "flash_attn/__init__.py": "import torch\n__version__ = '2.8.3'\n",
    "flash_attn_2_cuda.py": "",
}
FLASH_BROKEN = {
    "flash_attn/__init__.py": "import torch\n__version__ = '2.8.3'\nimport flash_attn_2_cuda\n",
    "flash_attn_2_cuda.py": ("raise ImportError(__file__ + ': undefined symbol: _ZN3c104cuda9SetDeviceEi')\n"),
}


def _venv(root: Path, *, torch: bool = True, flash: dict[str, str] | None = None) -> Path:
    py = make_venv(root, pip=False)
    site = site_packages(root)
    if torch:
        write_fixture_package(site, "torch", CUDA_TORCH, "2.7.1+cu128")
        write_fixture_package(site, "nvidia_cudnn", NVIDIA_NAMESPACE, "9.1")
    if flash is not None:
        write_fixture_package(site, "flash_attn", flash, "2.8.3")
    return py


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = run_cli(["doctor", "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def _checks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in doc["checks"]}


def test_torch_is_imported_once_when_flash_attn_is_absent(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "imports.log"
    monkeypatch.setenv("TORCH_FIXTURE_IMPORT_LOG", str(log))
    py = _venv(tmp_path / "target venv")
    code, doc = _doctor(capsys, "--python", str(py))
    assert log.read_text().count("imported") == 1
    checks = _checks(doc)
    assert doc["schema"] == "vox1-doctor/1"
    assert checks["torch"]["status"] == "pass" and "2.7.1+cu128" in checks["torch"]["summary"]
    assert checks["flash-attn-import"]["status"] == "skip"
    assert code == doc["exit_code"]


def test_a_working_flash_attn_imports_and_torch_is_still_imported_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "imports.log"
    monkeypatch.setenv("TORCH_FIXTURE_IMPORT_LOG", str(log))
    py = _venv(tmp_path / "venv", flash=FLASH_OK)
    _code, doc = _doctor(capsys, "--python", str(py))
    checks = _checks(doc)
    assert checks["flash-attn"]["summary"].startswith("flash-attn 2.8.3")
    assert checks["flash-attn-import"]["status"] == "pass"
    # The probe and the import check share one target process: torch is imported once.
    assert log.read_text().count("imported") == 1


def test_a_broken_flash_attn_fails_with_the_cause(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    py = _venv(tmp_path / "venv", flash=FLASH_BROKEN)
    code, doc = _doctor(capsys, "--python", str(py))
    assert code == ExitCode.CHECKS_FAILED == doc["exit_code"]
    c = _checks(doc)["flash-attn-import"]
    assert c["status"] == "fail" and c["cause"] == "torch-mismatch"
    assert "undefined symbol" in c["details"][0]
    assert doc["recommendation"]["next_command"] in ("vox1-setup install", "vox1-setup uninstall")


def test_no_torch_fails_and_text_output_is_plain_when_piped(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    py = _venv(tmp_path / "venv", torch=False)
    capsys.readouterr()
    code = run_cli(["doctor", "--python", str(py)])
    out = capsys.readouterr().out
    assert code == ExitCode.CHECKS_FAILED
    assert "\x1b[" not in out
    assert "[FAIL] torch" in out and "next:" in out and out.rstrip().splitlines()[-1].startswith("FAILED")


def test_settings_file_problems_show_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    py = _venv(tmp_path / "venv")
    settings = tmp_path / "s.json"
    settings.write_text('{"attention_implementation": "flash_attention_2"}', encoding="utf-8")
    code, doc = _doctor(capsys, "--python", str(py), "--settings-file", str(settings))
    assert code == ExitCode.CHECKS_FAILED
    c = _checks(doc)["settings"]
    assert c["status"] == "fail" and "not installed" in c["summary"]
    settings.write_text('{"batch_size": 0}', encoding="utf-8")
    _code, doc = _doctor(capsys, "--python", str(py), "--settings-file", str(settings))
    assert "batch_size" in _checks(doc)["settings"]["summary"]


def test_interrupted_install_in_the_journal_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vox1_setup.journal import Action, Journal
    from vox1_setup.paths import default_paths

    py = _venv(tmp_path / "venv")
    entry = Journal(default_paths()).begin(Action.INSTALL, str(py))
    entry.doc["pid"] = 2**22 + 12345  # a process that is not running: the install was killed
    entry.save()
    code, doc = _doctor(capsys, "--python", str(py))
    assert code == ExitCode.CHECKS_FAILED
    assert _checks(doc)["journal"]["status"] == "fail"
    assert doc["recommendation"]["next_command"] == "vox1-setup rollback"


def test_env_file_skips_detection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"schema": "vox1-env/1", "os": "linux", "machine": "x86_64", "glibc": "2.35",
           "python": {"version": "3.11.9"},
           "torch": {"version": "2.8.0+cu128", "cuda": "12.8", "cxx11abi": True, "cuda_available": True,
                     "device_count": 1,
                     "devices": [{"index": 0, "name": "NVIDIA GeForce RTX 2080", "capability": "7.5"}]},
           "driver": {"version": "570.86.10", "cuda": "12.8"},
           "gpus": [{"index": 0, "name": "NVIDIA GeForce RTX 2080", "compute_capability": "7.5"}]}
    path = tmp_path / "env.json"
    path.write_text(json.dumps(env), encoding="utf-8")
    code, doc = _doctor(capsys, "--env", str(path))
    assert code == ExitCode.OK
    assert _checks(doc)["gpu-capability"]["status"] == "warn"
    assert doc["recommendation"]["attention_implementation"] == "sdpa"


def test_not_a_python_is_bad_input(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("not a program", encoding="utf-8")
    assert run_cli(["doctor", "--python", str(fake)]) == ExitCode.BAD_INPUT


@pytest.mark.slow
def test_real_cpu_torch_end_to_end_and_the_cli_never_imports_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    py = make_venv(tmp_path / "real torch venv", pip=False, real_torch=True)
    code = ("import json, sys\nfrom vox1_setup.cli import run_cli\n"
            f"rc = run_cli(['doctor', '--json', '--python', {str(py)!r}])\n"
            "sys.stderr.write(json.dumps({'rc': rc, 'torch_here': 'torch' in sys.modules}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=tmp_path, timeout=300)
    outcome = json.loads(proc.stderr.strip().splitlines()[-1])
    doc = json.loads(proc.stdout)
    assert outcome == {"rc": 0, "torch_here": False}
    checks = _checks(doc)
    assert checks["torch"]["status"] == "pass" and "CPU-only" in checks["torch"]["summary"]
    assert doc["environment"]["torch"]["version"].startswith("2.")
    assert doc["recommendation"]["attention_implementation"] == "sdpa"


def test_quiet_prints_only_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    py = _venv(tmp_path / "venv", torch=False)
    capsys.readouterr()
    assert run_cli(["doctor", "-q", "--python", str(py)]) == ExitCode.CHECKS_FAILED
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "[FAIL] torch" in captured.err and "[ OK ]" not in captured.err


def test_flash_attn_that_prints_cannot_corrupt_the_probe_answer(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    noisy = {**FLASH_OK, "flash_attn/__init__.py": "import torch\nprint('{not json')\n__version__ = '2.8.3'\n"}
    py = _venv(tmp_path / "venv", flash=noisy)
    _code, doc = _doctor(capsys, "--python", str(py))
    assert _checks(doc)["flash-attn-import"]["status"] == "pass"
    assert _checks(doc)["torch"]["status"] == "pass"


def test_flash_attn_that_kills_the_interpreter_is_reported(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    crashing = {**FLASH_OK, "flash_attn_2_cuda.py": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"}
    py = _venv(tmp_path / "venv", flash=crashing)
    code, doc = _doctor(capsys, "--python", str(py))
    c = _checks(doc)["flash-attn-import"]
    assert code == ExitCode.CHECKS_FAILED and c["status"] == "fail"
    assert "crashed while importing flash_attn" in c["details"][0] or "crashed" in c["summary"]
    assert _checks(doc)["torch"]["status"] == "pass"  # the probe's answer came before the crash


def test_the_current_folder_does_not_shadow_the_target_packages(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    py = _venv(tmp_path / "venv", flash=FLASH_OK)
    decoy = tmp_path / "cwd"
    (decoy / "flash_attn").mkdir(parents=True)
    (decoy / "flash_attn" / "__init__.py").write_text("raise ImportError('decoy from the current folder')\n")
    monkeypatch.chdir(decoy)
    _code, doc = _doctor(capsys, "--python", str(py))
    assert _checks(doc)["flash-attn-import"]["status"] == "pass"


def test_a_torch_that_kills_the_interpreter_still_gives_a_report(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    py = make_venv(tmp_path / "venv", pip=False)
    write_fixture_package(site_packages(tmp_path / "venv"), "torch", {
        "torch/__init__.py": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"}, "2.7.1+cu128")
    write_fixture_package(site_packages(tmp_path / "venv"), "flash_attn", FLASH_OK, "2.8.3")
    code, doc = _doctor(capsys, "--python", str(py))
    checks = _checks(doc)
    assert code == ExitCode.CHECKS_FAILED
    assert checks["torch"]["status"] == "fail" and "does not import" in checks["torch"]["summary"]
    assert "SIGSEGV" in doc["environment"]["torch"]["import_error"]
    assert checks["flash-attn-import"]["status"] == "skip" and "torch does not import" in checks[
        "flash-attn-import"]["summary"]
    assert doc["environment"]["python"]["version"]  # the rest of the machine was still detected


def test_a_torch_that_hangs_is_bounded_by_the_timeout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    py = make_venv(tmp_path / "venv", pip=False)
    write_fixture_package(site_packages(tmp_path / "venv"), "torch", {
        "torch/__init__.py": "import time\ntime.sleep(60)\n"}, "2.7.1+cu128")
    started = time.monotonic()
    code, doc = _doctor(capsys, "--python", str(py), "--timeout", "2")
    assert time.monotonic() - started < 20
    assert code == ExitCode.CHECKS_FAILED
    assert "timed out after 2 s" in doc["environment"]["torch"]["import_error"]


def test_a_folder_is_accepted_as_the_target(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "imports.log"
    monkeypatch.setenv("TORCH_FIXTURE_IMPORT_LOG", str(log))
    _venv(tmp_path / "VOX-1 (x86)" / "system_python", flash=FLASH_OK)
    _code, doc = _doctor(capsys, "--python", str(tmp_path / "VOX-1 (x86)" / "system_python"))
    assert _checks(doc)["flash-attn-import"]["status"] == "pass"
    assert log.read_text().count("imported") == 1


def test_doctor_uses_only_the_public_face_of_the_probe_package() -> None:
    """The probe package changes under its own owner: doctor may use what its __init__ exports and its
    documented script, nothing else."""
    import ast

    import vox1_setup.probe

    public = set(vox1_setup.probe.__all__)
    root = Path(__file__).resolve().parents[1] / "vox1_setup"
    for name in ("doctor.py", "target.py", "wizard.py", "commands/doctor.py", "commands/wizard.py",
                 "commands/run.py", "commands/explain.py"):
        for node in ast.walk(ast.parse((root / name).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vox1_setup.probe"):
                assert node.module == "vox1_setup.probe", f"{name} imports {node.module}"
                assert {a.name for a in node.names} <= public, name
