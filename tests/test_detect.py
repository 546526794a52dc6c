"""`vox1-setup detect` end to end: real venvs as targets, a fake nvidia-smi on PATH, NVML switched off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.nvidia_fakes import install_fake_smi
from tests.fixtures.torch_fixtures import BROKEN_TORCH, CUDA_TORCH, NVIDIA_NAMESPACE
from tests.support.venvs import make_venv, site_packages, write_fixture_package
from vox1_setup.cli import run_cli
from vox1_setup.commands.detect import one_line, summary_lines
from vox1_setup.environment import environment_from_dict, environment_to_dict, load_environment_file
from vox1_setup.errors import ExitCode
from vox1_setup.probe import detect_environment
from vox1_setup.probe.detect import assemble

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fake nvidia-smi is a shebang script")


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("detect-venvs")
    cuda = make_venv(base / "cuda", pip=False)
    write_fixture_package(site_packages(base / "cuda"), "torch", CUDA_TORCH, "2.7.1+cu128")
    write_fixture_package(site_packages(base / "cuda"), "nvidia", NVIDIA_NAMESPACE, "9.1.0.70",
                          dist_name="nvidia-cudnn-cu12")
    broken = make_venv(base / "broken", pip=False)
    write_fixture_package(site_packages(base / "broken"), "torch", BROKEN_TORCH, "2.6.0+cu124")
    return {"cuda": str(cuda), "broken": str(broken), "none": str(make_venv(base / "none", pip=False))}


@pytest.fixture
def one_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Windows-driver RTX 4070 Ti answering through nvidia-smi; NVML unavailable (VOX1_NO_NVML)."""
    monkeypatch.setenv("VOX1_NO_NVML", "1")
    install_fake_smi(tmp_path / "bin", monkeypatch, query="smi_query_windows_576_rtx4070ti.csv",
                     plain="smi_plain_windows_576_rtx4070ti.txt")


@pytest.fixture
def no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOX1_NO_NVML", "1")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    monkeypatch.setattr("vox1_setup.probe.nvidia.nvidia_smi_candidates", lambda os_name, env: [])
    monkeypatch.setattr("vox1_setup.probe.nvidia.query_proc", _no_proc)


def _no_proc(os_name: str, root: Path = Path("/")) -> object:
    from vox1_setup.probe.nvidia import _Unavailable

    raise _Unavailable("no NVIDIA kernel module loaded (/proc/driver/nvidia/version absent)")


def detect_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    code = run_cli(["detect", "--json", *args])
    out = capsys.readouterr().out
    assert code == ExitCode.OK, out
    doc = json.loads(out)
    assert isinstance(doc, dict)
    return doc


