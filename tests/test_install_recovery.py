"""Kill -9, Ctrl-C and concurrent runs, with real CLI processes stopped at named steps (VOX1_TEST_PAUSE_AT)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.http_server import FileServer
from tests.support.install_fixtures import (
    PausedCli,
    cli_env,
    flash_version,
    pip_install,
    run_cli_process,
    snapshot,
    write_env,
    write_manifest,
)
from tests.support.venvs import make_venv, site_packages
from tests.support.wheels import build_wheel
from vox1_setup.errors import ExitCode
from vox1_setup.journal import interrupted_notice
from vox1_setup.paths import default_paths

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("recovery wheels")
    return {"good": build_wheel(base / "good"), "old": build_wheel(base / "old", version="2.7.4"),
            "padded": build_wheel(base / "padded", padding=4096)}  # brings a file 2.7.4 does not have


@pytest.fixture
def target(tmp_path: Path, wheels: dict[str, Path]) -> dict[str, Path]:
    # No torch in these targets: the steps, not the kernel, are under test (verify reports "not run").
    py = make_venv(tmp_path / "målet venv", share_base=tmp_path)
    pip_install(py, wheels["old"])
    return {"python": py, "env": write_env(tmp_path / "env.json")}


def install_args(target: dict[str, Path], wheels: dict[str, Path], kind: str = "good") -> list[str]:
    return ["install", "--python", str(target["python"]), "--env", str(target["env"]), "--wheel",
            str(wheels[kind]), "--yes"]


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


@pytest.mark.parametrize("step", ["journaled", "downloaded", "stashed", "installed", "verified"])
def test_ctrl_c_at_each_step_rolls_back(target: dict[str, Path], wheels: dict[str, Path], step: str) -> None:
    before = snapshot(target["python"])
    paused = PausedCli(["--json", *install_args(target, wheels)], step)
    paused.wait_paused()
    result = paused.interrupt()
    assert result.code == ExitCode.ABORTED, result.err
    assert "interrupted (Ctrl-C)" in result.err
    changed = step in ("installed", "verified")
    assert ("flash-attn 2.7.4 is back" if changed else "nothing had changed yet") in result.err
    doc = result.json()
    assert doc["status"] == "failed" and doc["error"]["exit_code"] == ExitCode.ABORTED
    assert snapshot(target["python"]) == before
    [entry] = history()
    assert entry["status"] == "rolled-back" and entry["message"] == "interrupted (Ctrl-C)"


def test_kill9_inside_pip_leftovers_are_cleaned_up(target: dict[str, Path], wheels: dict[str, Path]) -> None:
    """pip killed while replacing 2.7.4 leaves its `~`-renamed folders and some files of the new wheel."""
    py = target["python"]
    before = snapshot(py)
    paused = PausedCli(install_args(target, wheels, "padded"), "stashed")
    paused.wait_paused()
    paused.kill9()
    site = site_packages(py.parents[1])
    (site / "flash_attn").rename(site / "~lash_attn")  # pip's AdjacentTempDirectory names
    (site / "flash_attn-2.7.4.dist-info").rename(site / "~-ash_attn-2.7.4.dist-info")
    (site / "flash_attn_2_cuda.py").unlink()  # single files are stashed in the system temp folder
    with zipfile.ZipFile(wheels["padded"]) as zf:
        for name in ("flash_attn/__init__.py", "flash_attn/_blob.bin"):
            (site / name).parent.mkdir(exist_ok=True)
            (site / name).write_bytes(zf.read(name))
    assert flash_version(py) is None  # the half-done state: no distribution, a broken package

    r = run_cli_process(["rollback", "--yes"])
    assert r.code == 0, r.err
    assert snapshot(py) == before
    assert not [p.name for p in site.iterdir() if p.name.startswith("~")]
    assert history()[0]["status"] == "rolled-back"


def test_two_installs_at_once_run_one_after_the_other(target: dict[str, Path], wheels: dict[str, Path]) -> None:
    procs = [subprocess.Popen([sys.executable, "-m", "vox1_setup", "--json", *install_args(target, wheels)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=cli_env(VOX1_LOCK_TIMEOUT="120")) for _ in range(2)]
    results = [(p.wait(180), *p.communicate()) for p in procs]
    assert [code for code, _out, _err in results] == [0, 0], [err for _c, _o, err in results]
    befores = sorted(json.loads(out)["before_version"] for _c, out, _e in results)
    assert befores == ["2.7.4", "2.8.3"]  # strictly one after the other, the second saw the first's result
    assert [e["status"] for e in history()] == ["committed", "committed"]
    dists: list[list[str]] = snapshot(target["python"])["distributions"]  # type: ignore[assignment]
    assert [d for d in dists if d[0] == "flash_attn"] == [["flash_attn", "2.8.3"]]


def test_two_downloads_of_one_url_fetch_it_once(tmp_path: Path, wheels: dict[str, Path]) -> None:
    wheel = wheels["padded"]
    with FileServer() as srv:
        path = f"/slow/{wheel.name}"
        url = srv.add(path, wheel)
        srv.script(path, ["slow:1.5"])
        manifest = write_manifest(tmp_path / "m.json", [(wheel, url, False)])  # no pinned hash: first use
        env = write_env(tmp_path / "env.json")
        procs = [subprocess.Popen([sys.executable, "-m", "vox1_setup", "--json", "download", "--env", str(env),
                                   "--manifest", str(manifest), "--dest", str(tmp_path / f"house {i}"),
                                   "--allow-insecure-localhost"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=cli_env()) for i in range(2)]
        results = [(p.wait(120), *p.communicate()) for p in procs]
        assert [code for code, _o, _e in results] == [0, 0], [err for _c, _o, err in results]
        assert sorted(json.loads(out)["origin"] for _c, out, _e in results) == ["cache", "download"]
        assert [p for p, _h in srv.requests] == [path]
    for i in range(2):
        assert (tmp_path / f"house {i}" / wheel.name).read_bytes() == wheel.read_bytes()


def test_second_install_fails_naming_the_holder_then_works(target: dict[str, Path], wheels: dict[str, Path]) -> None:
    before = snapshot(target["python"])
    holder = PausedCli(install_args(target, wheels), "locked")
    holder.wait_paused()
    try:
        r = run_cli_process(["--json", *install_args(target, wheels)], VOX1_LOCK_TIMEOUT="0.5")
        assert r.code == ExitCode.LOCKED
        assert f"pid {holder.proc.pid}" in r.err and "another vox1-setup is changing" in r.err
        doc = r.json()
        assert doc["schema"] == "vox1-install/1" and doc["status"] == "failed"
        assert doc["error"]["exit_code"] == ExitCode.LOCKED and f"pid {holder.proc.pid}" in doc["error"]["message"]
        assert snapshot(target["python"]) == before
    finally:
        result = holder.interrupt()
    assert result.code == ExitCode.ABORTED
    assert snapshot(target["python"]) == before
    r = run_cli_process(["--json", *install_args(target, wheels)])
    assert r.code == 0, r.err
    assert json.loads(r.out)["after_version"] == "2.8.3"
