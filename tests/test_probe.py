"""The target probe against real venvs: no torch, the real CPU torch, a CUDA-build torch fixture, a torch whose
import raises, crashes or hangs, and targets that are not Pythons at all."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging import tags as ptags

from tests.fixtures.torch_fixtures import (
    BROKEN_TORCH,
    CRASHING_TORCH,
    CUDA_TORCH,
    FLASH_ATTN,
    HANGING_TORCH,
    NVIDIA_NAMESPACE,
    OLD_DRIVER_TORCH,
)
from tests.support.venvs import make_venv, site_packages, write_fixture_package
from vox1_setup.errors import BadInputError
from vox1_setup.probe import probe_interpreter
from vox1_setup.probe.interpreter import PROBE_SCRIPT, facts_from_probe, parse_probe_output, resolve_target


def venv_with(root: Path, packages: list[tuple[str, dict[str, str], str]]) -> Path:
    py = make_venv(root, pip=False)
    site = site_packages(root)
    for name, files, version in packages:
        write_fixture_package(site, name, files, version)
    return py


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("probe-venvs")
    return {
        "none": venv_with(base / "none", []),
        "cuda": venv_with(base / "cuda", [("torch", CUDA_TORCH, "2.7.1+cu128"),
                                          ("nvidia-cudnn-cu12", NVIDIA_NAMESPACE, "9.1.0.70"),
                                          ("flash-attn", FLASH_ATTN, "2.7.4.post1")]),
        "broken": venv_with(base / "broken", [("torch", BROKEN_TORCH, "2.6.0+cu124")]),
    }


def test_no_torch(venvs: dict[str, Path]) -> None:
    facts = probe_interpreter(str(venvs["none"]))
    assert facts.torch is None
    assert facts.flash_attn is None
    assert facts.python.version == "{}.{}.{}".format(*sys.version_info[:3])
    assert facts.python.executable is not None
    assert Path(facts.python.executable).parent == venvs["none"].parent
    assert facts.python.site_packages is not None and "none" in facts.python.site_packages


def test_cuda_torch_fixture(venvs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "imports.log"
    monkeypatch.setenv("TORCH_FIXTURE_IMPORT_LOG", str(log))
    facts = probe_interpreter(str(venvs["cuda"]))
    t = facts.torch
    assert t is not None and t.importable, t
    assert (t.version, t.cuda, t.hip, t.cxx11abi, t.cuda_available, t.device_count) == (
        "2.7.1+cu128", "12.8", None, True, True, 1)
    assert [(d.index, d.name, d.capability) for d in t.devices] == [(0, "NVIDIA GeForce RTX 4070 Ti", "8.9")]
    assert t.arch_list is not None and "sm_120" in t.arch_list
    assert t.build == "cuda"
    assert log.read_text().splitlines() == ["imported"]  # torch imported exactly once
    assert facts.flash_attn is not None
    assert facts.flash_attn.version == "2.7.4.post1"
    assert facts.flash_attn.location is not None and Path(facts.flash_attn.location).is_dir()
    assert facts.packages["flash-attn"] == "2.7.4.post1"
    assert facts.packages["torch"] == "2.7.1+cu128"


def test_torch_whose_import_raises(venvs: dict[str, Path]) -> None:
    facts = probe_interpreter(str(venvs["broken"]))
    t = facts.torch
    assert t is not None and not t.importable
    assert t.version is None
    assert t.import_error == "ImportError: libc10.so: cannot open shared object file: No such file or directory"
    assert t.build == "unknown"
    assert facts.packages["torch"] == "2.6.0+cu124"  # the installed distribution is still known


def test_real_cpu_torch(tmp_path: Path) -> None:
    py = make_venv(tmp_path / "real", pip=False, real_torch=True)
    facts = probe_interpreter(str(py))
    t = facts.torch
    assert t is not None and t.importable
    import importlib.metadata

    assert t.version == importlib.metadata.version("torch")
    assert t.cuda is None and t.build == "cpu"
    assert t.cuda_available is False and t.device_count == 0
    assert t.cxx11abi is True  # torch ≥ 2.7 pip wheels are ABI 1 everywhere
    assert t.arch_list == ()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGSEGV by os.kill is POSIX")
def test_torch_that_crashes_the_interpreter(tmp_path: Path) -> None:
    py = venv_with(tmp_path / "crash", [("torch", CRASHING_TORCH, "2.7.1+cu128")])
    facts = probe_interpreter(str(py))
    assert facts.python.version.startswith("3.")
    t = facts.torch
    assert t is not None and not t.importable
    assert t.import_error is not None and "crashed while importing torch" in t.import_error
    assert "SIGSEGV" in t.import_error
    assert facts.torch_probed and facts.sources["torch"].startswith("probe (import failed")


def test_torch_that_hangs_is_timed_out(tmp_path: Path) -> None:
    py = venv_with(tmp_path / "hang", [("torch", HANGING_TORCH, "2.7.1+cu128")])
    facts = probe_interpreter(str(py), timeout=3)
    t = facts.torch
    assert t is not None and t.import_error is not None
    assert "timed out after 2 s" in t.import_error  # a third of --timeout kept for the probe without torch
    assert facts.seconds is not None and facts.seconds < 4


def test_timeout_bounds_the_whole_probe_retry_included(tmp_path: Path) -> None:
    """A target that never answers: the probe with torch and the retry without it share --timeout."""
    target = tmp_path / "python"
    target.write_text("#!/bin/sh\nsleep 60\n")
    target.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(BadInputError) as info:
        probe_interpreter(str(target), timeout=2)
    assert time.monotonic() - started < 3.5
    assert info.value.message.endswith("did not answer within 2 s (nor when asked again without importing torch)")


def test_no_time_left_for_the_retry_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    py = venv_with(tmp_path / "hang", [("torch", HANGING_TORCH, "2.7.1+cu128")])
    monkeypatch.setattr("vox1_setup.probe.interpreter.retry_reserve", lambda timeout: 0.0)
    started = time.monotonic()
    with pytest.raises(BadInputError) as info:
        probe_interpreter(str(py), timeout=1)
    assert time.monotonic() - started < 2.5
    assert "probing torch timed out after 1 s" in info.value.message
    assert "no time was left of --timeout 1 s to ask again without importing torch" in info.value.message
    assert info.value.hint is not None and "--timeout" in info.value.hint


def test_retry_reserve() -> None:
    from vox1_setup.probe.interpreter import RETRY_RESERVE, retry_reserve

    assert retry_reserve(3) == 1 and retry_reserve(120) == RETRY_RESERVE


def test_skip_torch(venvs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "imports.log"
    monkeypatch.setenv("TORCH_FIXTURE_IMPORT_LOG", str(log))
    facts = probe_interpreter(str(venvs["cuda"]), torch=False)
    assert facts.torch is None and not facts.torch_probed
    assert not log.exists()
    assert facts.packages["torch"] == "2.7.1+cu128"


def test_folder_is_searched_for_its_interpreter(venvs: dict[str, Path]) -> None:
    root = venvs["none"].parent.parent
    assert Path(resolve_target(str(root))).parent == venvs["none"].parent


def test_vox1_app_folder_leads_to_its_system_python(tmp_path: Path) -> None:
    """`--python C:\\VOX-1` (the app folder) means its bundled system_python\\python.exe."""
    exe = tmp_path / "VOX-1" / "system_python" / "python.exe"
    exe.parent.mkdir(parents=True)
    exe.write_bytes(b"MZ")
    assert resolve_target(str(tmp_path / "VOX-1")) == str(exe)


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_hint_example_is_for_this_os(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vox1_setup.probe.interpreter import example_python

    target = tmp_path / "VOX-1"
    if kind == "folder":
        target.mkdir()
    for platform, example in (("linux", "~/VOX-1/system_python/bin/python3"),
                              ("win32", "C:\\VOX-1\\system_python\\python.exe")):
        monkeypatch.setattr("vox1_setup.probe.interpreter.sys.platform", platform)
        with pytest.raises(BadInputError) as info:
            resolve_target(str(target))
        assert info.value.hint is not None and info.value.hint.endswith(f"--python {example}")
    assert example_python("darwin") == "~/VOX-1/system_python/bin/python3"
    assert example_python("windows") == "C:\\VOX-1\\system_python\\python.exe"


def test_default_target_is_the_running_interpreter() -> None:
    assert resolve_target(None) == sys.executable


NOT_PYTHONS = {
    # kind: (file text or None for a folder / nothing, executable bit, what the message must say)
    "missing": (None, False, "does not exist"),
    "folder": ("<dir>", False, "is a folder without a Python interpreter"),
    "text-file": ("hello\n", False, "is not executable (permission denied)"),
    "executable-text": ("hello\n", True, "is not a program this system can run"),
    "missing-shebang-target": ("#!/nonexistent/python9\n", True, "could not be started"),
    "shell-script": ("#!/bin/sh\necho 'I am not Python'\n", True,
                     "did not answer like a Python interpreter (exit code 0): I am not Python"),
    "crashing": ("#!/bin/sh\necho 'boom' >&2\nexit 3\n", True,
                 "did not answer like a Python interpreter (exit code 3): boom"),
    # An interpreter too old for the probe's syntax answers with a traceback on stderr.
    "python2-like": ('#!/bin/sh\necho \'  File "probe.py", line 40\' >&2\n'
                     "echo 'SyntaxError: invalid syntax' >&2\nexit 1\n", True,
                     "failed to run the probe script (exit code 1): SyntaxError: invalid syntax"),
}


@pytest.mark.skipif(sys.platform == "win32", reason="shebang scripts and execute bits are POSIX")
@pytest.mark.parametrize("kind", sorted(NOT_PYTHONS))
def test_not_a_python_is_bad_input(kind: str, tmp_path: Path) -> None:
    text, executable, says = NOT_PYTHONS[kind]
    target = tmp_path / "target"
    if text == "<dir>":
        target.mkdir()
    elif text is not None:
        target.write_text(text)
        target.chmod(0o755 if executable else 0o644)
    with pytest.raises(BadInputError) as info:
        probe_interpreter(str(target), timeout=20)
    assert str(target) in info.value.message
    assert says in info.value.message
    assert info.value.hint and "--python" in info.value.hint
    if sys.platform != "win32":
        assert "C:\\" not in info.value.hint


def test_relative_path_in_the_current_folder(venvs: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`--python python` where ./python exists: the file here, not a lookup on PATH (which has none)."""
    monkeypatch.chdir(venvs["none"].parent)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert resolve_target(venvs["none"].name) == str(venvs["none"])
    facts = probe_interpreter(venvs["none"].name, torch=False)
    assert facts.python.executable is not None and Path(facts.python.executable).parent == venvs["none"].parent


