"""Kill -9, Ctrl-C and concurrent runs, with real CLI processes stopped at named steps (VOX1_TEST_PAUSE_AT)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.install_fixtures import PausedCli, flash_version, pip_install, run_cli_process, snapshot, write_env
from tests.support.venvs import make_venv
from tests.support.wheels import build_wheel
from vox1_setup.errors import ExitCode
from vox1_setup.journal import interrupted_notice
from vox1_setup.paths import default_paths

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("recovery wheels")
    return {"good": build_wheel(base / "good"), "old": build_wheel(base / "old", version="2.7.4")}


@pytest.fixture
def target(tmp_path: Path, wheels: dict[str, Path]) -> dict[str, Path]:
    py = make_venv(tmp_path / "målet venv", real_torch=True, share_base=tmp_path)
    pip_install(py, wheels["old"])
    return {"python": py, "env": write_env(tmp_path / "env.json")}


def install_args(target: dict[str, Path], wheels: dict[str, Path]) -> list[str]:
    return ["install", "--python", str(target["python"]), "--env", str(target["env"]), "--wheel",
            str(wheels["good"]), "--yes"]


def history() -> list[dict[str, Any]]:
    r = run_cli_process(["history", "--json"])
    assert r.code == 0, r.err
    entries: list[dict[str, Any]] = r.json()["entries"]
    return entries


def test_kill9_after_pip_then_rollback_restores(target: dict[str, Path], wheels: dict[str, Path]) -> None:
    before = snapshot(target["python"])
    paused = PausedCli(install_args(target, wheels), "installed")
    paused.wait_paused()
    paused.kill9()
    assert flash_version(target["python"]) == "2.8.3"  # the half-done state really exists

    notice = interrupted_notice(default_paths())
    assert notice is not None and "vox1-setup rollback" in notice
    r = run_cli_process(["cache", "list"])
    assert r.code == 0 and "interrupted install" in r.err  # every command tells the user
    assert history()[0]["status"] == "interrupted"

    r = run_cli_process(["rollback", "--yes"])
    assert r.code == 0, r.err
    assert "rolled back the interrupted change" in r.out
    assert snapshot(target["python"]) == before
    assert history()[0]["status"] == "rolled-back"
    assert interrupted_notice(default_paths()) is None


def test_kill9_after_stash_then_install_again_recovers_first(target: dict[str, Path],
                                                             wheels: dict[str, Path]) -> None:
    paused = PausedCli(install_args(target, wheels), "stashed")
    paused.wait_paused()
    paused.kill9()
    r = run_cli_process(["--json", *install_args(target, wheels)])
    assert r.code == 0, r.err
    doc = r.json()
    assert len(doc["recovered"]) == 1 and doc["after_version"] == "2.8.3"
    assert [e["status"] for e in history()] == ["committed", "rolled-back"]


def test_ctrl_c_after_pip_rolls_back(target: dict[str, Path], wheels: dict[str, Path]) -> None:
    before = snapshot(target["python"])
    paused = PausedCli(install_args(target, wheels), "installed")
    paused.wait_paused()
    result = paused.interrupt()
    assert result.code == ExitCode.ABORTED, result.err
    assert "interrupted (Ctrl-C)" in result.err and "flash-attn 2.7.4 is back" in result.err
    assert snapshot(target["python"]) == before
    assert history()[0]["status"] == "rolled-back"


def test_second_install_fails_naming_the_holder_then_works(target: dict[str, Path], wheels: dict[str, Path]) -> None:
    before = snapshot(target["python"])
    holder = PausedCli(install_args(target, wheels), "locked")
    holder.wait_paused()
    try:
        r = run_cli_process(install_args(target, wheels), VOX1_LOCK_TIMEOUT="0.5")
        assert r.code == ExitCode.LOCKED
        assert f"pid {holder.proc.pid}" in r.err and "another vox1-setup is changing" in r.err
        assert snapshot(target["python"]) == before
    finally:
        result = holder.interrupt()
    assert result.code == ExitCode.ABORTED
    assert snapshot(target["python"]) == before
    r = run_cli_process(["--json", *install_args(target, wheels)])
    assert r.code == 0, r.err
    assert json.loads(r.out)["after_version"] == "2.8.3"
