"""NVIDIA detection: pure parsers on captured outputs, then each source end to end with fakes of what cannot
exist here (a driver, NVML, nvidia-smi) that behave like the real thing at the interface used."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.nvidia_fakes import FIX, fake_pynvml, install_fake_smi
from vox1_setup.knowledge.gpus import GPU_CAPABILITIES, capability_for_name, family_for_capability, normalize_name
from vox1_setup.probe import nvidia
from vox1_setup.probe.nvidia import (
    SMI_FIELDS,
    SMI_FIELDS_OLD,
    cuda_from_nvml,
    detect_nvidia,
    gpus_from_smi_rows,
    nvidia_smi_candidates,
    parse_proc_gpu_information,
    parse_proc_version,
    parse_smi_csv,
    parse_smi_header,
    smi_refused_field,
)


def fixture(name: str) -> str:
    return (FIX / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- pure parsers


def test_one_gpu_windows_csv() -> None:
    rows = parse_smi_csv(fixture("smi_query_windows_576_rtx4070ti.csv"))
    (gpu,) = gpus_from_smi_rows(rows)
    assert gpu.index == 0
    assert gpu.name == "NVIDIA GeForce RTX 4070 Ti"
    assert gpu.compute_capability == "8.9"
    assert (gpu.memory_total_mib, gpu.memory_free_mib) == (12282, 11004)
    assert gpu.uuid == "GPU-3f1e9a3c-5b7d-4c1e-9e55-0d6c2f0b7a11"
    assert gpu.source == "nvidia-smi"
    assert rows[0]["driver_version"] == "576.02"


def test_several_gpus_give_several_rows() -> None:
    gpus = gpus_from_smi_rows(parse_smi_csv(fixture("smi_query_linux_550_4xa100.csv")))
    assert [g.index for g in gpus] == [0, 1, 2, 3]
    assert {g.compute_capability for g in gpus} == {"8.0"}
    assert gpus[2].memory_free_mib == 2301
    assert len({g.uuid for g in gpus}) == 4


def test_old_driver_without_compute_cap_maps_names() -> None:
    assert smi_refused_field(fixture("smi_refused_compute_cap_470.txt")) == "compute_cap"
    gpus = gpus_from_smi_rows(parse_smi_csv(fixture("smi_query_linux_470_nocc.csv"), SMI_FIELDS_OLD))
    assert [(g.name, g.compute_capability, g.source) for g in gpus] == [
        ("Tesla T4", "7.5", "nvidia-smi+name-table"),
        ("Tesla V100-SXM2-16GB", "7.0", "nvidia-smi+name-table"),
    ]


def test_not_available_values_become_unknown() -> None:
    (gpu,) = gpus_from_smi_rows(parse_smi_csv(fixture("smi_query_linux_580_gb10_unified_memory.csv")))
    assert gpu.compute_capability == "12.1"
    assert gpu.memory_total_mib is None and gpu.memory_free_mib is None


def test_csv_with_wrong_column_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="columns"):
        parse_smi_csv("0, NVIDIA A10, 8.6\n", SMI_FIELDS)


@pytest.mark.parametrize(("name", "driver", "cuda"), [
    ("smi_plain_windows_576_rtx4070ti.txt", "576.02", "12.9"),
    ("smi_plain_linux_550_4xa100.txt", "550.144.03", "12.4"),
    ("smi_plain_linux_470.txt", "470.182.03", "11.4"),
])
def test_smi_header(name: str, driver: str, cuda: str) -> None:
    assert parse_smi_header(fixture(name)) == (driver, cuda)


def test_smi_dash_q_layout() -> None:
    text = "==============NVSMI LOG==============\n\nDriver Version                            : 570.133.07\n" \
           "CUDA Version                              : 12.8\n"
    assert parse_smi_header(text) == ("570.133.07", "12.8")


@pytest.mark.parametrize(("name", "version"), [
    ("proc_version_proprietary_384.txt", "384.98"),
    ("proc_version_open_565.txt", "565.57.01"),
    ("proc_version_open_arch_525.txt", "525.60.11"),
    ("proc_version_jetson_orin.txt", "35.3.1"),
    ("sys_module_version_550.txt", "550.144.03"),
])
def test_proc_version(name: str, version: str) -> None:
    assert parse_proc_version(fixture(name)) == version


def test_proc_version_garbage() -> None:
    assert parse_proc_version("") is None
    assert parse_proc_version("no driver here\n") is None


def test_proc_gpu_information() -> None:
    info = parse_proc_gpu_information(fixture("proc_gpu_information_rtx3090.txt"))
    assert info["Model"] == "NVIDIA GeForce RTX 3090"
    assert info["Device Minor"] == "0"
    assert info["GPU UUID"].startswith("GPU-5c0e5a5d")
    assert info["Bus Location"] == "0000:01:00.0"


def test_cuda_from_nvml() -> None:
    assert cuda_from_nvml(12090) == "12.9"
    assert cuda_from_nvml(13000) == "13.0"
    assert cuda_from_nvml(11040) == "11.4"


def test_windows_lookup_places() -> None:
    env = {"SystemRoot": "D:\\Win", "ProgramFiles": "E:\\Programs"}
    assert nvidia_smi_candidates("windows", env) == [
        "D:\\Win\\System32\\nvidia-smi.exe", "E:\\Programs\\NVIDIA Corporation\\NVSMI\\nvidia-smi.exe"]
    assert nvidia_smi_candidates("windows", {})[0] == "C:\\Windows\\System32\\nvidia-smi.exe"


# ------------------------------------------------------------------------------------------- name table


@pytest.mark.parametrize(("key", "cc"), GPU_CAPABILITIES)
def test_every_table_entry_maps_to_itself_and_has_a_family(key: str, cc: str) -> None:
    assert capability_for_name(f"NVIDIA {key.upper()}") == cc
    assert family_for_capability(cc) is not None


@pytest.mark.parametrize(("name", "cc"), [
    ("NVIDIA GeForce RTX 4070 Ti SUPER", "8.9"),
    ("NVIDIA GeForce RTX 3060 Laptop GPU", "8.6"),
    ("NVIDIA A100-SXM4-80GB", "8.0"),
    ("NVIDIA H100 80GB HBM3", "9.0"),
    ("Quadro RTX 6000", "7.5"),  # Turing, not the Ada "RTX 6000 Ada Generation"
    ("NVIDIA RTX 6000 Ada Generation", "8.9"),
    ("NVIDIA RTX A6000", "8.6"),
    ("NVIDIA GeForce GTX 1660 SUPER", "7.5"),
    ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "12.0"),
    ("Some Future GPU 9000", None),
])
def test_capability_for_real_names(name: str, cc: str | None) -> None:
    assert capability_for_name(name) == cc


def test_whole_words_only() -> None:
    # "a10" must not match inside "a100"; "l4" must not match "l40s"
    assert capability_for_name("NVIDIA A100") == "8.0"
    assert capability_for_name("NVIDIA L40S") == "8.9"
    assert normalize_name("NVIDIA GeForce RTX 4090 D") == "rtx 4090 d"


# ---------------------------------------------------------------------- sources end to end (with fakes)

@pytest.fixture
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOX1_NO_NVML", "1")


@pytest.fixture
def empty_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.mark.skipif(sys.platform == "win32", reason="the fake nvidia-smi is a script with a shebang")
def test_nvidia_smi_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_nvml: None,
                            empty_proc: Path) -> None:
    install_fake_smi(tmp_path / "bin", monkeypatch, query="smi_query_linux_550_4xa100.csv",
                     plain="smi_plain_linux_550_4xa100.txt")
    report = detect_nvidia("linux", proc_root=empty_proc)
    assert report.source == "nvidia-smi"
    assert report.driver is not None
    assert (report.driver.version, report.driver.cuda, report.driver.source) == ("550.144.03", "12.4", "nvidia-smi")
    assert len(report.gpus) == 4
    assert report.sources["driver.cuda"] == "nvidia-smi"
    assert report.attempts == ("nvml: skipped (VOX1_NO_NVML is set)",)


@pytest.mark.skipif(sys.platform == "win32", reason="the fake nvidia-smi is a script with a shebang")
def test_old_nvidia_smi_refusing_compute_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_nvml: None,
                                             empty_proc: Path) -> None:
    install_fake_smi(tmp_path / "bin", monkeypatch, query="smi_query_linux_470_nocc.csv",
                     plain="smi_plain_linux_470.txt", mode="old")
    report = detect_nvidia("linux", proc_root=empty_proc)
    assert report.source == "nvidia-smi"
    assert [g.compute_capability for g in report.gpus] == ["7.5", "7.0"]
    assert report.driver is not None and report.driver.cuda == "11.4"
    assert "name table" in report.sources["gpus"]


@pytest.mark.skipif(sys.platform == "win32", reason="the fake nvidia-smi is a script with a shebang")
def test_driver_not_loaded_falls_back_to_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_nvml: None
                                              ) -> None:
    install_fake_smi(tmp_path / "bin", monkeypatch, query="x", plain="x", mode="not-loaded")
    root = tmp_path / "root"
    gpus = root / "proc/driver/nvidia/gpus"
    for bus, name in (("0000:00:04.0", "proc_gpu_information_t4.txt"),
                      ("0000:01:00.0", "proc_gpu_information_rtx3090.txt")):
        (gpus / bus).mkdir(parents=True)
        shutil.copy(FIX / name, gpus / bus / "information")
    shutil.copy(FIX / "proc_version_open_565.txt", root / "proc/driver/nvidia/version")
    report = detect_nvidia("linux", proc_root=root)
    assert report.source == "proc"
    assert report.driver is not None
    assert report.driver.version == "565.57.01"
    assert report.driver.cuda == "12.6"  # from the driver table: 565 ≥ 560.28.03 (12.6), < 570.26 (12.8)
    assert [(g.index, g.name, g.compute_capability) for g in report.gpus] == [
        (0, "NVIDIA GeForce RTX 3090", "8.6"), (1, "Tesla T4", "7.5")]
    assert any("couldn't communicate with the NVIDIA driver" in a for a in report.attempts)


def test_sys_module_version_when_proc_lacks_it(tmp_path: Path, no_nvml: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(nvidia, "nvidia_smi_candidates", lambda os_name, env: [])
    root = tmp_path / "root"
    (root / "sys/module/nvidia").mkdir(parents=True)
    shutil.copy(FIX / "sys_module_version_550.txt", root / "sys/module/nvidia/version")
    report = detect_nvidia("linux", proc_root=root)
    assert report.source == "proc"
    assert report.driver is not None and report.driver.version == "550.144.03"
    assert report.gpus == ()


def test_nothing_answers(tmp_path: Path, no_nvml: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(nvidia, "nvidia_smi_candidates", lambda os_name, env: [])
    report = detect_nvidia("linux", proc_root=tmp_path)
    assert report.source is None and report.driver is None and report.gpus == ()
    assert [a.split(":")[0] for a in report.attempts] == ["nvml", "nvidia-smi", "proc"]


def test_real_pynvml_without_a_driver_is_reported_not_raised(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """On this machine NVML's library is absent: the real pynvml must fail cleanly into the next source."""
    pytest.importorskip("pynvml")
    if Path("/proc/driver/nvidia/version").exists():
        pytest.skip("a real NVIDIA driver is present")
    monkeypatch.delenv("VOX1_NO_NVML", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    report = detect_nvidia("linux", proc_root=tmp_path)
    assert report.attempts[0].startswith("nvml: ")
    assert report.source is None


def test_nvml_answers_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mib = 1024 * 1024
    mod = fake_pynvml(gpus=[
        {"name": "NVIDIA GeForce RTX 4090", "cc": (8, 9), "total": 24564 * mib, "free": 23000 * mib,
         "uuid": "GPU-aaaa"},
        {"name": b"Tesla T4", "cc": None, "total": 15360 * mib, "free": 15000 * mib, "uuid": b"GPU-bbbb"},
    ], driver=b"570.133.07")
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    monkeypatch.delenv("VOX1_NO_NVML", raising=False)
    report = detect_nvidia("linux", proc_root=tmp_path)
    assert report.source == "nvml"
    assert report.driver is not None
    assert (report.driver.version, report.driver.cuda) == ("570.133.07", "12.8")
    assert [(g.name, g.compute_capability, g.memory_total_mib, g.uuid, g.source) for g in report.gpus] == [
        ("NVIDIA GeForce RTX 4090", "8.9", 24564, "GPU-aaaa", "nvml"),
        ("Tesla T4", "7.5", 15360, "GPU-bbbb", "nvml+name-table"),
    ]
    assert mod.calls == ["init", "shutdown"]


def test_nvml_init_failure_falls_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=[], init_error="Driver Not Loaded"))
    monkeypatch.delenv("VOX1_NO_NVML", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(nvidia, "nvidia_smi_candidates", lambda os_name, env: [])
    report = detect_nvidia("linux", proc_root=tmp_path)
    assert report.attempts[0] == "nvml: Driver Not Loaded"


def test_no_nvml_switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mod = fake_pynvml(gpus=[])
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    monkeypatch.setenv("VOX1_NO_NVML", "1")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(nvidia, "nvidia_smi_candidates", lambda os_name, env: [])
    report = detect_nvidia("linux", proc_root=tmp_path)
    assert mod.calls == []
    assert report.attempts[0] == "nvml: skipped (VOX1_NO_NVML is set)"


def test_several_gpus_of_different_generations() -> None:
    gpus = gpus_from_smi_rows(parse_smi_csv(fixture("smi_query_linux_570_mixed.csv")))
    assert [(g.index, g.name, g.compute_capability) for g in gpus] == [
        (0, "NVIDIA GeForce RTX 5090", "12.0"), (1, "NVIDIA GeForce RTX 4090", "8.9"), (2, "Tesla T4", "7.5")]
    assert [family_for_capability(g.compute_capability) for g in gpus] == ["Blackwell", "Ada Lovelace", "Turing"]
    assert parse_smi_header(fixture("smi_plain_linux_570_mixed.txt")) == ("570.133.07", "12.8")


@pytest.mark.skipif(sys.platform == "win32", reason="the fake nvidia-smi is a script with a shebang")
def test_nvidia_smi_that_hangs_is_given_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_nvml: None,
                                           empty_proc: Path) -> None:
    install_fake_smi(tmp_path / "bin", monkeypatch, query="x", plain="x", mode="hang")
    started = time.monotonic()
    report = detect_nvidia("linux", timeout=1, proc_root=empty_proc)
    assert time.monotonic() - started < 10
    assert report.source is None and report.driver is None
    (smi,) = [a for a in report.attempts if a.startswith("nvidia-smi:")]
    assert smi.endswith("timed out after 1 s (a wedged driver?)")


@pytest.mark.skipif(sys.platform == "win32", reason="the fake nvidia-smi is a script with a shebang")
def test_nvidia_smi_with_unexpected_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_nvml: None,
                                           empty_proc: Path) -> None:
    install_fake_smi(tmp_path / "bin", monkeypatch, query="x", plain="x", mode="garbage")
    report = detect_nvidia("linux", proc_root=empty_proc)
    assert report.source is None
    assert any(a.startswith("nvidia-smi:") and "unexpected output" in a for a in report.attempts)

