from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from vox1_setup.cli import run_cli
from vox1_setup.errors import ExitCode

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_cmd = next(b for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_cmd in ci.splitlines()


def test_every_exit_code_is_documented() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", readme, flags=re.M), f"exit code {code!r} not in README"


def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "vox1_setup", "--version"], capture_output=True, text=True,
                         check=True)
    assert "vox1-setup" in out.stdout


def test_unknown_command_is_bad_input() -> None:
    assert run_cli(["no-such-command"]) == ExitCode.BAD_INPUT


def test_cli_process_never_imports_torch() -> None:
    code = "import sys; from vox1_setup.cli import run_cli; run_cli(['--help']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")


def test_json_failures_still_print_one_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    cases = [
        (["resolve", "--env", str(tmp_path / "missing.json"), "--json"], ExitCode.BAD_INPUT, "resolve"),
        (["--json", "no-such-command"], ExitCode.BAD_INPUT, None),
        (["settings", "set", "dtype", "fp16", "--json"], ExitCode.BAD_INPUT, "settings"),
    ]
    for argv, code, command in cases:
        assert run_cli(argv) == code
        out = capsys.readouterr().out
        doc = json.loads(out)  # exactly one parseable document
        assert doc["schema"] == "vox1-error/1" and doc["status"] == "failed"
        assert doc["command"] == command and doc["error"]["exit_code"] == int(code)
        assert doc["error"]["message"]


def test_a_command_that_prints_its_own_failure_document_is_not_doubled(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    python = tmp_path / "not a python"
    python.write_text("hello", encoding="utf-8")
    code = run_cli(["uninstall", "--python", str(python), "--yes", "--json"])
    assert code == ExitCode.BAD_INPUT
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "failed"
