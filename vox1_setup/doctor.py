"""`doctor`: checks that return records, a recommendation, and one gathering step.

Everything above the gathering step is pure: each check is a function of `DoctorFacts` (an Environment, the
resolver's pick, the settings, the journal state, free disk, and the outcome of importing flash-attn in the
target) returning a `CheckResult`. The exit code comes from the records. `gather()` is the only place that
runs anything; the target process itself (probe, then the flash-attn import: torch imported once) is
`vox1_setup.target.detect_and_import`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.settings import AttentionImpl, DType, EngineSettings
from vox1_setup.bench_results import BenchRecommendation, last_recommendation
from vox1_setup.environment import Environment, environment_to_dict
from vox1_setup.errors import ExitCode
from vox1_setup.knowledge import arch
from vox1_setup.knowledge.drivers import driver_supports_cuda_major, major_floor, parse_driver
from vox1_setup.paths import Paths
from vox1_setup.target import ImportCheck

if TYPE_CHECKING:
    from vox1_setup.manifest import Manifest, WheelEntry

DOCTOR_SCHEMA = "vox1-doctor/1"

GIB = 1024**3
MIB = 1024**2

# Platforms with prebuilt FA2 wheels (FIELD-NOTES §1.4).
SUPPORTED_PLATFORMS: frozenset[tuple[str, str]] = frozenset(
    {("linux", "x86_64"), ("linux", "aarch64"), ("windows", "amd64"), ("windows", "x86_64")})

# Free VRAM below which VOX-1 is likely to run out of memory. Qwen3-TTS 1.7B in bf16 holds ~3.4 GiB of weights
# plus activations and a KV cache of ~112 KiB per token per sequence (FIELD-NOTES §7): 4 GiB is the floor.
MIN_FREE_VRAM_GIB = 4.0
# Downloaded wheel + unpacked copy + pip's temp copy; used when the wheel's size is unknown.
DEFAULT_WHEEL_BYTES = 400 * MIB
# Blackwell needs a driver ≥ 570 (FIELD-NOTES §1.7).
BLACKWELL_MIN_DRIVER = (570,)


class CheckStatus(str, Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


# Group id → title, in report order.
GROUPS: dict[str, str] = {
    "system": "System",
    "torch": "Python and torch",
    "gpu": "GPU and driver",
    "flash-attn": "FlashAttention 2",
    "install": "Install state",
    "settings": "VOX-1 settings",
}


@dataclass(frozen=True)
class CheckResult:
    id: str
    group: str
    status: CheckStatus
    summary: str
    details: tuple[str, ...] = ()
    fix: str | None = None
    cause: str | None = None  # diagnose cause id, when an error text was explained

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "group": self.group, "status": self.status.value, "summary": self.summary,
                "details": list(self.details), "fix": self.fix, "cause": self.cause}


@dataclass(frozen=True)
class WheelPick:
    """The wheel the resolver would install here."""

    version: str
    filename: str
    size_bytes: int | None = None


@dataclass(frozen=True)
class DoctorFacts:
    env: Environment
    flash_import: ImportCheck | None = None  # None: not attempted
    wheel: WheelPick | None = None
    wheel_advice: tuple[str, ...] = ()  # why no wheel fits (resolver's explanation)
    manifest_error: str | None = None
    settings: EngineSettings | None = None
    settings_error: str | None = None
    settings_error_key: str | None = None  # the key named by the error; "(file)" when the file is unreadable
    settings_path: str | None = None
    settings_exists: bool = False
    model_path_exists: bool | None = None  # None: not a local path, or not set
    interrupted: tuple[str, ...] = ()  # descriptions of interrupted journal entries for this target
    cache_dir: str | None = None
    disk_free_bytes: int | None = None
    bench: BenchRecommendation | None = None  # the last `vox1-setup bench` of this target, if any


@dataclass(frozen=True)
class Recommendation:
    attention: str
    attention_reason: str
    batch_size: str
    batch_reason: str
    next_command: str
    next_reason: str

    def to_dict(self) -> dict[str, str]:
        return {"attention_implementation": self.attention, "attention_reason": self.attention_reason,
                "batch_size": self.batch_size, "batch_reason": self.batch_reason,
                "next_command": self.next_command, "next_reason": self.next_reason}


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[CheckResult, ...]
    recommendation: Recommendation
    target: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.status is CheckStatus.FAIL)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.CHECKS_FAILED if self.failed else ExitCode.OK

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for c in self.checks if c.status is s) for s in CheckStatus}


# ------------------------------------------------------------------------------------------------------------
# Facts read from the Environment


@dataclass(frozen=True)
class GpuView:
    index: int
    name: str
    cap: tuple[int, int] | None
    total_mib: int | None
    free_mib: int | None

    @property
    def label(self) -> str:
        if self.cap is None:
            return self.name
        return f"{self.name} ({self.cap[0]}.{self.cap[1]}, {arch.family(self.cap)})"


def gpus(env: Environment) -> tuple[GpuView, ...]:
    """The NVIDIA GPUs, from the driver when it answered, else from torch."""
    torch_caps = {d.index: arch.capability(d.capability) for d in (env.torch.devices if env.torch else ())}
    if env.gpus:
        return tuple(GpuView(g.index, g.name, g.capability_tuple or torch_caps.get(g.index), g.memory_total_mib,
                             g.memory_free_mib) for g in env.gpus)
    if env.torch is not None and env.torch.build == "cuda":
        return tuple(GpuView(d.index, d.name, arch.capability(d.capability), None, None) for d in env.torch.devices)
    return ()


def _device_index(settings: EngineSettings | None) -> int:
    if settings is not None and settings.device.startswith("cuda:"):
        return int(settings.device[5:])
    return 0


def _chosen(env: Environment, settings: EngineSettings | None) -> GpuView | None:
    found = gpus(env)
    want = _device_index(settings)
    return next((g for g in found if g.index == want), found[0] if found else None)


def chosen_gpu(facts: DoctorFacts) -> GpuView | None:
    """The GPU VOX-1 runs on: `device` from the settings (cuda:N), else the first."""
    return _chosen(facts.env, facts.settings)


def fa2_blockers(env: Environment, gpu: GpuView | None = None) -> tuple[str, ...]:
    """Why FlashAttention 2 cannot run here at all (empty when it can, given a matching wheel)."""
    reasons: list[str] = []
    if env.os == "darwin":
        return ("macOS has no NVIDIA CUDA: FlashAttention 2 needs an NVIDIA GPU",)
    if (env.os, env.machine) not in SUPPORTED_PLATFORMS:
        reasons.append(f"no FlashAttention 2 wheels exist for {env.os} {env.machine}")
    t = env.torch
    if t is None:
        reasons.append("torch is not installed in this Python")
    elif t.build == "unknown":
        reasons.append("torch does not import in this Python")
    elif t.build == "rocm":
        reasons.append("torch is an AMD ROCm build: these FlashAttention 2 wheels are for NVIDIA CUDA")
    elif t.build == "cpu":
        reasons.append("torch is a CPU-only build")
    gpu = gpu if gpu is not None else (gpus(env)[0] if gpus(env) else None)
    if gpu is None:
        if not (t is not None and t.build in ("cpu", "rocm")):
            reasons.append("no NVIDIA GPU was found")
    elif gpu.cap is not None and gpu.cap < arch.FA2_MIN_CAPABILITY:
        reasons.append(f"{gpu.label} is older than Ampere (compute capability < 8.0)")
    return tuple(reasons)


def _gib(mib: int | None) -> str:
    return "?" if mib is None else f"{mib / 1024:.1f} GiB"


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "size unknown"
    return f"{nbytes / GIB:.1f} GiB" if nbytes >= GIB else f"{nbytes / MIB:.0f} MiB"


def _base_version(version: str) -> str:
    return version.split("+", 1)[0].strip()


def _flash_usable(facts: DoctorFacts) -> bool:
    imp = facts.flash_import
    return bool(facts.env.flash_attn is not None and imp is not None and imp.ok
                and not fa2_blockers(facts.env, chosen_gpu(facts)))


# ------------------------------------------------------------------------------------------------------------
# Checks (pure). Each returns one record.


def check_os(f: DoctorFacts) -> CheckResult:
    env = f.env
    where = f"{env.os} {env.machine}" + (f", glibc {env.glibc}" if env.glibc else "")
    if env.os == "darwin":
        return CheckResult("os", "system", CheckStatus.WARN, f"{where}: VOX-1 runs, but without CUDA",
                           ("macOS has no NVIDIA CUDA; VOX-1 uses sdpa.",))
    if (env.os, env.machine) not in SUPPORTED_PLATFORMS:
        return CheckResult("os", "system", CheckStatus.WARN, f"{where}: no FlashAttention 2 wheels for this platform",
                           ("Wheels exist for Linux x86_64/aarch64 and Windows x86-64 only; VOX-1 uses sdpa.",))
    details: list[str] = []
    gl = env.glibc_tuple
    if env.os == "linux" and gl is not None and gl < (2, 32):
        details.append(f"glibc {env.glibc} < 2.32: official flash-attn 2.8.x wheels do not load here; "
                       "2.7.4.post1 and manylinux wheels do (the resolver knows).")
    if env.os == "linux" and env.glibc is None:
        details.append("no glibc found (musl?): only manylinux/musllinux wheels could apply.")
    return CheckResult("os", "system", CheckStatus.PASS, f"{where}: supported", tuple(details))


def check_python(f: DoctorFacts) -> CheckResult:
    py = f.env.python
    label = f"Python {py.version} ({py.implementation}{', free-threaded' if py.gil_disabled else ''})"
    details = (f"interpreter: {py.executable}",) if py.executable else ()
    if py.implementation != "cpython":
        return CheckResult("python", "torch", CheckStatus.WARN, f"{label}: torch and flash-attn need CPython",
                           details, "Run VOX-1 with its bundled CPython (system_python).")
    if py.gil_disabled:
        return CheckResult("python", "torch", CheckStatus.WARN,
                           f"{label}: few torch/flash-attn builds exist for free-threaded Python", details)
    return CheckResult("python", "torch", CheckStatus.PASS, label, details)


def check_torch(f: DoctorFacts) -> CheckResult:
    t = f.env.torch
    if t is None:
        return CheckResult("torch", "torch", CheckStatus.FAIL, "torch is not installed in this Python", (),
                           "Install torch into VOX-1's Python (a CUDA build for an NVIDIA GPU), then run "
                           "`vox1-setup doctor` again.", "torch-missing")
    if not t.importable:
        from vox1_setup.diagnose import explain  # compiled patterns: load only when an error is to be read

        d = explain(t.import_error or "", f.env)
        details = tuple(x for x in ((t.import_error or "").strip().splitlines()[-1:]) if x)
        return CheckResult("torch", "torch", CheckStatus.FAIL,
                           "torch is installed but does not import" + (f": {d.summary}" if d else ""),
                           details, d.fix if d else "Reinstall torch in this Python.",
                           d.cause if d else None)
    # The C++11 ABI exists only for Linux builds.
    abi = "" if t.cxx11abi is None or f.env.os != "linux" else f", C++11 ABI {int(t.cxx11abi)}"
    if t.build == "rocm":
        return CheckResult("torch", "torch", CheckStatus.WARN, f"torch {t.version}: AMD ROCm build (HIP {t.hip})",
                           ("FlashAttention 2 wheels here are for NVIDIA CUDA; VOX-1 uses sdpa.",))
    if t.build == "cpu":
        if gpus(f.env) or f.env.driver is not None:
            return CheckResult("torch", "torch", CheckStatus.WARN,
                               f"torch {t.version} is a CPU-only build, but this machine has an NVIDIA GPU",
                               ("VOX-1 will run on the CPU: slow.",),
                               "Install a CUDA build of torch into VOX-1's Python (https://pytorch.org/get-started/"
                               "locally/), then run `vox1-setup install`.", "torch-cpu")
        return CheckResult("torch", "torch", CheckStatus.PASS, f"torch {t.version} (CPU-only build; no NVIDIA GPU)")
    return CheckResult("torch", "torch", CheckStatus.PASS, f"torch {t.version} (CUDA {t.cuda}{abi})",
                       (f"location: {t.location}",) if t.location else ())


def check_torch_gpu(f: DoctorFacts) -> CheckResult:
    t = f.env.torch
    if t is None or t.build != "cuda":
        return CheckResult("torch-gpu", "torch", CheckStatus.SKIP, "not a CUDA build of torch")
    if t.cuda_available:
        names = ", ".join(d.name for d in t.devices) or (
            f"{t.device_count} GPU(s)" if t.device_count is not None else "a GPU (how many is unknown)")
        return CheckResult("torch-gpu", "torch", CheckStatus.PASS, f"torch sees {names}")
    if t.cuda_available is None:
        return CheckResult("torch-gpu", "torch", CheckStatus.SKIP, "CUDA was not initialised by the probe")
    fix = "Install or update the NVIDIA driver, restart, and run `vox1-setup doctor` again."
    if f.env.driver is not None and t.cuda_major is not None and not driver_supports_cuda_major(
            f.env.driver.version, f.env.driver.cuda, t.cuda_major, f.env.os):
        fix = f"Update the NVIDIA driver: it is too old for torch's CUDA {t.cuda}."
    return CheckResult("torch-gpu", "torch", CheckStatus.FAIL, "torch is a CUDA build but cannot use the GPU",
                       ("torch.cuda.is_available() is False",), fix)


def check_driver(f: DoctorFacts) -> CheckResult:
    env, t, d = f.env, f.env.torch, f.env.driver
    cuda_torch = t is not None and t.build == "cuda"
    if d is None:
        if not gpus(env) and not cuda_torch:
            return CheckResult("driver", "gpu", CheckStatus.SKIP, "no NVIDIA driver (no NVIDIA GPU found)")
        if cuda_torch and t is not None and t.cuda_available:
            return CheckResult("driver", "gpu", CheckStatus.WARN, "the NVIDIA driver version could not be read",
                               ("torch uses the GPU, so a driver is present; NVML and nvidia-smi did not answer.",))
        return CheckResult("driver", "gpu", CheckStatus.FAIL, "no NVIDIA driver found",
                           (), "Install the NVIDIA driver (https://www.nvidia.com/Download/index.aspx) and restart.",
                           "driver-missing")
    label = f"driver {d.version}" + (f" (CUDA ≤ {d.cuda})" if d.cuda else "")
    problems: list[str] = []
    if cuda_torch and t is not None and t.cuda_major is not None and not driver_supports_cuda_major(
            d.version, d.cuda, t.cuda_major, env.os):
        floor = major_floor(t.cuda_major, env.os)
        problems.append(f"torch {t.version} needs CUDA {t.cuda_major}.x: a driver ≥ {floor}" if floor else
                        f"torch {t.version} needs a driver for CUDA {t.cuda_major}.x")
    if any(g.cap is not None and g.cap >= arch.BLACKWELL_MIN for g in gpus(env)) and \
            parse_driver(d.version) < BLACKWELL_MIN_DRIVER:
        problems.append("Blackwell GPUs need a driver ≥ 570")
    if problems:
        return CheckResult("driver", "gpu", CheckStatus.FAIL, f"{label} is too old", tuple(problems),
                           "Update the NVIDIA driver (https://www.nvidia.com/Download/index.aspx), restart, and run "
                           "`vox1-setup doctor` again.", "driver-too-old")
    what = f"; runs torch's CUDA {t.cuda}" if cuda_torch and t is not None else ""
    return CheckResult("driver", "gpu", CheckStatus.PASS, f"{label}{what}")


def torch_runs_on(arch_list: tuple[str, ...], cap: tuple[int, int]) -> bool:
    """torch ships cubins (sm_XY: same major, minor ≤) and PTX (compute_XY: JIT for any newer GPU)."""
    if arch.runs_on(tuple(a for a in arch_list if a.startswith("sm_")), cap):
        return True
    for a in arch_list:
        m = re.fullmatch(r"compute_(\d+?)(\d)", a)
        if m and (int(m.group(1)), int(m.group(2))) <= cap:
            return True
    return False


def check_gpu_arch(f: DoctorFacts) -> CheckResult:
    t, gpu = f.env.torch, chosen_gpu(f)
    if t is None or t.build != "cuda" or gpu is None or gpu.cap is None:
        return CheckResult("gpu-arch", "gpu", CheckStatus.SKIP, "no CUDA torch and NVIDIA GPU to compare")
    if not t.arch_list:
        return CheckResult("gpu-arch", "gpu", CheckStatus.SKIP, "torch did not report its architecture list")
    sm = arch.sm_name(gpu.cap)
    if torch_runs_on(t.arch_list, gpu.cap):
        return CheckResult("gpu-arch", "gpu", CheckStatus.PASS, f"torch {t.version} has code for {sm} ({gpu.name})",
                           (f"torch architectures: {' '.join(t.arch_list)}",))
    return CheckResult("gpu-arch", "gpu", CheckStatus.FAIL, f"torch {t.version} has no code for {sm}: {gpu.label}",
                       (f"torch architectures: {' '.join(t.arch_list)}",),
                       "Install a torch build that supports this GPU (for Blackwell: torch ≥ 2.7 built for CUDA 12.8 "
                       "or newer), then run `vox1-setup install`.", "gpu-arch-missing")


def check_gpu_capability(f: DoctorFacts) -> CheckResult:
    gpu = chosen_gpu(f)
    if gpu is None:
        return CheckResult("gpu-capability", "gpu", CheckStatus.SKIP, "no NVIDIA GPU found")
    others = tuple(f"also: {g.label}" for g in gpus(f.env) if g.index != gpu.index)
    if gpu.cap is None:
        return CheckResult("gpu-capability", "gpu", CheckStatus.WARN,
                           f"{gpu.name}: compute capability unknown", others)
    if gpu.cap < arch.FA2_MIN_CAPABILITY:
        return CheckResult("gpu-capability", "gpu", CheckStatus.WARN,
                           f"{gpu.label}: FlashAttention 2 cannot run on GPUs older than Ampere",
                           ("VOX-1 uses sdpa, which is already fast here; nothing to install.", *others))
    if gpu.cap >= arch.BLACKWELL_MIN:
        return CheckResult("gpu-capability", "gpu", CheckStatus.PASS, f"{gpu.label}: runs FlashAttention 2",
                           ("Blackwell: needs flash-attn ≥ 2.7.3 built with CUDA ≥ 12.8 (the resolver checks).",
                            *others))
    return CheckResult("gpu-capability", "gpu", CheckStatus.PASS, f"{gpu.label}: runs FlashAttention 2", others)


def check_vram(f: DoctorFacts) -> CheckResult:
    gpu = chosen_gpu(f)
    if gpu is None or gpu.total_mib is None:
        return CheckResult("vram", "gpu", CheckStatus.SKIP, "GPU memory unknown")
    text = f"{_gib(gpu.total_mib)} total, {_gib(gpu.free_mib)} free"
    if gpu.free_mib is not None and gpu.free_mib < MIN_FREE_VRAM_GIB * 1024:
        return CheckResult("vram", "gpu", CheckStatus.WARN, f"{text}: VOX-1 may run out of GPU memory",
                           (f"VOX-1 needs about {MIN_FREE_VRAM_GIB:g} GiB free; other programs are using the GPU"
                            if gpu.total_mib >= MIN_FREE_VRAM_GIB * 1024 else
                            f"this GPU has less than {MIN_FREE_VRAM_GIB:g} GiB",),
                           "Close other programs that use the GPU; keep batch_size `auto` (it backs off on "
                           "out-of-memory).")
    return CheckResult("vram", "gpu", CheckStatus.PASS, text)


def check_flash_attn(f: DoctorFacts) -> CheckResult:
    fa, wheel = f.env.flash_attn, f.wheel
    blockers = fa2_blockers(f.env, chosen_gpu(f))
    if fa is None:
        # transformers then fetches a kernel from the Hub at run time for flash_attention_2 (FIELD-NOTES §6).
        hub = (("the `kernels` package is installed: a forced flash_attention_2 would download a kernel from "
                "the Hub at run time instead",) if "kernels" in f.env.packages else ())
        if wheel is not None and not blockers:
            return CheckResult("flash-attn", "flash-attn", CheckStatus.PASS,
                               "not installed (optional: VOX-1 uses sdpa without it)",
                               (f"a wheel fits: {wheel.filename}", *hub), "To try it: `vox1-setup install`.")
        return CheckResult("flash-attn", "flash-attn", CheckStatus.PASS, "not installed (VOX-1 uses sdpa)", hub)
    if blockers:
        return CheckResult("flash-attn", "flash-attn", CheckStatus.WARN,
                           f"flash-attn {fa.version} is installed but cannot run here", blockers,
                           "Remove it with `vox1-setup uninstall` (transformers would still think it usable).")
    if wheel is None:
        return CheckResult("flash-attn", "flash-attn", CheckStatus.PASS, f"flash-attn {fa.version} installed",
                           ("no wheel in the manifest to compare with",))
    if _base_version(fa.version) == _base_version(wheel.version):
        return CheckResult("flash-attn", "flash-attn", CheckStatus.PASS,
                           f"flash-attn {fa.version} installed: the version the resolver picks",
                           (f"resolver: {wheel.filename}",))
    return CheckResult("flash-attn", "flash-attn", CheckStatus.WARN,
                       f"flash-attn {fa.version} installed; the resolver would pick {wheel.version}",
                       (f"resolver: {wheel.filename}",), "Run `vox1-setup install` to switch to it.")


def check_flash_import(f: DoctorFacts) -> CheckResult:
    imp = f.flash_import
    if f.env.flash_attn is None or (imp is not None and not imp.installed):
        return CheckResult("flash-attn-import", "flash-attn", CheckStatus.SKIP, "flash-attn not installed")
    if imp is None:
        reason = "torch does not import" if f.env.torch is not None and not f.env.torch.importable else \
            "machine facts came from a file (--env)"
        return CheckResult("flash-attn-import", "flash-attn", CheckStatus.SKIP, f"not checked: {reason}")
    took = f" in {imp.seconds:.1f} s" if imp.seconds is not None else ""
    if imp.ok:
        return CheckResult("flash-attn-import", "flash-attn", CheckStatus.PASS,
                           f"flash_attn and its CUDA extension import{took}")
    if imp.timed_out:
        return CheckResult("flash-attn-import", "flash-attn", CheckStatus.FAIL,
                           f"importing flash_attn did not finish{took}", (),
                           "Run `vox1-setup doctor -v` again; if it persists, `vox1-setup uninstall`.")
    from vox1_setup.diagnose import explain

    text = imp.error or ""
    d = explain(text, f.env)
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:]
    fix = d.fix if d else ("Reinstall the matching wheel with `vox1-setup install`, or remove it: "
                           "`vox1-setup uninstall`.")
    blockers = fa2_blockers(f.env, chosen_gpu(f))
    if blockers:  # no wheel can fix it here: the only repair is to remove it
        fix = f"FlashAttention 2 cannot run here ({blockers[0]}): remove it with `vox1-setup uninstall`."
    return CheckResult("flash-attn-import", "flash-attn", CheckStatus.FAIL,
                       "flash_attn does not import" + (f": {d.summary}" if d else ""),
                       tuple(last), fix, d.cause if d else None)


def check_wheel(f: DoctorFacts) -> CheckResult:
    blockers = fa2_blockers(f.env, chosen_gpu(f))
    if blockers:
        return CheckResult("wheel", "flash-attn", CheckStatus.SKIP, "not needed: " + blockers[0], blockers[1:])
    if f.manifest_error:
        return CheckResult("wheel", "flash-attn", CheckStatus.WARN, "the wheel manifest could not be read",
                           (f.manifest_error,), "Check --manifest / VOX1_MANIFEST, or drop it to use the bundled one.")
    if f.wheel is None:
        return CheckResult("wheel", "flash-attn", CheckStatus.WARN, "no prebuilt wheel fits this machine",
                           f.wheel_advice[:6], "VOX-1 runs fine with sdpa; see `vox1-setup resolve` for every "
                                               "candidate and why it was rejected.")
    return CheckResult("wheel", "flash-attn", CheckStatus.PASS,
                       f"a wheel fits: flash-attn {f.wheel.version} ({_size(f.wheel.size_bytes)})",
                       (f.wheel.filename,))


def check_disk(f: DoctorFacts) -> CheckResult:
    if f.disk_free_bytes is None:
        return CheckResult("disk", "install", CheckStatus.SKIP, "free disk space unknown")
    need = 3 * (f.wheel.size_bytes if f.wheel and f.wheel.size_bytes else DEFAULT_WHEEL_BYTES)
    where = f" at {f.cache_dir}" if f.cache_dir else ""
    if f.disk_free_bytes < need:
        return CheckResult("disk", "install", CheckStatus.WARN, f"only {_size(f.disk_free_bytes)} free{where}",
                           (f"an install needs about {_size(need)} (download, unpack, pip's copy)",),
                           "Free some disk space, or point VOX1_HOME at a bigger disk.")
    return CheckResult("disk", "install", CheckStatus.PASS, f"{_size(f.disk_free_bytes)} free{where}")


def check_journal(f: DoctorFacts) -> CheckResult:
    if f.interrupted:
        return CheckResult("journal", "install", CheckStatus.FAIL,
                           "an install was interrupted: this Python may be half-changed", f.interrupted,
                           "Run `vox1-setup rollback` to restore the state before it.")
    return CheckResult("journal", "install", CheckStatus.PASS, "no interrupted install")


def check_settings(f: DoctorFacts) -> CheckResult:
    where = (f.settings_path,) if f.settings_path else ()
    if f.settings_error:
        key = f.settings_error_key
        if key is None or key.startswith("(") or key == "schema":
            return CheckResult("settings", "settings", CheckStatus.FAIL,
                               f"the settings file cannot be read: {f.settings_error}", where,
                               "Start over with `vox1-setup settings reset` (keys this version does not know are "
                               "kept when they can be read), or fix the file by hand.")
        return CheckResult("settings", "settings", CheckStatus.FAIL, f"settings are invalid: {f.settings_error}",
                           where, f"Set an allowed value: `vox1-setup settings set {key} VALUE`, or start over with "
                                  "`vox1-setup settings reset`.")
    s = f.settings or EngineSettings()
    t, fa = f.env.torch, f.env.flash_attn
    problems: list[str] = []
    fixes: list[str] = []
    gpu = chosen_gpu(f)
    if s.attention_implementation is AttentionImpl.FLASH_ATTENTION_2:
        blockers = fa2_blockers(f.env, gpu)
        if blockers:
            problems.append(f"flash_attention_2 is forced, but {blockers[0]}")
        elif fa is None:
            problems.append("flash_attention_2 is forced, but flash-attn is not installed")
        elif f.flash_import is not None and not f.flash_import.ok:
            problems.append("flash_attention_2 is forced, but flash_attn does not import")
        if problems:
            fixes.append("`vox1-setup settings set attention_implementation auto`")
        if s.dtype is DType.FLOAT32:
            problems.append("flash_attention_2 computes only in float16/bfloat16, but dtype is float32")
            fixes.append("`vox1-setup settings set dtype auto`")
    if s.device.startswith("cuda"):
        if t is None or t.build != "cuda":
            problems.append(f"device is {s.device}, but torch is not a CUDA build")
            fixes.append("`vox1-setup settings set device auto`")
        elif s.device.startswith("cuda:") and t.device_count is not None and \
                int(s.device[5:]) >= t.device_count:
            problems.append(f"device is {s.device}, but torch sees {t.device_count} GPU(s)")
            fixes.append("`vox1-setup settings set device auto`")
    if problems:
        return CheckResult("settings", "settings", CheckStatus.FAIL, problems[0], (*problems[1:], *where),
                           "Run " + " and ".join(dict.fromkeys(fixes)) + ".")
    notes: list[str] = []
    status = CheckStatus.PASS
    if s.attention_implementation is AttentionImpl.EAGER:
        status = CheckStatus.WARN
        notes.append("eager is the slowest choice and builds the O(N²) score matrix; `auto` or `sdpa` is better")
    if f.model_path_exists is False:
        status = CheckStatus.WARN
        notes.append(f"model_path {s.model_path} does not exist")
    state = "" if f.settings_exists else " (defaults: no settings file yet)"
    summary = (f"attention {s.attention_implementation.value}, batch {s.batch_size}, dtype {s.dtype.value}, "
               f"device {s.device}{state}")
    return CheckResult("settings", "settings", status, summary, (*notes, *where),
                       "`vox1-setup settings set KEY VALUE`" if status is CheckStatus.WARN else None)


CHECKS: tuple[Callable[[DoctorFacts], CheckResult], ...] = (
    check_os, check_python, check_torch, check_torch_gpu, check_driver, check_gpu_arch, check_gpu_capability,
    check_vram, check_flash_attn, check_flash_import, check_wheel, check_disk, check_journal, check_settings,
)


def run_checks(facts: DoctorFacts) -> tuple[CheckResult, ...]:
    return tuple(check(facts) for check in CHECKS)


# ------------------------------------------------------------------------------------------------------------
# Recommendation


def recommend(facts: DoctorFacts, checks: tuple[CheckResult, ...]) -> Recommendation:
    env, gpu = facts.env, chosen_gpu(facts)
    blockers = fa2_blockers(env, gpu)
    if _flash_usable(facts):
        attention = ("auto", "flash-attn imports here: `auto` uses FlashAttention 2 after a one-token smoke test "
                             "and falls back to sdpa if it fails")
    elif any(c.id == "gpu-arch" and c.status is CheckStatus.FAIL for c in checks):
        attention = ("auto", "torch must be replaced first: it has no code for this GPU (see gpu-arch), so no "
                             "attention runs on it yet; with a torch built for this GPU, `auto` picks the best one")
    elif blockers:
        attention = ("sdpa", f"FlashAttention 2 cannot run here ({blockers[0]}); sdpa is the fast built-in choice")
    elif env.flash_attn is not None and facts.flash_import is not None and not facts.flash_import.ok:
        attention = ("auto", "flash-attn is installed but does not import: `auto` falls back to sdpa until it is "
                             "repaired")
    else:
        attention = ("auto", "sdpa already runs a fused flash/memory-efficient kernel on this GPU; FlashAttention "
                             "2 is optional and `auto` uses it once installed")
    bench = facts.bench
    if bench is not None and (bench.attention_implementation != "flash_attention_2" or _flash_usable(facts)):
        # A measurement on this machine beats every rule of thumb.
        attention = (bench.attention_implementation,
                     f"measured by `vox1-setup bench` ({bench.preset} preset): {bench.reason}")
    if gpu is not None and env.torch is not None and env.torch.build == "cuda":
        free = f" against the {_gib(gpu.free_mib)} free" if gpu.free_mib is not None else ""
        if bench is not None and bench.batch_size is not None:
            batch = (str(bench.batch_size), f"measured by `vox1-setup bench` on {bench.device_name or 'this GPU'}"
                                            f" with VOX-1's model geometry: {bench.reason}")
        else:
            batch = ("auto", f"VOX-1 measures peak memory at two small batches on this GPU and sizes the "
                             f"batch{free}, backing off on out-of-memory; `vox1-setup bench --preset "
                             "qwen3-tts-talker` measures the best fixed size")
    elif env.torch is None and (gpus(env) or env.driver is not None):
        batch = ("auto", "no torch yet: once a CUDA torch is installed, VOX-1 sizes the batch to the GPU's memory")
    else:
        batch = ("auto", "VOX-1 uses its CPU default batch size; `vox1-setup bench` measures the best fixed size "
                         "here")
    status = {c.id: c.status for c in checks}

    def failed(check_id: str) -> bool:
        return status.get(check_id) is CheckStatus.FAIL

    by_id = {c.id: c for c in checks}
    if failed("journal"):
        nxt = ("vox1-setup rollback", "an interrupted install must be undone first")
    elif failed("torch"):
        nxt = ("install torch into VOX-1's Python", by_id["torch"].summary)
    elif failed("driver") or failed("torch-gpu"):
        nxt = ("update the NVIDIA driver, then `vox1-setup doctor`", by_id["driver"].summary)
    elif failed("gpu-arch"):
        nxt = ("install a torch build for this GPU, then `vox1-setup install`", by_id["gpu-arch"].summary)
    elif failed("flash-attn-import"):
        nxt = (("vox1-setup install", "replace the broken flash-attn with the matching wheel") if facts.wheel
               else ("vox1-setup uninstall", "remove the broken flash-attn (no matching wheel to replace it)"))
    elif failed("settings"):
        fix = by_id["settings"].fix or ""
        m = re.search(r"`([^`]+)`", fix)
        nxt = (m.group(1) if m else "vox1-setup settings show", by_id["settings"].summary)
    elif env.flash_attn is not None and blockers:
        nxt = ("vox1-setup uninstall", "flash-attn cannot run here")
    elif facts.wheel is not None and not blockers and (
            env.flash_attn is None or _base_version(env.flash_attn.version) != _base_version(facts.wheel.version)):
        nxt = ("vox1-setup install", f"optional: flash-attn {facts.wheel.version} fits this machine")
    else:
        nxt = ("vox1-setup run", "everything needed is in place")
    return Recommendation(attention[0], attention[1], batch[0], batch[1], nxt[0], nxt[1])


def examine(facts: DoctorFacts) -> DoctorReport:
    checks = run_checks(facts)
    return DoctorReport(checks, recommend(facts, checks), facts.env.python.executable)


def report_to_dict(report: DoctorReport, env: Environment | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": DOCTOR_SCHEMA,
        "ok": not report.failed,
        "exit_code": int(report.exit_code),
        "target": report.target,
        "counts": report.counts(),
        "checks": [c.to_dict() for c in report.checks],
        "recommendation": report.recommendation.to_dict(),
    }
    if env is not None:
        doc["environment"] = environment_to_dict(env)
    doc.update(report.extra)
    return doc


# ------------------------------------------------------------------------------------------------------------
# The gathering step (effects). Kept apart from the checks above.

def wheel_pick(entry: WheelEntry) -> WheelPick:
    return WheelPick(version=entry.flash_attn_version, filename=entry.filename, size_bytes=entry.size)


def resolve_wheel(env: Environment, manifest_option: str | None, paths: Paths) -> tuple[
        WheelPick | None, tuple[str, ...], str | None]:
    """(pick, advice, manifest_error). A broken manifest is reported by a check, never a crash."""
    pick, advice, error, _entry = resolve_entry(env, manifest_option, paths)
    return pick, advice, error


def load_manifest_or_error(manifest_option: str | None, paths: Paths) -> tuple[Manifest | None, str | None]:
    """The manifest commands use (--manifest, else `manifest update`'s copy, else the bundled one), or why not."""
    from vox1_setup.errors import VoxError
    from vox1_setup.manifest import active_manifest

    try:
        return active_manifest(manifest_option, paths), None
    except VoxError as exc:
        return None, exc.message


def resolve_entry(env: Environment, manifest_option: str | None, paths: Paths, gpu_index: int | None = None,
                  manifest: Manifest | None = None
                  ) -> tuple[WheelPick | None, tuple[str, ...], str | None, WheelEntry | None]:
    """(pick, advice, manifest_error, entry) for this environment."""
    from vox1_setup.errors import VoxError
    from vox1_setup.resolver import ResolveOptions, resolve

    if manifest is None:
        manifest, error = load_manifest_or_error(manifest_option, paths)
        if manifest is None:
            return None, (), error, None
    try:
        resolution = resolve(env, manifest, ResolveOptions(gpu_index=gpu_index))
    except VoxError as exc:
        return None, (), exc.message, None
    if resolution.selected is None:
        return None, tuple(resolution.advice), None, None
    return wheel_pick(resolution.selected), tuple(resolution.advice), None, resolution.selected


def _looks_local(model_path: str) -> bool:
    return model_path.startswith((".", "/", "\\", "~")) or bool(re.match(r"^[A-Za-z]:[\\/]", model_path)) \
        or model_path.count("/") > 1 or "\\" in model_path


def _same_python(journal_python: str, env: Environment, python: str | None) -> bool:
    from vox1_setup.target import same_target

    names = [n for n in (env.python.executable, python) if n]
    return not names or any(same_target(journal_python, n) for n in names)


def gather(python: str | None, *, paths: Paths, settings_path: Path, manifest_option: str | None = None,
           timeout: float = 120.0, env: Environment | None = None) -> DoctorFacts:
    """Collect every fact the checks read. One target process answers the probe and then imports flash_attn
    (torch imported once); the manifest is parsed meanwhile. `env` given: no target process at all."""
    from concurrent.futures import ThreadPoolExecutor

    from engine.settings import SettingsError, load_settings

    flash: ImportCheck | None = None
    # Start the target's process first, then parse the manifest (thousands of rows) while it runs.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vox1-doctor") as pool:
        detect_future = None
        if env is None:
            from vox1_setup.target import detect_and_import

            detect_future = pool.submit(detect_and_import, python, paths=paths, timeout=timeout)
        manifest, manifest_error = load_manifest_or_error(manifest_option, paths)
        if detect_future is not None:
            env, flash = detect_future.result()
    assert env is not None
    settings: EngineSettings | None = None
    settings_error = settings_key = None
    try:
        settings = load_settings(settings_path)
    except SettingsError as exc:
        settings_key = exc.key
        settings_error = str(exc).removeprefix("(file): ")
    model_exists = None
    if settings is not None and settings.model_path and _looks_local(settings.model_path):
        model_exists = Path(settings.model_path).expanduser().exists()
    interrupted: tuple[str, ...] = ()
    try:
        from vox1_setup.journal import Journal

        interrupted = tuple(
            f"{e.doc.get('action')} started {e.doc.get('created')} (journal entry {e.id})"
            for e in Journal(paths).interrupted()
            if isinstance(e.doc.get("python"), str) and _same_python(e.doc["python"], env, python))
    except ImportError:
        pass
    pick: WheelPick | None = None
    advice: tuple[str, ...] = ()
    if manifest is not None and not fa2_blockers(env, _chosen(env, settings)):
        explicit = settings is not None and settings.device.startswith("cuda:")
        pick, advice, manifest_error, _entry = resolve_entry(
            env, manifest_option, paths, _device_index(settings) if explicit else None, manifest)
    disk = (env.host.get("disk") or {}).get("cache") or {}
    free_mib = disk.get("free_mib")
    bench = last_recommendation(paths)
    if bench is not None and bench.python is not None and not _same_python(bench.python, env, python):
        bench = None  # measured in another interpreter: says nothing about this one
    return DoctorFacts(
        env=env, flash_import=flash, wheel=pick, wheel_advice=advice, manifest_error=manifest_error, bench=bench,
        settings=settings, settings_error=settings_error, settings_error_key=settings_key,
        settings_path=str(settings_path),
        settings_exists=settings_path.is_file(), model_path_exists=model_exists, interrupted=interrupted,
        cache_dir=disk.get("path") or str(paths.cache),
        disk_free_bytes=free_mib * MIB if isinstance(free_mib, int) else None,
    )
