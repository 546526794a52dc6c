"""Every fault leaves the target exactly as it was: same distributions, same flash-attn files by hash.

One target venv (with flash-attn 2.7.4 installed by plain pip) is shared by the module: each test starts
from, and must end in, the very same state, which is the point of the suite.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.http_server import FileServer
from tests.support.install_fixtures import CliResult, flash_version, pip_install, snapshot, write_env, write_manifest
from tests.support.venvs import make_venv
from tests.support.wheels import build_wheel, sha256_of, wheel_filename
from vox1_setup.cli import run_cli
from vox1_setup.errors import ExitCode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    base = tmp_path_factory.mktemp("faults ü")
    wheels = {
        "old": build_wheel(base / "old", version="2.7.4"),
        "undefined-symbol": build_wheel(base / "undef", kind="undefined-symbol"),
        "wrong-numbers": build_wheel(base / "wrong", kind="wrong-numbers"),
        "version-mismatch": build_wheel(base / "mismatch", kind="version-mismatch"),
        "good": build_wheel(base / "good"),
    }
    corrupt = base / "corrupt" / wheel_filename()
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip")
    wheels["corrupt"] = corrupt
    # A structurally valid wheel pip refuses: its platform tag fits no machine.
    alien_dir = base / "alien"
    alien_dir.mkdir()
    alien = alien_dir / wheels["good"].name.replace(wheels["good"].name.rsplit("-", 1)[1], "win_arm64.whl")
    with zipfile.ZipFile(wheels["good"]) as src, zipfile.ZipFile(alien, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
    wheels["alien"] = alien
    python = make_venv(base / "target venv", real_torch=True, share_base=base)
    pip_install(python, wheels["old"])
    with FileServer() as srv:
        for kind, path in wheels.items():
            srv.add(f"/{kind}/{path.name}", path)
        yield {"wheels": wheels, "python": python, "server": srv, "base": base, "env": write_env(base / "env.json"),
               "snapshot": snapshot(python)}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOX1_VERIFY_ALLOW_CPU", "1")
    monkeypatch.setenv("VOX1_DOWNLOAD_BACKOFF", "0.01")
    monkeypatch.setenv("VOX1_DOWNLOAD_RETRIES", "2")


def run_install(world: dict[str, object], kind: str, capsys: pytest.CaptureFixture[str], *,
                faults: list[str] | None = None, extra: tuple[str, ...] = ()) -> CliResult:
    wheels: dict[str, Path] = world["wheels"]  # type: ignore[assignment]
    srv: FileServer = world["server"]  # type: ignore[assignment]
    w = wheels[kind]
    path = f"/{kind}/{w.name}"
    srv.script(path, faults or [])
    manifest = write_manifest(world["base"] / f"m-{kind}.json", [(w, srv.url(path), True)])  # type: ignore[operator]
    capsys.readouterr()
    code = run_cli(["install", "--python", str(world["python"]), "--env", str(world["env"]), "--manifest",
                    str(manifest), "--allow-insecure-localhost", "--yes", *extra])
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


@pytest.mark.parametrize(("kind", "faults", "code", "texts"), [
    ("undefined-symbol", None, ExitCode.VERIFY_FAILED,
     ["undefined symbol: _ZN3c104cuda9SetDeviceEi", "flash-attn 2.7.4 is back"]),
    ("wrong-numbers", None, ExitCode.VERIFY_FAILED, ["flash_attn_func gave wrong results", "max abs error"]),
    ("version-mismatch", None, ExitCode.VERIFY_FAILED, ["installed version 2.8.4 is not the expected 2.8.3"]),
    ("good", ["404"], ExitCode.DOWNLOAD_FAILED, ["HTTP 404"]),
    ("good", ["wrong"], ExitCode.DOWNLOAD_FAILED, ["checksum mismatch"]),
    ("good", ["500", "500"], ExitCode.DOWNLOAD_FAILED, ["after 2 tries", "HTTP 500"]),
    ("corrupt", None, ExitCode.INSTALL_FAILED, ["not a valid wheel"]),
])
def test_fault_rolls_back_to_the_identical_state(world: dict[str, object], capsys: pytest.CaptureFixture[str], *,
                                                 kind: str, faults: list[str] | None, code: ExitCode,
                                                 texts: list[str]) -> None:
    r = run_install(world, kind, capsys, faults=faults)
    assert r.code == code, r.err
    for text in texts:
        assert text in r.err
    if code == ExitCode.VERIFY_FAILED:
        assert "rolled back: flash-attn 2.7.4 is back, as before, and imports (verified by file hashes)" in r.err
    else:
        assert "rolled back: nothing had changed yet (flash-attn 2.7.4, as before)" in r.err
    assert "\x1b[" not in r.err and "\r" not in r.err  # piped: no progress bar, no colour codes
    if kind == "undefined-symbol":  # FIELD-NOTES §5: the cause and fix of this text are explained
        assert "hint: " in r.err and "torch" in r.err.split("hint: ", 1)[1]
    assert snapshot(world["python"]) == world["snapshot"]  # type: ignore[arg-type]


def test_pip_refusal_is_reported_and_rolled_back(world: dict[str, object], capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    wheels: dict[str, Path] = world["wheels"]  # type: ignore[assignment]
    capsys.readouterr()
    # No --env: with a machine file, a wheel the target's tags exclude is refused before pip (even --force).
    code = run_cli(["install", "--python", str(world["python"]), "--wheel", str(wheels["alien"]), "--force",
                    "--yes"])
    _out, err = capsys.readouterr()
    assert code == ExitCode.INSTALL_FAILED, err
    assert "is not a supported wheel on this platform" in err
    assert "--force" in err  # said loudly
    assert snapshot(world["python"]) == world["snapshot"]  # type: ignore[arg-type]


def test_pinned_sha256_of_a_local_wheel_is_enforced(world: dict[str, object], capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    wheels: dict[str, Path] = world["wheels"]  # type: ignore[assignment]
    capsys.readouterr()
    code = run_cli(["install", "--python", str(world["python"]), "--env", str(world["env"]), "--wheel",
                    str(wheels["good"]), "--sha256", "0" * 64, "--yes"])
    _out, err = capsys.readouterr()
    assert code == ExitCode.DOWNLOAD_FAILED
    assert "checksum mismatch" in err and sha256_of(wheels["good"]) in err
    assert snapshot(world["python"]) == world["snapshot"]  # type: ignore[arg-type]


def test_fault_with_nothing_installed_before_leaves_it_absent(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              world: dict[str, object]) -> None:
    python = make_venv(tmp_path / "fresh ü", real_torch=True, share_base=tmp_path)
    before = snapshot(python)
    wheels: dict[str, Path] = world["wheels"]  # type: ignore[assignment]
    capsys.readouterr()
    code = run_cli(["--json", "install", "--python", str(python), "--env", str(world["env"]), "--wheel",
                    str(wheels["wrong-numbers"]), "--yes"])
    out, err = capsys.readouterr()
    assert code == ExitCode.VERIFY_FAILED
    assert "flash-attn is absent again, as before" in err
    import json

    doc = json.loads(out)
    assert doc["schema"] == "vox1-install/1" and doc["status"] == "failed"
    assert doc["error"]["exit_code"] == int(ExitCode.VERIFY_FAILED)
    assert flash_version(python) is None
    assert snapshot(python) == before
    entries = run_history(capsys)
    assert entries[0]["status"] == "rolled-back"


def run_history(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    import json

    capsys.readouterr()
    assert run_cli(["--json", "history"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "vox1-history/1"
    return list(doc["entries"])


def test_not_enough_disk_space_is_refused_before_downloading(world: dict[str, object],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import json

    wheels: dict[str, Path] = world["wheels"]  # type: ignore[assignment]
    srv: FileServer = world["server"]  # type: ignore[assignment]
    w = wheels["good"]
    base: Path = world["base"]  # type: ignore[assignment]
    manifest = write_manifest(base / "m-huge.json", [(w, srv.url(f"/good/{w.name}"), True)])
    doc = json.loads(manifest.read_text(encoding="utf-8"))
    doc["entries"][0]["size"] = 1 << 60  # the manifest says the wheel is an exbibyte: no disk has that free
    manifest.write_text(json.dumps(doc), encoding="utf-8")
    requests = len(srv.requests)
    capsys.readouterr()
    code = run_cli(["install", "--python", str(world["python"]), "--env", str(world["env"]), "--manifest",
                    str(manifest), "--allow-insecure-localhost", "--yes"])
    _out, err = capsys.readouterr()
    assert code == ExitCode.DOWNLOAD_FAILED
    assert "not enough free space" in err
    assert len(srv.requests) == requests
    assert snapshot(world["python"]) == world["snapshot"]  # type: ignore[arg-type]



def test_target_without_pip_is_refused_and_untouched(world: dict[str, object], capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    python = make_venv(tmp_path / "no pip", pip=False)
    before = snapshot(python)
    wheels: dict[str, Path] = world["wheels"]  # type: ignore[assignment]
    capsys.readouterr()
    code = run_cli(["install", "--python", str(python), "--env", str(world["env"]), "--wheel", str(wheels["good"]),
                    "--yes"])
    _out, err = capsys.readouterr()
    assert code == ExitCode.INSTALL_FAILED
    assert "No module named pip" in err and "ensurepip" in err
    assert snapshot(python) == before


def test_disk_space_is_checked_before_pip_and_nothing_changes(world: dict[str, object]) -> None:
    """The unpacked wheel would not fit in the target's site-packages: refused after the download, before pip."""
    from vox1_setup.errors import InstallError
    from vox1_setup.installer import InstallOptions, WheelPlan, install
    from vox1_setup.journal import Journal
    from vox1_setup.paths import default_paths

    wheels: dict[str, Path] = world["wheels"]  # type: ignore[assignment]
    w = wheels["good"]
    asked: list[Path] = []

    def free_space(path: Path) -> int:
        asked.append(path)
        return 1 << 20 if "site-packages" in path.parts else 1 << 40  # 1 MiB left beside the target

    plan = WheelPlan(source=str(w), filename=w.name, sha256=sha256_of(w), base_version="2.8.3")
    with pytest.raises(InstallError) as info:
        install(str(world["python"]), plan, paths=default_paths(), options=InstallOptions(free_space=free_space),
                note=lambda _m: None)
    assert info.value.exit_code == ExitCode.INSTALL_FAILED
    assert "not enough free space" in info.value.message and "to unpack" in info.value.message
    assert "1 MiB free" in info.value.message
    assert "nothing had changed yet" in info.value.message  # refused before pip ran
    assert any("site-packages" in p.parts for p in asked)
    assert snapshot(world["python"]) == world["snapshot"]  # type: ignore[arg-type]
    [entry] = list(Journal(default_paths()).entries())
    assert entry.status == "rolled-back" and [s["name"] for s in entry.doc["steps"]] == ["journaled", "downloaded"]


def test_disk_space_for_the_download_is_checked_before_any_request(world: dict[str, object]) -> None:
    from vox1_setup.errors import DownloadError
    from vox1_setup.installer import InstallOptions, WheelPlan, install
    from vox1_setup.paths import default_paths

    wheels: dict[str, Path] = world["wheels"]  # type: ignore[assignment]
    srv: FileServer = world["server"]  # type: ignore[assignment]
    w = wheels["good"]
    plan = WheelPlan(source=srv.url(f"/good/{w.name}"), filename=w.name, sha256=sha256_of(w), base_version="2.8.3",
                     size=w.stat().st_size)
    requests = len(srv.requests)
    options = InstallOptions(allow_insecure_localhost=True, free_space=lambda p: 1 << 20 if "cache" in p.parts
                             else 1 << 40)
    with pytest.raises(DownloadError) as info:
        install(str(world["python"]), plan, paths=default_paths(), options=options, note=lambda _m: None)
    assert "not enough free space" in info.value.message and "cache clear" in str(info.value.hint)
    assert len(srv.requests) == requests
    assert snapshot(world["python"]) == world["snapshot"]  # type: ignore[arg-type]
