"""Findings of the end-to-end review: a machine file that does not describe the target, the first-use checksum
note said once, SIGTERM rolls back like Ctrl-C, the whole failure message in `history -v`, journal help text."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from tests.support.install_fixtures import (
    CliResult,
    PausedCli,
    flash_version,
    gpu_env_doc,
    pip_install,
    run_cli_process,
    snapshot,
    write_env,
)
from tests.support.venvs import make_venv
from tests.support.wheels import build_wheel, sha256_of
from vox1_setup.cli import run_cli
from vox1_setup.commands.install import target_mismatch
from vox1_setup.environment import Environment, PythonInfo
from vox1_setup.errors import ExitCode
from vox1_setup.journal import Action, Journal, Status
from vox1_setup.manifest import Manifest, WheelEntry, dump_manifest
from vox1_setup.paths import default_paths

WIN_WHEEL = "flash_attn-2.8.3+cu128torch2.13-cp312-cp312-win_amd64.whl"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("review wheels")
    return {"good": build_wheel(base / "good"), "old": build_wheel(base / "old", version="2.7.4")}


@pytest.fixture
def target(tmp_path: Path, share_base: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("VOX1_VERIFY_ALLOW_CPU", "1")
    py = make_venv(tmp_path / "review venv", share_base=share_base)
    return {"python": py, "env": write_env(tmp_path / "env.json"), "work": tmp_path}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    capsys.readouterr()
    code = run_cli(list(args))
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


def windows_env(path: Path) -> Path:
    doc = gpu_env_doc()
    doc.update({"os": "windows", "machine": "amd64", "glibc": None, "python": {"version": "3.12.4"},
                "driver": {"version": "576.02", "cuda": "12.9"}})
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------------------
# 1. --env FILE must describe --python PATH


@pytest.mark.slow
def test_a_machine_file_of_another_os_and_python_is_refused_before_any_download(
        target: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    work = target["work"]
    env = windows_env(work / "windows.json")
    entry = WheelEntry.from_filename(WIN_WHEEL, url=f"http://127.0.0.1:9/{WIN_WHEEL}", sha256="0" * 64,
                                     size=1000, evidence="listed")
    manifest = work / "m.json"
    manifest.write_bytes(dump_manifest(Manifest(entries=(entry,), origin=str(manifest))))
    before = snapshot(target["python"])
    base = ["install", "--python", str(target["python"]), "--env", str(env), "--yes"]

    r = cli(capsys, *base, "--manifest", str(manifest), "--allow-insecure-localhost", "--dry-run")
    assert r.code == ExitCode.BAD_INPUT, r.out + r.err
    assert f"{WIN_WHEEL} cannot be installed into {target['python']}" in r.err
    assert "os windows (the target: linux)" in r.err
    assert f"Python 3.12.4 (the target: {'.'.join(map(str, sys.version_info[:3]))})" in r.err
    assert "machine amd64" in r.err and "vox1-setup detect" in r.err
    assert "plan:" not in r.out  # refused before any plan was shown

    local = work / WIN_WHEEL
    local.write_bytes(b"not even a zip")
    r = cli(capsys, "--json", *base, "--wheel", str(local), "--force")  # --force cannot make pip take it
    assert r.code == ExitCode.BAD_INPUT
    assert r.json()["status"] == "failed" and "os windows" in r.json()["error"]["message"]
    assert snapshot(target["python"]) == before
    assert cli(capsys, "history", "--json").json()["entries"] == []  # not even journaled


def test_target_mismatch_names_the_facts_that_differ() -> None:
    env = Environment(os="windows", machine="amd64", python=PythonInfo(version="3.12.4"))
    linux_tags = ("cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-linux_x86_64", "py3-none-any")
    why = target_mismatch(env, ("linux", "x86_64", "3.11.9"), linux_tags, WIN_WHEEL)
    assert why is not None
    assert "os windows (the target: linux)" in why and "machine amd64 (the target: x86_64)" in why
    assert "Python 3.12.4 (the target: 3.11.9)" in why and "cp312-cp312-win_amd64" in why
    fits = "flash_attn-2.8.3+cu12torch2.13cxx11abiTRUE-cp311-cp311-linux_x86_64.whl"
    assert target_mismatch(env, ("linux", "x86_64", "3.11.9"), linux_tags, fits) is None
    # Same facts on paper, other ABI (a free-threaded target): the tags still decide.
    same = Environment(os="linux", machine="x86_64", python=PythonInfo(version="3.13.1"))
    why = target_mismatch(same, ("linux", "x86_64", "3.13.1"), ("cp313-cp313t-linux_x86_64",),
                          "flash_attn-2.8.3+cu12torch2.13cxx11abiTRUE-cp313-cp313-linux_x86_64.whl")
    assert why is not None and "not among the target's" in why and "machine file says" not in why


# --------------------------------------------------------------------------------------------------------------
# 2. The first-use checksum note: once, when the hash is recorded


@pytest.mark.slow
def test_first_use_checksum_is_announced_only_when_recorded(
        target: dict[str, Path], wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    base = ["install", "--python", str(target["python"]), "--env", str(target["env"]), "--wheel",
            str(wheels["good"]), "--yes"]
    sha = sha256_of(wheels["good"])
    first = cli(capsys, "-q", *base)
    assert first.code == 0, first.err
    assert f"checksum recorded on first download: sha256 {sha}" in first.err
    again = cli(capsys, "-q", *base)
    assert again.code == 0, again.err
    assert "checksum recorded" not in again.err and again.err == ""
    plain = cli(capsys, *base)
    assert plain.code == 0 and "checksum recorded" not in plain.err
    verbose = cli(capsys, "-v", *base)
    assert verbose.code == 0, verbose.err
    assert "checksum recorded on first download" not in verbose.err
    assert f"sha256 {sha[:12]}… matches the checksum recorded on first use on 20" in verbose.err
    assert flash_version(target["python"]) == "2.8.3"


# --------------------------------------------------------------------------------------------------------------
# 3. SIGTERM (a `timeout`, a closed terminal) rolls back like Ctrl-C


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals; Windows maps a closed console to SIGBREAK")
@pytest.mark.parametrize("step", ["stashed", "installed"])
def test_sigterm_during_install_rolls_back(target: dict[str, Path], wheels: dict[str, Path], step: str) -> None:
    py = target["python"]
    pip_install(py, wheels["old"])
    before = snapshot(py)
    paused = PausedCli(["--json", "install", "--python", str(py), "--env", str(target["env"]), "--wheel",
                        str(wheels["good"]), "--yes"], step)
    paused.wait_paused()
    if step == "installed":
        assert flash_version(py) == "2.8.3"  # the half-done state really exists
    paused.proc.send_signal(signal.SIGTERM)
    out, err = paused.proc.communicate(timeout=120)
    assert paused.proc.returncode == ExitCode.ABORTED, err
    assert "terminated (SIGTERM)" in err
    assert ("flash-attn 2.7.4 is back" if step == "installed" else "nothing had changed yet") in err
    assert json.loads(out)["error"]["exit_code"] == ExitCode.ABORTED
    assert snapshot(py) == before
    r = run_cli_process(["history", "--json"])
    [entry] = r.json()["entries"]
    assert entry["status"] == "rolled-back" and entry["message"] == "terminated (SIGTERM)"


# --------------------------------------------------------------------------------------------------------------
# 4, 5. history -v shows the whole failure message; the journal commands' --python help says what happens


def test_history_verbose_shows_the_whole_failure_message(capsys: pytest.CaptureFixture[str]) -> None:
    journal = Journal(default_paths())
    entry = journal.begin(Action.INSTALL, "/opt/vox/bin/python", before={"flash_attn": None},
                          plan={"version": "2.8.3"})
    message = ("the installed flash-attn failed verification:\n  import flash_attn_2_cuda: undefined symbol: "
               "_ZN3c104cuda9SetDeviceEi\nrolled back: flash-attn is absent again, as before")
    entry.finish(Status.ROLLED_BACK, outcome={"message": message})
    r = cli(capsys, "history", "-v")
    assert r.code == 0, r.err
    for line in message.splitlines():
        assert f"    {line}\n" in r.out
    short = cli(capsys, "history")
    assert "undefined symbol" not in short.out


@pytest.mark.parametrize("command", ["rollback", "history"])
def test_journal_commands_say_what_no_python_means(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    r = cli(capsys, command, "--help")
    assert r.code == 0
    text = " ".join(r.out.split())
    assert "the one running vox1-setup" not in text
    assert ("newest change of ANY target" if command == "rollback" else "the entries of every target") in text