def test_path_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    root = tmp_path / "VOX 1 ünïcødé" / "system python"
    py = make_venv(root, pip=False)
    facts = probe_interpreter(str(py), torch=False)
    assert facts.python.executable == str(py)
    assert facts.python.site_packages is not None and "VOX 1 ünïcødé" in facts.python.site_packages
    assert Path(resolve_target(str(root))).parent == py.parent  # the folder is searched for its interpreter


def test_environment_variables_in_the_path(venvs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOX1_TEST_ROOT", str(venvs["none"].parent.parent))
    assert resolve_target(str(Path("$VOX1_TEST_ROOT") / venvs["none"].parent.name / venvs["none"].name)) == str(
        venvs["none"])


def test_interpreter_that_never_answers(tmp_path: Path) -> None:
    target = tmp_path / "python"
    target.write_text("#!/bin/sh\nsleep 60\n")
    target.chmod(0o755)
    with pytest.raises(BadInputError) as info:
        probe_interpreter(str(target), timeout=1, torch=False)
    assert info.value.message.endswith("did not answer within 1 s")
    assert info.value.hint is not None and "--timeout" in info.value.hint


# ------------------------------------------------------------------------------------------ pure parts


def test_probe_output_is_one_json_object_even_with_noise() -> None:
    assert parse_probe_output('noise\n{"schema": "vox1-probe/1", "python": {}}\n') == {
        "schema": "vox1-probe/1", "python": {}}
    assert parse_probe_output("not json\n") is None
    assert parse_probe_output('{"schema": "other"}\n') is None
    assert parse_probe_output("") is None


def test_probe_script_prints_exactly_one_line() -> None:
    out = subprocess.run([sys.executable, str(PROBE_SCRIPT), "--no-torch"], capture_output=True, text=True,
                         check=True).stdout
    assert len(out.strip().splitlines()) == 1
    assert json.loads(out)["schema"] == "vox1-probe/1"


def test_tags_equal_sys_tags_of_the_running_interpreter() -> None:
    """The pure derivation from the probe's facts gives exactly what packaging computes in-process."""
    out = subprocess.run([sys.executable, str(PROBE_SCRIPT), "--no-torch"], capture_output=True, text=True,
                         check=True).stdout
    facts = facts_from_probe(json.loads(out))
    assert facts.python.tags is not None
    assert list(facts.python.tags) == [str(t) for t in ptags.sys_tags()]


def test_machine_is_the_interpreters() -> None:
    from vox1_setup.probe.interpreter import interpreter_machine

    assert interpreter_machine("windows", "AMD64", "win-amd64", 64) == "amd64"
    assert interpreter_machine("windows", "AMD64", "win32", 32) == "x86"  # 32-bit Python on 64-bit Windows
    assert interpreter_machine("windows", "ARM64", "win-amd64", 64) == "amd64"  # emulated x64 Python
    assert interpreter_machine("linux", "x86_64", "linux-x86_64", 32) == "i686"
    assert interpreter_machine("linux", "aarch64", "linux-aarch64", 64) == "aarch64"
    assert interpreter_machine("darwin", "arm64", "macosx-11.0-arm64", 64) == "arm64"


def test_torch_warnings_are_reported(tmp_path: Path) -> None:
    py = venv_with(tmp_path / "old-driver", [("torch", OLD_DRIVER_TORCH, "2.7.1+cu128"),
                                             ("nvidia-cudnn-cu12", NVIDIA_NAMESPACE, "9.1.0.70")])
    t = probe_interpreter(str(py)).torch
    assert t is not None and t.importable and t.cuda_available is False
    assert t.warnings == ("UserWarning: CUDA initialization: The NVIDIA driver on your system is too old "
                          "(found version 11040). Please update your GPU driver.",)  # deprecations dropped
