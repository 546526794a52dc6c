"""doctor's checks and recommendation over hand-built machines (pure), and the renderer."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.settings import EngineSettings
from vox1_setup.doctor import (
    CHECKS,
    DOCTOR_SCHEMA,
    GROUPS,
    CheckStatus,
    DoctorFacts,
    WheelPick,
    examine,
    fa2_blockers,
    report_to_dict,
    torch_runs_on,
)
from vox1_setup.environment import (
    DriverInfo,
    Environment,
    FlashAttnInfo,
    GpuInfo,
    PythonInfo,
    TorchDevice,
    TorchInfo,
)
from vox1_setup.errors import ExitCode
from vox1_setup.render import render_checks, render_json, render_report
from vox1_setup.target import ImportCheck, parse_flash_import

ARCHS_CU128 = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")
ARCHS_CU126 = ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")
GIB = 1024**3


def machine(*, os_name: str = "linux", arch: str = "x86_64", torch: str | None = "2.8.0+cu128",
            cuda: str | None = "12.8", hip: str | None = None, cc: str | None = "8.9",
            gpu_name: str = "NVIDIA GeForce RTX 4090", driver: str | None = "570.86.10",
            driver_cuda: str | None = "12.8", cuda_available: bool | None = True,
            arch_list: tuple[str, ...] | None = ARCHS_CU128, flash: str | None = None, import_error: str | None = None,
            total_mib: int | None = 24564, free_mib: int | None = 22000, glibc: str | None = "2.35") -> Environment:
    t = None
    if torch is not None or import_error is not None:
        t = TorchInfo(version=torch, cuda=cuda, hip=hip, cxx11abi=True, cuda_available=cuda_available,
                      device_count=1 if cc else 0,
                      devices=(TorchDevice(0, gpu_name, cc),) if cc and cuda and cuda_available else (),
                      arch_list=arch_list, import_error=import_error)
    return Environment(
        os=os_name, machine=arch, glibc=glibc if os_name == "linux" else None,
        python=PythonInfo(version="3.11.9", executable="/opt/vox-1/system_python/bin/python"),
        torch=t, driver=DriverInfo(driver, driver_cuda, "nvml") if driver else None,
        gpus=(GpuInfo(0, gpu_name, cc, total_mib, free_mib),) if cc else (),
        flash_attn=FlashAttnInfo(flash) if flash else None,
    )


PICK = WheelPick("2.8.3", "flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp311-cp311-linux_x86_64.whl", 250 * 1024**2)


def facts(env: Environment, **kw: Any) -> DoctorFacts:
    base: dict[str, Any] = {
        "flash_import": (ImportCheck(installed=True, ok=True, version=env.flash_attn.version, seconds=2.0)
                         if env.flash_attn else ImportCheck(installed=False)),
        "wheel": PICK, "settings": EngineSettings(), "settings_path": "/cfg/settings.json", "settings_exists": True,
        "cache_dir": "/cache", "disk_free_bytes": 100 * GIB,
    }
    base.update(kw)
    return DoctorFacts(env=env, **base)


def by_id(f: DoctorFacts) -> dict[str, Any]:
    report = examine(f)
    return {c.id: c for c in report.checks} | {"_report": report}


def test_healthy_machine_with_flash_attn_passes_and_recommends_auto() -> None:
    r = by_id(facts(machine(flash="2.8.3")))
    report = r["_report"]
    assert report.exit_code == ExitCode.OK
    assert {c.status for c in report.checks} <= {CheckStatus.PASS}
    assert report.recommendation.attention == "auto"
    assert report.recommendation.batch_size == "auto"
    assert report.recommendation.next_command == "vox1-setup run"
    assert "8.9, Ada" in r["gpu-capability"].summary


def test_every_check_runs_once_with_a_unique_id_and_known_group() -> None:
    report = examine(facts(machine()))
    ids = [c.id for c in report.checks]
    assert len(ids) == len(set(ids)) == len(CHECKS)
    assert {c.group for c in report.checks} <= set(GROUPS)
    for c in report.checks:
        assert c.summary
        if c.status is CheckStatus.FAIL:
            assert c.fix


def test_turing_gpu_warns_and_recommends_sdpa_without_install() -> None:
    r = by_id(facts(machine(cc="7.5", gpu_name="NVIDIA GeForce RTX 2080 Ti", arch_list=ARCHS_CU126), wheel=None))
    assert r["gpu-capability"].status is CheckStatus.WARN
    assert "older than Ampere" in r["gpu-capability"].summary
    assert r["wheel"].status is CheckStatus.SKIP
    rec = r["_report"].recommendation
    assert rec.attention == "sdpa" and "Ampere" in rec.attention_reason
    assert rec.next_command == "vox1-setup run"
    assert r["_report"].exit_code == ExitCode.OK


def test_flash_attn_installed_on_turing_suggests_uninstall() -> None:
    r = by_id(facts(machine(cc="7.5", arch_list=ARCHS_CU126, flash="2.8.3"), wheel=None))
    assert r["flash-attn"].status is CheckStatus.WARN
    assert r["_report"].recommendation.next_command == "vox1-setup uninstall"


def test_missing_torch_fails_with_the_install_torch_step() -> None:
    r = by_id(facts(machine(torch=None, cuda=None)))
    assert r["torch"].status is CheckStatus.FAIL and r["torch"].cause == "torch-missing"
    assert r["_report"].exit_code == ExitCode.CHECKS_FAILED
    assert "install torch" in r["_report"].recommendation.next_command


def test_torch_that_does_not_import_is_explained() -> None:
    env = machine(torch=None, import_error="OSError: libc10.so: cannot open shared object file: No such file")
    r = by_id(facts(env))
    assert r["torch"].status is CheckStatus.FAIL
    assert r["torch"].cause == "torch-missing"


def test_cpu_torch_on_a_gpu_machine_warns() -> None:
    r = by_id(facts(machine(torch="2.8.0+cpu", cuda=None, cuda_available=False, arch_list=())))
    assert r["torch"].status is CheckStatus.WARN and r["torch"].cause == "torch-cpu"
    assert r["torch-gpu"].status is CheckStatus.SKIP
    assert r["_report"].recommendation.attention == "sdpa"


def test_cpu_only_machine_is_fine() -> None:
    env = machine(torch="2.8.0+cpu", cuda=None, cc=None, driver=None, cuda_available=False, arch_list=())
    r = by_id(facts(env, wheel=None))
    report = r["_report"]
    assert report.exit_code == ExitCode.OK
    assert r["driver"].status is CheckStatus.SKIP
    assert report.recommendation.batch_size == "auto"  # the engine's CPU default, unless `bench` measured one
    assert "larger batches" not in report.recommendation.batch_reason


def test_driver_too_old_for_torch_cuda_fails() -> None:
    env = machine(driver="520.61.05", driver_cuda="11.8", cuda_available=False)
    r = by_id(facts(env))
    assert r["driver"].status is CheckStatus.FAIL and r["driver"].cause == "driver-too-old"
    assert "525.60.13" in " ".join(r["driver"].details)
    assert r["torch-gpu"].status is CheckStatus.FAIL
    assert "driver" in r["_report"].recommendation.next_command


def test_blackwell_needs_driver_570_and_a_torch_with_sm_120() -> None:
    env = machine(cc="12.0", gpu_name="NVIDIA GeForce RTX 5090", torch="2.7.0+cu126", cuda="12.6",
                  arch_list=ARCHS_CU126, driver="566.36", driver_cuda="12.7")
    r = by_id(facts(env))
    assert r["gpu-arch"].status is CheckStatus.FAIL and r["gpu-arch"].cause == "gpu-arch-missing"
    assert "sm_120" in r["gpu-arch"].summary
    assert r["driver"].status is CheckStatus.FAIL and "570" in " ".join(r["driver"].details)


@pytest.mark.parametrize(("archs", "cap", "ok"), [
    (("sm_80", "sm_90"), (8, 6), True),  # same major, lower minor cubin
    (("sm_80", "sm_90"), (12, 0), False),  # no PTX: newer major has no code
    (("sm_80", "compute_90"), (12, 0), True),  # PTX JIT-compiles for newer GPUs
    (("sm_86",), (8, 0), False),
])
def test_torch_arch_list_rule(archs: tuple[str, ...], cap: tuple[int, int], ok: bool) -> None:
    assert torch_runs_on(archs, cap) is ok


def test_flash_attn_that_fails_to_import_is_diagnosed() -> None:
    env = machine(flash="2.8.3")
    imp = ImportCheck(installed=True, ok=False, error=(
        "Traceback (most recent call last):\n  File \"<string>\", line 1\nImportError: /x/flash_attn_2_cuda.so: "
        "undefined symbol: _ZN3c105ErrorC2ENS_14SourceLocationESs"))
    r = by_id(facts(env, flash_import=imp))
    c = r["flash-attn-import"]
    assert c.status is CheckStatus.FAIL and c.cause == "abi-mismatch"
    assert "undefined symbol" in c.details[0]
    rec = r["_report"].recommendation
    assert rec.next_command == "vox1-setup install" and rec.attention == "auto"


def test_flash_attn_import_timeout_fails() -> None:
    r = by_id(facts(machine(flash="2.8.3"), flash_import=ImportCheck(installed=True, timed_out=True, seconds=120)))
    assert r["flash-attn-import"].status is CheckStatus.FAIL
    assert "did not finish" in r["flash-attn-import"].summary


def test_installed_version_other_than_the_pick_warns() -> None:
    r = by_id(facts(machine(flash="2.7.4.post1")))
    assert r["flash-attn"].status is CheckStatus.WARN and "2.8.3" in r["flash-attn"].summary
    assert r["_report"].recommendation.next_command == "vox1-setup install"


def test_local_label_is_ignored_when_comparing_versions() -> None:
    r = by_id(facts(machine(flash="2.8.3+cu128torch2.8")))
    assert r["flash-attn"].status is CheckStatus.PASS


def test_not_installed_with_a_fitting_wheel_suggests_optional_install() -> None:
    r = by_id(facts(machine()))
    assert r["flash-attn"].status is CheckStatus.PASS and r["flash-attn-import"].status is CheckStatus.SKIP
    rec = r["_report"].recommendation
    assert rec.next_command == "vox1-setup install" and rec.next_reason.startswith("optional")
    assert rec.attention == "auto" and "sdpa already" in rec.attention_reason


def test_no_wheel_warns_with_the_resolver_advice() -> None:
    r = by_id(facts(machine(), wheel=None, wheel_advice=("no wheel for torch 2.8 with Python 3.14",)))
    assert r["wheel"].status is CheckStatus.WARN and r["wheel"].details == ("no wheel for torch 2.8 with Python 3.14",)


def test_manifest_error_warns() -> None:
    r = by_id(facts(machine(), wheel=None, manifest_error="cannot read manifest x.json"))
    assert r["wheel"].status is CheckStatus.WARN and "x.json" in r["wheel"].details[0]


def test_interrupted_install_fails_and_rollback_comes_first() -> None:
    r = by_id(facts(machine(torch=None, cuda=None), interrupted=("install started 2026-01-01 (journal entry a)",)))
    assert r["journal"].status is CheckStatus.FAIL
    assert r["_report"].recommendation.next_command == "vox1-setup rollback"


@pytest.mark.parametrize(("settings", "env_kw", "needle"), [
    (EngineSettings().with_value("attention_implementation", "flash_attention_2"), {}, "not installed"),
    (EngineSettings().with_value("attention_implementation", "flash_attention_2"), {"cc": "7.5"},
     "older than Ampere"),
    (EngineSettings().with_value("attention_implementation", "flash_attention_2").with_value("dtype", "float32"),
     {"flash": "2.8.3"}, "float32"),
    (EngineSettings().with_value("device", "cuda"), {"torch": "2.8.0+cpu", "cuda": None, "cuda_available": False},
     "not a CUDA build"),
    (EngineSettings().with_value("device", "cuda:3"), {}, "sees 1 GPU"),
])
def test_settings_inconsistent_with_the_machine_fail(settings: EngineSettings, env_kw: dict[str, Any],
                                                     needle: str) -> None:
    r = by_id(facts(machine(**env_kw), settings=settings))
    c = r["settings"]
    assert c.status is CheckStatus.FAIL
    assert needle in " ".join((c.summary, *c.details))
    assert c.fix and "vox1-setup settings set" in c.fix
    assert r["_report"].recommendation.next_command.startswith("vox1-setup settings set")


def test_forced_fa2_that_does_not_import_fails() -> None:
    s = EngineSettings().with_value("attention_implementation", "flash_attention_2")
    imp = ImportCheck(installed=True, ok=False, error="ImportError: undefined symbol: _ZN3c104cuda9SetDeviceEi")
    r = by_id(facts(machine(flash="2.8.3"), settings=s, flash_import=imp))
    assert r["settings"].status is CheckStatus.FAIL and "does not import" in r["settings"].summary


def test_invalid_settings_file_fails_with_its_message() -> None:
    r = by_id(facts(machine(), settings=None, settings_error="batch_size: 0 is not allowed",
                    settings_error_key="batch_size"))
    assert r["settings"].status is CheckStatus.FAIL and "batch_size" in r["settings"].summary
    assert r["_report"].recommendation.next_command == "vox1-setup settings set batch_size VALUE"


def test_unreadable_settings_file_points_to_reset() -> None:
    r = by_id(facts(machine(), settings=None, settings_error="/cfg/settings.json is not valid JSON (line 1)",
                    settings_error_key="(file)"))
    assert r["settings"].status is CheckStatus.FAIL and "cannot be read" in r["settings"].summary
    assert r["_report"].recommendation.next_command == "vox1-setup settings reset"


def test_eager_and_missing_model_path_warn() -> None:
    s = EngineSettings().with_value("attention_implementation", "eager").with_value("model_path", "/models/x")
    r = by_id(facts(machine(), settings=s, model_path_exists=False))
    assert r["settings"].status is CheckStatus.WARN
    assert any("/models/x" in d for d in r["settings"].details)


def test_low_free_vram_and_low_disk_warn() -> None:
    r = by_id(facts(machine(free_mib=1500), disk_free_bytes=200 * 1024**2))
    assert r["vram"].status is CheckStatus.WARN and r["vram"].fix
    assert r["disk"].status is CheckStatus.WARN


@pytest.mark.parametrize(("env", "word"), [
    (machine(os_name="darwin", arch="arm64", torch="2.8.0", cuda=None, cc=None, driver=None, arch_list=()), "macOS"),
    (machine(hip="6.2", torch="2.8.0+rocm6.2", cuda=None, cc=None, driver=None, arch_list=()), "ROCm"),
    (machine(os_name="windows", arch="arm64"), "no FlashAttention 2 wheels"),
])
def test_platforms_without_fa2_have_blockers(env: Environment, word: str) -> None:
    blockers = fa2_blockers(env)
    assert blockers and word in " ".join(blockers)
    assert examine(facts(env, wheel=None)).recommendation.attention == "sdpa"


def test_old_glibc_is_mentioned() -> None:
    r = by_id(facts(machine(glibc="2.31")))
    assert any("2.32" in d for d in r["os"].details)


def test_settings_device_picks_the_gpu_that_is_checked() -> None:
    env = machine()
    env = replace(env, gpus=(*env.gpus, GpuInfo(1, "Tesla T4", "7.5", 15360, 15000)))
    s = EngineSettings().with_value("device", "cuda:1")
    torch_info = replace(env.torch, device_count=2) if env.torch else None
    r = by_id(facts(replace(env, torch=torch_info), settings=s, wheel=None))
    assert "Tesla T4" in r["gpu-capability"].summary and r["gpu-capability"].status is CheckStatus.WARN


def test_json_report_is_versioned_and_complete() -> None:
    f = facts(machine(flash="2.8.3"))
    doc = json.loads(render_json(examine(f), f.env))
    assert doc["schema"] == DOCTOR_SCHEMA and doc["ok"] is True and doc["exit_code"] == 0
    assert doc["environment"]["schema"] == "vox1-env/1"
    assert set(doc["recommendation"]) >= {"attention_implementation", "batch_size", "next_command"}
    assert all(set(c) >= {"id", "status", "summary", "details", "fix"} for c in doc["checks"])
    assert sum(doc["counts"].values()) == len(doc["checks"])
    assert report_to_dict(examine(f))["schema"] == DOCTOR_SCHEMA


def test_text_render_is_grouped_plain_when_piped_and_coloured_on_a_terminal() -> None:
    s = EngineSettings().with_value("attention_implementation", "flash_attention_2")
    report = examine(facts(machine(), settings=s))
    plain = render_report(report, color=False)
    assert "\x1b[" not in plain
    titles = [t for t in GROUPS.values() if t in plain]
    assert titles == sorted(titles, key=plain.index)
    assert re.search(r"\[FAIL\] settings +flash_attention_2 is forced", plain)
    assert "fix: Run `vox1-setup settings set attention_implementation auto`" in plain
    assert plain.rstrip().splitlines()[-1].startswith("FAILED: ")
    coloured = render_report(report, color=True)
    assert "\x1b[31m" in coloured  # red for the failure
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_passing_details_only_with_verbose() -> None:
    checks = examine(facts(machine(flash="2.8.3"))).checks
    quiet = "\n".join(render_checks(checks))
    loud = "\n".join(render_checks(checks, verbose=True))
    assert "torch architectures" not in quiet and "torch architectures" in loud


def test_parse_flash_import_answers() -> None:
    ok = parse_flash_import('noise\n{"schema": "vox1-flash-import/1", "installed": true, "ok": true, '
                            '"version": "2.8.3", "seconds": 1.5}\n', False)
    assert ok.ok and ok.version == "2.8.3"
    crashed = parse_flash_import("", False, "Segmentation fault")
    assert crashed.installed and not crashed.ok and crashed.error == "Segmentation fault"
    hung = parse_flash_import("", True, seconds=5.0)
    assert hung.timed_out and not hung.ok


# --- property: any machine gives a complete, consistent report ---------------------------------------------


_settings_values = st.fixed_dictionaries({
    "attention_implementation": st.sampled_from(["auto", "flash_attention_2", "sdpa", "eager"]),
    "batch_size": st.one_of(st.just("auto"), st.integers(1, 64)),
    "dtype": st.sampled_from(["auto", "bfloat16", "float16", "float32"]),
    "device": st.sampled_from(["auto", "cpu", "cuda", "cuda:0", "cuda:1"]),
})


@st.composite
def any_facts(draw: st.DrawFn) -> DoctorFacts:
    os_name, arch = draw(st.sampled_from([("linux", "x86_64"), ("linux", "aarch64"), ("windows", "amd64"),
                                          ("darwin", "arm64"), ("windows", "arm64")]))
    build = draw(st.sampled_from(["cuda", "cpu", "rocm", "missing", "broken"]))
    cc = draw(st.sampled_from([None, "6.1", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"]))
    env = machine(
        os_name=os_name, arch=arch,
        torch=None if build in ("missing", "broken") else draw(st.sampled_from(["2.5.1", "2.7.1", "2.9.0"])) + (
            "+cu128" if build == "cuda" else "+rocm6.2" if build == "rocm" else "+cpu"),
        cuda="12.8" if build == "cuda" else None, hip="6.2" if build == "rocm" else None, cc=cc,
        driver=draw(st.sampled_from([None, "470.57.02", "535.54.03", "570.86.10", "580.65.06"])),
        driver_cuda=draw(st.sampled_from([None, "11.4", "12.2", "12.8", "13.0"])),
        cuda_available=draw(st.sampled_from([None, True, False])),
        arch_list=draw(st.sampled_from([None, (), ARCHS_CU126, ARCHS_CU128])),
        flash=draw(st.sampled_from([None, "2.8.3", "2.7.4.post1"])),
        import_error="OSError: libc10.so: cannot open shared object file" if build == "broken" else None,
        total_mib=draw(st.sampled_from([None, 4096, 24564])), free_mib=draw(st.sampled_from([None, 500, 20000])),
        glibc=draw(st.sampled_from([None, "2.28", "2.35"])),
    )
    imp = None
    if env.flash_attn is not None:
        imp = draw(st.sampled_from([ImportCheck(True, ok=True), ImportCheck(True, timed_out=True),
                                    ImportCheck(True, error="undefined symbol: _ZN3c104cuda9SetDeviceEi"),
                                    ImportCheck(True, error="unknown crash")]))
    settings_error = draw(st.sampled_from([None, "batch_size: 0 is not allowed"]))
    s = EngineSettings()
    for key, value in draw(_settings_values).items():
        s = s.with_value(key, value)
    return DoctorFacts(
        env=env, flash_import=imp, wheel=draw(st.sampled_from([None, PICK])),
        wheel_advice=draw(st.sampled_from([(), ("no wheel for torch 2.9",)])),
        manifest_error=draw(st.sampled_from([None, "bad manifest"])),
        settings=None if settings_error else s, settings_error=settings_error,
        model_path_exists=draw(st.sampled_from([None, True, False])),
        interrupted=draw(st.sampled_from([(), ("install started x",)])),
        disk_free_bytes=draw(st.sampled_from([None, 10 * 1024**2, 100 * GIB])),
    )


@settings(max_examples=150, deadline=None)
@given(any_facts())
def test_any_machine_gives_a_complete_consistent_report(f: DoctorFacts) -> None:
    report = examine(f)
    assert len(report.checks) == len(CHECKS)
    assert (report.exit_code == ExitCode.CHECKS_FAILED) == any(c.status is CheckStatus.FAIL for c in report.checks)
    for c in report.checks:
        if c.status is CheckStatus.FAIL:
            assert c.fix, c
    rec = report.recommendation
    assert rec.attention in ("auto", "sdpa") and rec.next_command and rec.batch_size == "auto"
    if report.failed:
        assert rec.next_command != "vox1-setup run"
    json.dumps(report_to_dict(report, f.env))
    render_report(report, color=True, verbose=True)


def test_broken_flash_attn_where_fa2_cannot_run_is_to_be_removed() -> None:
    env = machine(torch="2.8.0+cpu", cuda=None, cuda_available=False, arch_list=(), flash="2.8.3")
    imp = ImportCheck(installed=True, ok=False, error="ImportError: libcudart.so.12: cannot open shared object file")
    r = by_id(facts(env, wheel=None, flash_import=imp))
    assert r["flash-attn-import"].status is CheckStatus.FAIL
    assert "vox1-setup uninstall" in (r["flash-attn-import"].fix or "")
    assert r["_report"].recommendation.next_command == "vox1-setup uninstall"


def test_kernels_package_is_mentioned_when_flash_attn_is_absent() -> None:
    env = replace(machine(), packages={"kernels": "0.10.0"})
    r = by_id(facts(env))
    assert any("kernels" in d for d in r["flash-attn"].details)


# --- the issue's check list, one row per item: a machine where it passes and one where it does not ------------

FA2_FORCED = EngineSettings().with_value("attention_implementation", "flash_attention_2")
BROKEN_IMPORT = ImportCheck(installed=True, ok=False, error="ImportError: undefined symbol: _ZN3c104cuda9SetDeviceEi")


class IssueCheck(NamedTuple):
    item: str  # the issue's words
    check_id: str
    good: DoctorFacts  # a machine where the check passes
    bad: DoctorFacts  # a machine where it does not
    status: CheckStatus  # what it reports there
    needle: str  # words the report must contain there


ISSUE_CHECKS = [
    IssueCheck("OS/architecture supported", "os", facts(machine()),
               facts(machine(os_name="windows", arch="arm64")), CheckStatus.WARN, "no FlashAttention 2 wheels"),
    IssueCheck("target Python found and its version", "python", facts(machine()),
               facts(replace(machine(), python=PythonInfo("3.10.14", implementation="pypy"))), CheckStatus.WARN,
               "need CPython"),
    IssueCheck("torch installed", "torch", facts(machine()), facts(machine(torch=None, cuda=None)),
               CheckStatus.FAIL, "not installed"),
    IssueCheck("torch importable", "torch", facts(machine()),
               facts(machine(torch=None, import_error="ImportError: libc10.so: cannot open shared object file")),
               CheckStatus.FAIL, "does not import"),
    IssueCheck("torch: CUDA build, CPU-only or ROCm", "torch", facts(machine()),
               facts(machine(torch="2.8.0+rocm6.4", hip="6.4", cuda=None, cc=None, driver=None, arch_list=())),
               CheckStatus.WARN, "ROCm"),
    IssueCheck("torch sees the GPU", "torch-gpu", facts(machine()), facts(machine(cuda_available=False)),
               CheckStatus.FAIL, "cannot use the GPU"),
    IssueCheck("NVIDIA driver present", "driver", facts(machine()),
               facts(machine(driver=None, cuda_available=False)), CheckStatus.FAIL, "no NVIDIA driver"),
    IssueCheck("driver max CUDA >= torch's CUDA major floor (Linux)", "driver",
               facts(machine(driver="525.60.13", driver_cuda="12.0")),  # 12.0's driver runs a cu128 torch
               facts(machine(driver="520.61.05", driver_cuda="11.8")), CheckStatus.FAIL, "525.60.13"),
    IssueCheck("driver max CUDA >= torch's CUDA major floor (Windows)", "driver",
               facts(machine(os_name="windows", arch="amd64", driver="527.41", driver_cuda="12.0")),
               facts(machine(os_name="windows", arch="amd64", driver="522.06", driver_cuda="11.8")),
               CheckStatus.FAIL, "527.41"),
    IssueCheck("torch supports the GPU's architecture", "gpu-arch", facts(machine(cc="12.0")),
               facts(machine(cc="12.0", torch="2.7.1+cu126", cuda="12.6", arch_list=ARCHS_CU126)),
               CheckStatus.FAIL, "no code for sm_120"),
    IssueCheck("GPU capability >= 8.0 for FA2", "gpu-capability", facts(machine(cc="8.0")),
               facts(machine(cc="7.5", arch_list=ARCHS_CU126), wheel=None), CheckStatus.WARN, "older than Ampere"),
    IssueCheck("VRAM and free VRAM", "vram", facts(machine()), facts(machine(free_mib=1200)), CheckStatus.WARN,
               "1.2 GiB free"),
    IssueCheck("flash-attn installed, its version vs the resolver's pick", "flash-attn",
               facts(machine(flash="2.8.3")), facts(machine(flash="2.6.3")), CheckStatus.WARN, "would pick 2.8.3"),
    IssueCheck("flash-attn imports (subprocess, time-bounded), else the cause", "flash-attn-import",
               facts(machine(flash="2.8.3")), facts(machine(flash="2.8.3"), flash_import=BROKEN_IMPORT),
               CheckStatus.FAIL, "another torch version"),
    IssueCheck("a wheel exists in the manifest for this machine", "wheel", facts(machine()),
               facts(machine(), wheel=None, wheel_advice=("no wheel for Python 3.14",)), CheckStatus.WARN,
               "no prebuilt wheel"),
    IssueCheck("free disk for the cache", "disk", facts(machine()), facts(machine(), disk_free_bytes=300 * 1024**2),
               CheckStatus.WARN, "300 MiB free"),
    IssueCheck("an interrupted install in the journal", "journal", facts(machine()),
               facts(machine(), interrupted=("install started today (journal entry e1)",)), CheckStatus.FAIL,
               "interrupted"),
    IssueCheck("settings consistent: flash_attention_2 forced but not importable", "settings",
               facts(machine(flash="2.8.3"), settings=FA2_FORCED),
               facts(machine(flash="2.8.3"), settings=FA2_FORCED, flash_import=BROKEN_IMPORT), CheckStatus.FAIL,
               "does not import"),
]


@pytest.mark.parametrize("case", ISSUE_CHECKS, ids=[c.item for c in ISSUE_CHECKS])
def test_each_check_of_the_issue_passes_and_fails_where_it_should(case: IssueCheck) -> None:
    good = by_id(case.good)[case.check_id]
    assert good.status is CheckStatus.PASS, good
    bad = by_id(case.bad)[case.check_id]
    assert bad.status is case.status, bad
    assert case.needle in " ".join((bad.summary, *bad.details)), bad
    if bad.status is CheckStatus.FAIL:
        assert bad.fix
        assert examine(case.bad).exit_code == ExitCode.CHECKS_FAILED


def test_torch_gpu_count_unknown_is_said_in_words() -> None:
    env = machine()
    assert env.torch is not None
    env = replace(env, torch=replace(env.torch, device_count=None, devices=()))
    r = by_id(facts(env))["torch-gpu"]
    assert r.status is CheckStatus.PASS and "None" not in r.summary and "unknown" in r.summary


def test_torch_without_code_for_the_gpu_is_replaced_before_any_attention_advice() -> None:
    """torch 2.6+cu126 on an RTX 5090: sdpa cannot run either, so the advice starts with torch."""
    env = machine(torch="2.6.0+cu126", cuda="12.6", cc="12.0", gpu_name="NVIDIA GeForce RTX 5090",
                  arch_list=ARCHS_CU126)
    r = by_id(facts(env))
    assert r["gpu-arch"].status is CheckStatus.FAIL
    rec = r["_report"].recommendation
    assert "already runs a fused" not in rec.attention_reason
    assert "torch must be replaced first" in rec.attention_reason


def test_no_torch_on_a_gpu_machine_does_not_talk_of_the_cpu() -> None:
    rec = by_id(facts(machine(torch=None)))["_report"].recommendation
    assert "CPU" not in rec.batch_reason and rec.batch_size == "auto"