def test_json_with_gpu_and_cuda_torch(targets: dict[str, str], one_gpu: None,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    doc = detect_json(capsys, "--python", targets["cuda"])
    assert doc["schema"] == "vox1-env/1"
    assert doc["driver"] == {"version": "576.02", "cuda": "12.9", "source": "nvidia-smi"}
    assert doc["gpus"] == [{"index": 0, "name": "NVIDIA GeForce RTX 4070 Ti", "compute_capability": "8.9",
                            "memory_total_mib": 12282, "memory_free_mib": 11004,
                            "uuid": "GPU-3f1e9a3c-5b7d-4c1e-9e55-0d6c2f0b7a11", "source": "nvidia-smi"}]
    torch = doc["torch"]
    assert isinstance(torch, dict)
    assert (torch["version"], torch["cuda"], torch["cxx11abi"], torch["cuda_available"]) == (
        "2.7.1+cu128", "12.8", True, True)
    assert torch["devices"] == [{"index": 0, "name": "NVIDIA GeForce RTX 4070 Ti", "capability": "8.9"}]
    python = doc["python"]
    assert isinstance(python, dict)
    assert python["executable"] == targets["cuda"] or Path(str(python["executable"])).parent == Path(
        targets["cuda"]).parent
    sources = doc["sources"]
    assert isinstance(sources, dict)
    assert sources["gpus"] == "nvidia-smi" and sources["driver.version"] == "nvidia-smi"
    assert sources["nvidia.attempts"] == "nvml: skipped (VOX1_NO_NVML is set)"
    host = doc["host"]
    assert isinstance(host, dict)
    assert host["ram_total_mib"] > 0 and "cache" in host["disk"] and "site_packages" in host["disk"]


def test_json_round_trips_through_load_environment_file(targets: dict[str, str], one_gpu: None,
                                                        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = detect_json(capsys, "--python", targets["cuda"])
    path = tmp_path / "env.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert environment_to_dict(load_environment_file(path)) == doc


def test_output_file(targets: dict[str, str], one_gpu: None, capsys: pytest.CaptureFixture[str],
                     tmp_path: Path) -> None:
    path = tmp_path / "env.json"
    assert run_cli(["detect", "--python", targets["cuda"], "-o", str(path)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"wrote {path}" in out
    env = load_environment_file(path)
    assert env.gpus[0].compute_capability == "8.9"
    assert not list(tmp_path.glob(".env.json.*"))  # no temp file left behind


def test_output_into_missing_folder_is_bad_input(targets: dict[str, str], no_gpu: None, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(["detect", "--python", targets["none"], "-o", str(tmp_path / "nope" / "e.json")])
    assert code == ExitCode.BAD_INPUT
    assert "does not exist" in capsys.readouterr().err


def test_human_summary(targets: dict[str, str], one_gpu: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["detect", "--python", targets["cuda"]]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "2.7.1+cu128 · CUDA 12.8 build · C++11 ABI 1 · CUDA available (sm_89)" in out
    assert "NVIDIA 576.02 · supports CUDA ≤ 12.9 · via nvidia-smi" in out
    assert "GPU 0" in out and "compute 8.9 (Ada Lovelace)" in out and "10.7 of 12.0 GiB free" in out
    assert "Wheel tags" in out


def test_no_gpu_no_torch_exits_zero(targets: dict[str, str], no_gpu: None,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["detect", "--python", targets["none"]]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "torch       not installed" in out
    assert "Driver      no NVIDIA driver found (NVML, nvidia-smi, /proc did not answer; -v says why)" in out
    assert "nvml: skipped" not in out  # the reasons are for -v
    assert run_cli(["detect", "-v", "--python", targets["none"]]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "nvidia.attempts: nvml: skipped (VOX1_NO_NVML is set); nvidia-smi: not found on PATH" in out


def test_broken_torch_is_reported_and_exits_zero(targets: dict[str, str], no_gpu: None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    doc = detect_json(capsys, "--python", targets["broken"])
    torch = doc["torch"]
    assert isinstance(torch, dict)
    assert torch["version"] is None and "libc10.so" in str(torch["import_error"])
    assert run_cli(["detect", "--python", targets["broken"]]) == ExitCode.OK
    assert "FAILS TO IMPORT: ImportError: libc10.so" in capsys.readouterr().out


def test_quiet_is_one_line(targets: dict[str, str], one_gpu: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["-q", "detect", "--python", targets["cuda"]]) == ExitCode.OK
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert "torch 2.7.1+cu128" in lines[0] and "NVIDIA GeForce RTX 4070 Ti (8.9)" in lines[0]


def test_not_a_python_exits_bad_input(tmp_path: Path, no_gpu: None, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "python.exe"
    fake.write_text("not a program\n")
    assert run_cli(["detect", "--python", str(fake)]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "error:" in err and str(fake) in err and "hint:" in err
    assert run_cli(["detect", "--python", str(tmp_path / "absent")]) == ExitCode.BAD_INPUT


def test_verbose_lists_sources(targets: dict[str, str], one_gpu: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["detect", "-v", "--python", targets["cuda"]]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "Sources:" in out and "driver.cuda: nvidia-smi" in out and "torch: probe (import torch)" in out


def test_cli_process_never_imports_torch(targets: dict[str, str], tmp_path: Path) -> None:
    """`python -m vox1_setup detect` as a user runs it; torch is imported in the target only."""
    env = dict(os.environ)
    env["VOX1_NO_NVML"] = "1"
    code = ("import sys; from vox1_setup.cli import run_cli; rc = run_cli(sys.argv[1:]); "
            "sys.stderr.write('TORCH_IN_CLI=%s' % ('torch' in sys.modules)); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "detect", "--json", "--python", targets["cuda"]],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH_IN_CLI=False" in proc.stderr
    assert json.loads(proc.stdout)["torch"]["version"] == "2.7.1+cu128"


def test_detect_environment_entry_point(targets: dict[str, str], one_gpu: None) -> None:
    env = detect_environment(targets["cuda"], gpu=False, timeout=60)
    assert env.driver is None and env.gpus == ()
    assert env.sources["nvidia"] == "skipped (--no-gpu)"
    assert env.torch is not None and env.torch.version == "2.7.1+cu128"
    assert "Driver      not checked (--no-gpu)" in summary_lines(env)
    assert "no NVIDIA GPU" in one_line(env)


def test_assemble_is_pure() -> None:
    from vox1_setup.probe.interpreter import facts_from_probe

    probe_doc = {"schema": "vox1-probe/1", "torch_probed": True, "torch": None, "flash_attn": None,
                 "packages": {}, "python": {"version": "3.10.11", "implementation": "cpython",
                                            "sysconfig_platform": "win-amd64", "pointer_bits": 64},
                 "platform": {"system": "Windows", "machine": "AMD64", "release": "10"}}
    env = assemble(facts_from_probe(probe_doc), None, {"ram_total_mib": 1})
    assert (env.os, env.machine, env.wheel_tags[0]) == ("windows", "amd64", "cp310-cp310-win_amd64")
    assert environment_to_dict(environment_from_dict(environment_to_dict(env))) == environment_to_dict(env)


# ------------------------------------------------------------------------------------------------- host


def test_host_facts_and_disk(tmp_path: Path) -> None:
    from vox1_setup.probe.host import disk_free, existing_ancestor, host_facts, parse_os_release

    facts = host_facts({"cache": tmp_path / "not" / "yet" / "created"})
    assert facts["ram_total_mib"] >= facts["ram_available_mib"] > 0
    entry = facts["disk"]["cache"]
    assert entry["free_mib"] > 0 and entry["path"].endswith("created")
    assert existing_ancestor(tmp_path / "a" / "b") == tmp_path
    assert disk_free({"none": None}) == {}
    info = parse_os_release('NAME="Ubuntu"\nVERSION_ID="22.04"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n# comment\n')
    assert info["PRETTY_NAME"] == "Ubuntu 22.04.4 LTS" and info["VERSION_ID"] == "22.04"


def test_target_by_command_name(targets: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from vox1_setup.probe.interpreter import resolve_target

    monkeypatch.setenv("PATH", str(Path(targets["none"]).parent))
    assert Path(resolve_target("python")).parent == Path(targets["none"]).parent


def test_notes_say_what_contradicts() -> None:
    from vox1_setup.commands.detect import notes
    from vox1_setup.environment import GpuInfo, TorchInfo

    base = environment_from_dict({"os": "linux", "machine": "x86_64", "python": {"version": "3.11.9"},
                                  "torch": None, "gpus": [], "driver": None})
    gpu = (GpuInfo(index=0, name="NVIDIA GeForce RTX 3090", compute_capability="8.6"),)
    from dataclasses import replace

    cpu_torch = replace(base, gpus=gpu, torch=TorchInfo(version="2.13.0+cpu"))
    assert any("CPU-only build" in n for n in notes(cpu_torch))
    warned = replace(base, gpus=gpu, torch=TorchInfo(
        version="2.7.1+cu128", cuda="12.8", cuda_available=False,
        warnings=("UserWarning: CUDA initialization: The NVIDIA driver on your system is too old",)))
    lines = notes(warned)
    assert any("sees no GPU" in n for n in lines)
    assert "note: torch warned: UserWarning: CUDA initialization: The NVIDIA driver on your system is too old" in lines
    assert notes(base) == []


def test_show_a_saved_document(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "user-env.json"
    path.write_text(json.dumps({"os": "windows", "machine": "AMD64", "python": {"version": "3.10.11"},
                                "torch": {"version": "2.7.1+cu128", "cuda": "12.8"},
                                "gpus": [{"name": "NVIDIA GeForce RTX 2080 Ti"}], "driver": {"version": "576.02"}}),
                    encoding="utf-16")
    assert run_cli(["detect", "--env", str(path)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "compute 7.5 from name (Turing)" in out and "FlashAttention 2: no (needs compute 8.0+)" in out
    assert "cp310-cp310-win_amd64" in out
    assert run_cli(["detect", "--env", str(path), "--json"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["machine"] == "amd64"
    assert run_cli(["detect", "--env", str(path), "--python", "x"]) == ExitCode.BAD_INPUT
    assert "--env and --python exclude each other" in capsys.readouterr().err
    monkeypatch.setenv("VOX1_PYTHON", str(tmp_path / "elsewhere" / "python"))  # set for other commands: no clash
    assert run_cli(["detect", "--env", str(path), "-q"]) == ExitCode.OK
    assert capsys.readouterr().out.startswith("windows amd64 · Python 3.10.11")
    bad = tmp_path / "bad.json"
    bad.write_text('{"os": "linux", "machine": "x86_64", "python": {"version": "3.11"}, "gpus": [7]}')
    assert run_cli(["detect", "--env", str(bad)]) == ExitCode.BAD_INPUT
    assert "env.gpus[0]: expected an object" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "cc", "text"), [
    ("NVIDIA GeForce RTX 4070 Ti", "8.9", "FlashAttention 2: supported"),
    ("Tesla T4", "7.5", "FlashAttention 2: no (needs compute 8.0+)"),
    ("NVIDIA GeForce RTX 5090", "12.0", "FlashAttention 2: only flash-attn ≥ 2.7.3 built for CUDA ≥ 12.8"),
    ("Mystery GPU", None, "compute capability unknown"),
])
def test_gpu_line(name: str, cc: str | None, text: str) -> None:
    from vox1_setup.commands.detect import gpu_line

    env = environment_from_dict({"os": "linux", "machine": "x86_64", "python": {"version": "3.11"},
                                 "gpus": [{"name": name, "compute_capability": cc}]})
    assert text in gpu_line(env, 0)


# ------------------------------------------------------------------------ more GPUs, failing nvidia-smi


def test_several_gpus_of_different_generations(targets: dict[str, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VOX1_NO_NVML", "1")
    install_fake_smi(tmp_path / "bin", monkeypatch, query="smi_query_linux_570_mixed.csv",
                     plain="smi_plain_linux_570_mixed.txt")
    doc = detect_json(capsys, "--python", targets["none"])
    gpus = doc["gpus"]
    assert isinstance(gpus, list)
    assert [(g["index"], g["compute_capability"], g["memory_total_mib"]) for g in gpus] == [
        (0, "12.0", 32607), (1, "8.9", 24564), (2, "7.5", 15360)]
    assert doc["driver"] == {"version": "570.133.07", "cuda": "12.8", "source": "nvidia-smi"}
    assert run_cli(["detect", "--no-torch", "--python", targets["none"]]) == ExitCode.OK
    lines = capsys.readouterr().out.splitlines()
    gpu_lines = [line for line in lines if line.startswith("GPU ")]
    assert len(gpu_lines) == 3
    assert gpu_lines == [
        "GPU 0       NVIDIA GeForce RTX 5090 · compute 12.0 (Blackwell) · 31.1 of 31.8 GiB free · "
        "FlashAttention 2: only flash-attn ≥ 2.7.3 built for CUDA ≥ 12.8",
        "GPU 1       NVIDIA GeForce RTX 4090 · compute 8.9 (Ada Lovelace) · 23.4 of 24.0 GiB free · "
        "FlashAttention 2: supported",
        "GPU 2       Tesla T4 · compute 7.5 (Turing) · 14.6 of 15.0 GiB free · "
        "FlashAttention 2: no (needs compute 8.0+)",
    ]


@pytest.mark.parametrize(("mode", "reason"), [
    ("hang", "timed out after 2 s"),
    ("not-loaded", "couldn't communicate with the NVIDIA driver"),
    ("garbage", "unexpected output"),
])
def test_failing_nvidia_smi_is_reported_not_fatal(mode: str, reason: str, targets: dict[str, str], *,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VOX1_NO_NVML", "1")
    monkeypatch.setattr("vox1_setup.probe.nvidia.query_proc", _no_proc)
    install_fake_smi(tmp_path / "bin", monkeypatch, query="x", plain="x", mode=mode)
    started = time.monotonic()
    doc = detect_json(capsys, "--timeout", "2", "--python", targets["none"])
    assert time.monotonic() - started < 15  # --timeout bounds nvidia-smi too
    assert doc["driver"] is None and doc["gpus"] == []
    sources = doc["sources"]
    assert isinstance(sources, dict)
    assert sources["nvidia"] == "none answered" and reason in sources["nvidia.attempts"]


# ------------------------------------------------------------------------ targets as users name them


def test_target_from_vox1_python(targets: dict[str, str], no_gpu: None, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VOX1_PYTHON", targets["cuda"])
    doc = detect_json(capsys)
    python, torch = doc["python"], doc["torch"]
    assert isinstance(python, dict) and isinstance(torch, dict)
    assert Path(str(python["executable"])).parent == Path(targets["cuda"]).parent
    assert torch["version"] == "2.7.1+cu128"
    monkeypatch.setenv("VOX1_PYTHON", str(Path(targets["cuda"]).parent / "no-such-python"))
    assert run_cli(["detect"]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "(the target came from VOX1_PYTHON)" in err and "unset VOX1_PYTHON" in err


def test_target_path_with_spaces_and_non_ascii(tmp_path: Path, no_gpu: None, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """VOX-1 unpacked under a user folder like `C:\\Users\\Zoë Müller\\VOX 1\\system_python`."""
    root = tmp_path / "Zoë Müller" / "VOX 1" / "system_python"
    py = make_venv(root, pip=False)
    doc = detect_json(capsys, "--python", str(root))  # the folder: its interpreter is found in it
    python = doc["python"]
    assert isinstance(python, dict) and Path(str(python["executable"])).parent == py.parent
    monkeypatch.chdir(root.parent)  # a relative path, as typed in a console opened there
    assert run_cli(["detect", "--no-torch", "--python", str(py.relative_to(root.parent))]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"Python      {sys.version_info[0]}.{sys.version_info[1]}" in out and str(py.parent) in out


@pytest.mark.parametrize("kind", ["folder", "text-file", "not-executable"])
def test_bad_targets_exit_bad_input_and_write_nothing(kind: str, tmp_path: Path, no_gpu: None,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "python.exe"
    if kind == "folder":
        target.mkdir()
    else:
        target.write_text("print('hi')\n")
        target.chmod(0o755 if kind == "text-file" else 0o644)
    before = sorted(tmp_path.rglob("*"))  # VOX1_HOME (cache, journal) lives here too
    out_file = tmp_path / "env.json"
    assert run_cli(["detect", "--python", str(target), "-o", str(out_file)]) == ExitCode.BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == "" and "error:" in captured.err and "hint:" in captured.err
    assert str(target) in captured.err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even a partial env.json


# ------------------------------------------------------------------------------------- summary details


def test_python_2_target_gets_a_note() -> None:
    from vox1_setup.commands.detect import notes

    env = environment_from_dict({"os": "linux", "machine": "x86_64", "python": {"version": "2.7.18"}})
    assert any(n.startswith("note: Python 2.7.18 cannot run VOX-1") for n in notes(env))


def test_disk_is_one_line() -> None:
    from vox1_setup.commands.detect import disk_text

    disk = {"cache": {"path": "/c", "free_mib": 10240, "total_mib": 1}, "site_packages": {"path": "/s"}}
    assert disk_text(disk) == "10.0 GiB free for the cache (/c), unknown for site-packages"
    assert disk_text(disk, verbose=True).endswith("unknown for site-packages (/s)")
    assert disk_text({}) == "" and disk_text(None) == ""


def test_every_host_fact_names_its_source(targets: dict[str, str], no_gpu: None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    doc = detect_json(capsys, "--python", targets["none"])
    sources, host = doc["sources"], doc["host"]
    assert isinstance(sources, dict) and isinstance(host, dict)
    assert "sources" not in host
    assert sources["host.ram"] == "psutil.virtual_memory" and sources["host.disk"] == "psutil.disk_usage"
    assert sources["host.os_name"] in ("/etc/os-release", "/usr/lib/os-release", "platform.release")
    assert {"os", "machine", "python", "python.tags", "packages", "flash_attn", "torch", "nvidia"} <= set(sources)


def test_flash_attn_location_only_when_it_is_not_the_targets_own() -> None:
    from dataclasses import replace

    from vox1_setup.environment import FlashAttnInfo

    base = environment_from_dict({"os": "linux", "machine": "x86_64",
                                  "python": {"version": "3.11.9", "site_packages": "/opt/vox/lib/site-packages"}})
    own = replace(base, flash_attn=FlashAttnInfo("2.7.4.post1", "/opt/vox/lib/site-packages/"))
    assert "flash-attn  2.7.4.post1" in summary_lines(own)
    assert "flash-attn  2.7.4.post1 (in /opt/vox/lib/site-packages/)" in summary_lines(own, verbose=True)
    user_site = replace(base, flash_attn=FlashAttnInfo("2.8.3", "/home/u/.local/lib/python3.11/site-packages"))
    assert "flash-attn  2.8.3 (in /home/u/.local/lib/python3.11/site-packages)" in summary_lines(user_site)


# ------------------------------------------------------------------------- documents hold probed facts only


@pytest.mark.parametrize("args", [
    ["--no-torch", "--json"],
    ["--no-gpu", "--json"],
    ["--no-torch", "-o", "OUT"],
    ["--no-gpu", "-o", "OUT"],
    ["--no-torch", "--no-gpu", "--json", "-o", "OUT"],
])
def test_skipped_facts_are_never_written_as_absent(args: list[str], targets: dict[str, str], no_gpu: None,
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--no-torch would write torch: null, which every reader takes for 'torch is not installed'."""
    out_file = tmp_path / "env.json"
    argv = ["detect", "--python", targets["cuda"], *(str(out_file) if a == "OUT" else a for a in args)]
    assert run_cli(argv) == ExitCode.BAD_INPUT
    captured = capsys.readouterr()
    assert "a vox1-env/1 document must hold probed facts" in captured.err
    assert "hint: drop --no" in captured.err or '"hint": "drop --no' in captured.out
    assert not out_file.exists()


def test_skipped_facts_still_show_in_the_summary(targets: dict[str, str], no_gpu: None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["detect", "--no-torch", "--no-gpu", "--python", targets["cuda"]]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "2.7.1+cu128 installed (not imported: --no-torch)" in out and "not checked (--no-gpu)" in out


def test_saved_document_without_optional_fields_shows_no_placeholders(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sent.json"
    path.write_text(json.dumps({"os": "linux", "machine": "x86_64", "python": {"version": "3.12.10"},
                                "host": {"ram_total_mib": 16384},
                                "torch": {"version": "2.7.1+cu128", "cuda": "12.8"},
                                "gpus": [{"name": "Mystery GPU"}], "driver": {"version": "570.133.07"}}),
                    encoding="utf-8")
    assert run_cli(["-v", "detect", "--env", str(path)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "None" not in out and "?" not in out
    assert "Python      3.12.10 CPython\n" in out
    assert "Driver      NVIDIA 570.133.07 · max CUDA unknown\n" in out
    assert "Machine     linux · x86_64 · RAM 16.0 GiB\n" in out
    assert "Sources:" not in out
    assert run_cli(["-q", "detect", "--env", str(path)]) == ExitCode.OK
    assert capsys.readouterr().out.strip().endswith("· Mystery GPU")
