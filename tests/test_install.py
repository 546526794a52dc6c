"""The install pipeline end to end: real venvs as targets, real fixture wheels, a real loopback server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.http_server import FileServer
from tests.support.install_fixtures import CliResult, flash_version, pip_install, snapshot, write_env, write_manifest
from tests.support.venvs import make_venv
from tests.support.wheels import build_wheel, sha256_of
from vox1_setup.cli import run_cli
from vox1_setup.errors import ExitCode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("wheels")
    return {
        "good": build_wheel(base / "good", kind="good"),
        "old": build_wheel(base / "old", kind="good", version="2.7.4"),
        "undefined-symbol": build_wheel(base / "undef", kind="undefined-symbol"),
        "wrong-numbers": build_wheel(base / "wrong", kind="wrong-numbers"),
        "version-mismatch": build_wheel(base / "mismatch", kind="version-mismatch"),
    }


@pytest.fixture(scope="module")
def server(wheels: dict[str, Path]) -> Iterator[FileServer]:
    with FileServer() as srv:
        for kind, path in wheels.items():
            srv.add(f"/{kind}/{path.name}", path)
        yield srv


@pytest.fixture
def real_torch() -> bool:
    """Targets get torch only where the functional check is under test (importing it costs seconds);
    a test asks for it with @pytest.mark.parametrize("real_torch", [True])."""
    return False


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, share_base: Path, real_torch: bool) -> dict[str, Path]:
    monkeypatch.setenv("VOX1_VERIFY_ALLOW_CPU", "1")
    monkeypatch.setenv("VOX1_DOWNLOAD_BACKOFF", "0.01")
    work = tmp_path / "työ dir"
    work.mkdir()
    py = make_venv(work / "target venv ü", real_torch=real_torch, share_base=share_base)
    return {"python": py, "env": write_env(work / "env.json"), "work": work}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    capsys.readouterr()
    code = run_cli(list(args))
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


def manifest_for(setup: dict[str, Path], server: FileServer, wheels: dict[str, Path], kind: str,
                 *, pin: bool = True) -> Path:
    w = wheels[kind]
    return write_manifest(setup["work"] / f"manifest-{kind}.json", [(w, server.url(f"/{kind}/{w.name}"), pin)])


def install_args(setup: dict[str, Path], manifest: Path, *extra: str) -> list[str]:
    return ["install", "--python", str(setup["python"]), "--env", str(setup["env"]), "--manifest", str(manifest),
            "--allow-insecure-localhost", "--yes", *extra]


@pytest.mark.parametrize("real_torch", [True])
def test_install_downloads_verifies_commits_then_uses_the_cache(
        setup: dict[str, Path], server: FileServer, wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = manifest_for(setup, server, wheels, "good")
    r = cli(capsys, "--json", *install_args(setup, manifest))
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["schema"] == "vox1-install/1" and doc["status"] == "installed"
    assert doc["after_version"] == "2.8.3" and doc["before_version"] is None
    assert doc["wheel"]["origin"] == "download" and doc["wheel"]["trust"] == "pinned"
    verify = doc["verify"]
    assert verify["ok"] and verify["report"]["functional"]["status"] == "passed"
    assert verify["report"]["functional"]["device"] == "cpu (test-only)"
    assert flash_version(setup["python"]) == "2.8.3"

    before_requests = len(server.requests)
    r2 = cli(capsys, "--json", *install_args(setup, manifest))
    assert r2.code == 0, r2.err
    assert r2.json()["wheel"]["origin"] == "cache"
    assert len(server.requests) == before_requests  # nothing downloaded again

    h = cli(capsys, "history", "--json")
    assert h.json()["schema"] == "vox1-history/1"
    entries = h.json()["entries"]
    assert [e["status"] for e in entries] == ["committed", "committed"]
    assert entries[0]["from_version"] == "2.8.3" and entries[0]["to_version"] == "2.8.3"
    assert entries[1]["from_version"] is None and entries[1]["action"] == "install"
    assert set(entries[0]) == {"id", "action", "status", "python", "created", "updated", "from_version",
                               "to_version", "message"}
    assert entries[0]["id"] == r2.json()["journal_entry"] and entries[0]["created"] >= entries[1]["created"]
    assert entries[0]["python"] == str(setup["python"]) and entries[0]["message"] == "installed flash-attn 2.8.3"
    text = cli(capsys, "history")
    assert text.code == 0 and text.out.index(entries[0]["id"]) < text.out.index(entries[1]["id"])


@pytest.mark.parametrize("real_torch", [True])
def test_without_the_cpu_switch_the_functional_check_is_not_run_never_passed(
        setup: dict[str, Path], server: FileServer, wheels: dict[str, Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOX1_VERIFY_ALLOW_CPU")
    r = cli(capsys, *install_args(setup, manifest_for(setup, server, wheels, "good")))
    assert r.code == 0, r.err
    assert "functional check: not run: no GPU here" in r.out


def test_first_use_checksum_is_recorded_and_enforced_later(
        setup: dict[str, Path], server: FileServer, wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = manifest_for(setup, server, wheels, "good", pin=False)
    r = cli(capsys, "--json", *install_args(setup, manifest))
    assert r.code == 0, r.err
    assert "checksum recorded on first download" in r.err
    sha = sha256_of(wheels["good"])
    assert sha in r.err
    assert r.json()["wheel"]["trust"] == "first-use"
    listing = cli(capsys, "cache", "list", "--json").json()
    assert listing["schema"] == "vox1-cache-list/1"
    assert [(e["sha256"], e["trust"]) for e in listing["entries"]] == [(sha, "first-use")]
    journal = json.loads(next(p for p in (setup["work"].parent / "vox1 home ü" / "data" / "journal").glob("*.json"))
                         .read_text(encoding="utf-8"))
    assert journal["wheel"]["sha256"] == sha and journal["wheel"]["trust"] == "first-use"

    # The same URL later serves other bytes: the recorded hash catches it.
    cleared = cli(capsys, "--json", "cache", "clear", "--yes")
    assert cleared.code == 0 and cleared.json()["schema"] == "vox1-cache-clear/1" and cleared.json()["removed"] == 1
    assert cli(capsys, "cache", "list", "--json").json()["entries"] == []
    server.script(f"/good/{wheels['good'].name}", ["wrong"])
    before = snapshot(setup["python"])
    r = cli(capsys, *install_args(setup, manifest))
    assert r.code == ExitCode.DOWNLOAD_FAILED
    assert "checksum mismatch" in r.err
    assert snapshot(setup["python"]) == before


def test_dry_run_prints_the_plan_and_changes_nothing(
        setup: dict[str, Path], server: FileServer, wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(setup["python"])
    requests = len(server.requests)
    r = cli(capsys, *install_args(setup, manifest_for(setup, server, wheels, "good"), "--dry-run"))
    assert r.code == 0, r.err
    assert "plan: flash-attn 2.8.3" in r.out and "nothing was changed" in r.out
    r = cli(capsys, "--json", *install_args(setup, manifest_for(setup, server, wheels, "good"), "--dry-run"))
    assert r.json()["status"] == "dry-run" and r.json()["plan"]["version"] == "2.8.3"
    assert snapshot(setup["python"]) == before
    assert len(server.requests) == requests


def test_plain_http_needs_the_loopback_opt_in(
        setup: dict[str, Path], server: FileServer, wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a for a in install_args(setup, manifest_for(setup, server, wheels, "good"))
            if a != "--allow-insecure-localhost"]
    before = snapshot(setup["python"])
    r = cli(capsys, *args)
    assert r.code == ExitCode.BAD_INPUT
    assert "--allow-insecure-localhost" in r.err
    assert snapshot(setup["python"]) == before


def test_download_to_wheelhouse_then_offline_install(
        setup: dict[str, Path], server: FileServer, wheels: dict[str, Path], capsys: pytest.CaptureFixture[str],
        *, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = manifest_for(setup, server, wheels, "good", pin=False)
    house = setup["work"] / "wheel house"
    r = cli(capsys, "download", "--env", str(setup["env"]), "--python", str(setup["python"]), "--dest", str(house))
    assert r.code == ExitCode.BAD_INPUT and "mutually exclusive" in r.err
    monkeypatch.setenv("VOX1_PYTHON", str(tmp_path / "no such python"))  # set by a launcher: --env still wins
    r = cli(capsys, "--json", "download", "--env", str(setup["env"]), "--manifest", str(manifest), "--dest",
            str(house), "--allow-insecure-localhost")
    assert r.code == 0, r.err
    monkeypatch.delenv("VOX1_PYTHON")
    doc = r.json()
    assert doc["schema"] == "vox1-download/1"
    name = wheels["good"].name
    assert (house / name).read_bytes() == wheels["good"].read_bytes()
    assert (house / f"{name}.sha256").read_text(encoding="utf-8").split()[0] == sha256_of(wheels["good"])

    # On the "target machine": a fresh home (empty cache), no network allowed.
    monkeypatch.setenv("VOX1_HOME", str(tmp_path / "other home"))
    requests = len(server.requests)
    r = cli(capsys, "--json", *install_args(setup, manifest, "--wheelhouse", str(house), "--offline"))
    assert r.code == 0, r.err
    assert r.json()["wheel"]["origin"] == "wheelhouse" and r.json()["wheel"]["trust"] == "pinned"
    assert len(server.requests) == requests
    assert flash_version(setup["python"]) == "2.8.3"


def test_offline_without_the_file_fails_cleanly(
        setup: dict[str, Path], server: FileServer, wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    r = cli(capsys, *install_args(setup, manifest_for(setup, server, wheels, "good"), "--offline"))
    assert r.code == ExitCode.DOWNLOAD_FAILED
    assert "--offline" in r.err


def test_uninstall_then_rollback_restores_the_previous_version(
        setup: dict[str, Path], wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    py = setup["python"]
    pip_install(py, wheels["old"])
    before = snapshot(py)
    r = cli(capsys, "--json", "uninstall", "--python", str(py), "--yes")
    assert r.code == 0, r.err
    assert r.json()["schema"] == "vox1-uninstall/1" and r.json()["before_version"] == "2.7.4"
    assert flash_version(py) is None
    r = cli(capsys, "--json", "rollback", "--yes")  # the newest change, whichever target
    assert r.code == 0, r.err
    assert r.json()["schema"] == "vox1-rollback/1" and r.json()["after_version"] == "2.7.4"
    assert snapshot(py) == before
    statuses = [e["status"] for e in cli(capsys, "history", "--json").json()["entries"]]
    assert statuses == ["committed", "undone"]
    r = cli(capsys, "uninstall", "--python", str(py), "--yes")
    assert r.code == 0 and flash_version(py) is None
    r = cli(capsys, "uninstall", "--python", str(py), "--yes")
    assert r.code == 0 and "not installed" in r.out


def test_install_over_previous_then_rollback_to_it(
        setup: dict[str, Path], server: FileServer, wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    py = setup["python"]
    pip_install(py, wheels["old"])
    before = snapshot(py)
    r = cli(capsys, "--json", *install_args(setup, manifest_for(setup, server, wheels, "good")))
    assert r.code == 0, r.err
    entry = r.json()["journal_entry"]
    assert r.json()["before_version"] == "2.7.4" and flash_version(py) == "2.8.3"
    r = cli(capsys, "rollback", "--python", str(py), "--to", entry, "--yes")
    assert r.code == 0, r.err
    assert "flash-attn 2.7.4" in r.out
    assert snapshot(py) == before
    r = cli(capsys, "rollback", "--to", entry, "--yes")
    assert r.code == ExitCode.BAD_INPUT and "undone" in r.err


def test_wheel_option_checks_compatibility_and_force_says_so(
        setup: dict[str, Path], wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    py = setup["python"]
    env_doc = json.loads(setup["env"].read_text(encoding="utf-8"))
    env_doc["torch"]["version"] = "2.12.0+cu128"  # the wheel is for torch 2.13
    other_env = setup["work"] / "env-2.12.json"
    other_env.write_text(json.dumps(env_doc), encoding="utf-8")
    base = ["install", "--python", str(py), "--env", str(other_env), "--wheel", str(wheels["good"]), "--yes"]
    r = cli(capsys, *base)
    assert r.code == ExitCode.NO_WHEEL
    assert "torch" in r.err and "--force" in r.err
    r = cli(capsys, *base, "--force")
    assert r.code == 0, r.err
    assert "--force" in r.err and "does not fit" in r.err
    assert flash_version(py) == "2.8.3"

    # A local build's name carries no +cu/torch label: refused, unless forced (checksum and verify still apply).
    own = build_wheel(setup["work"] / "own build", version="2.8.4", local="")
    assert "+" not in own.name
    own_args = ["install", "--python", str(py), "--env", str(setup["env"]), "--wheel", str(own), "--yes"]
    r = cli(capsys, *own_args)
    assert r.code == ExitCode.BAD_INPUT and "no +cuXXXtorchX.Y label" in r.err
    assert flash_version(py) == "2.8.3"
    r = cli(capsys, *own_args, "--force", "--sha256", "f" * 64)
    assert r.code == ExitCode.DOWNLOAD_FAILED and "checksum mismatch" in r.err  # --force never skips the checksum
    assert flash_version(py) == "2.8.3"
    r = cli(capsys, "--json", *own_args, "--force")
    assert r.code == 0, r.err
    assert "warning: --force: installing" in r.err and r.json()["after_version"] == "2.8.4"


def test_progress_bar_only_on_a_terminal(setup: dict[str, Path], server: FileServer, tmp_path: Path) -> None:
    pty = pytest.importorskip("pty")  # POSIX: a pseudo-terminal stands in for the user's console
    import os
    import subprocess
    import sys

    from tests.support.install_fixtures import cli_env

    big = build_wheel(tmp_path / "big", padding=8 << 20)
    manifest = write_manifest(setup["work"] / "m-big.json", [(big, server.add(f"/big/{big.name}", big), True)])
    args = [sys.executable, "-m", "vox1_setup", "download", "--env", str(setup["env"]), "--manifest", str(manifest),
            "--allow-insecure-localhost"]

    def run(dest: str, *, tty: bool, quiet: bool = False) -> bytes:
        master, slave = pty.openpty() if tty else os.pipe()
        proc = subprocess.Popen([*args, "--dest", str(tmp_path / dest), *(["-q"] if quiet else [])],
                                stdout=subprocess.DEVNULL, stderr=slave,
                                env=cli_env(VOX1_HOME=str(tmp_path / f"home {dest}")))  # empty cache each time
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the pty's other side closed
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        assert proc.wait() == 0, out
        assert b"downloading" in out or quiet  # it really downloaded (no cache hit)
        return out

    assert b"\x1b[" in run("a", tty=True) and b"\x1b[" not in run("b", tty=False)
    assert b"\x1b[" not in run("c", tty=True, quiet=True)
