"""The NVIDIA driver and GPUs, from the best source that answers.

Order: NVML (`pynvml` from nvidia-ml-py) → `nvidia-smi` (CSV query; without `compute_cap` on old drivers,
then the capability comes from the name table) → Linux `/proc/driver/nvidia` (driver version, GPU models).
Each runner is a few lines of I/O; the `parse_*` functions are pure and tested on captured real outputs.
`VOX1_NO_NVML=1` skips NVML (to test or work around a broken NVML library).
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vox1_setup import subproc
from vox1_setup.environment import DriverInfo, GpuInfo
from vox1_setup.knowledge.drivers import max_cuda_for_driver
from vox1_setup.knowledge.gpus import capability_for_name

SMI_FIELDS = ("index", "name", "uuid", "compute_cap", "memory.total", "memory.free", "driver_version")
SMI_FIELDS_OLD = tuple(f for f in SMI_FIELDS if f != "compute_cap")
SMI_TIMEOUT = 20.0


@dataclass(frozen=True)
class NvidiaReport:
    """What the driver said. `source` names the source that answered; `attempts` says why others did not."""

    driver: DriverInfo | None = None
    gpus: tuple[GpuInfo, ...] = ()
    source: str | None = None  # "nvml" | "nvidia-smi" | "proc" | None (nothing answered)
    attempts: tuple[str, ...] = ()  # "nvml: NVML Shared Library Not Found", ...
    sources: Mapping[str, str] = field(default_factory=dict)  # fact -> source, for Environment.sources


class _Unavailable(Exception):
    """This source cannot answer here (not installed, no driver loaded, refused)."""


# ----------------------------------------------------------------------------------------------------------
# Pure parsers


def _clean(value: str) -> str | None:
    """nvidia-smi prints `[N/A]`, `[Not Supported]`, `N/A` for values it cannot read."""
    value = value.strip()
    if not value or value.upper() in ("N/A", "[N/A]") or value.startswith("[") or value.lower() == "not supported":
        return None
    return value


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def smi_refused_field(text: str) -> str | None:
    """The field an old nvidia-smi refuses: 'Field "compute_cap" is not a valid field to query.'"""
    m = re.search(r'Field "([^"]+)" is not a valid field to query', text)
    return m.group(1) if m else None


def parse_smi_csv(text: str, fields: Sequence[str] = SMI_FIELDS) -> list[dict[str, str | None]]:
    """Rows of `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits` (one line per GPU)."""
    rows: list[dict[str, str | None]] = []
    for record in csv.reader(line for line in text.splitlines() if line.strip()):
        if len(record) != len(fields):
            raise ValueError(f"expected {len(fields)} columns, got {len(record)}: {record!r}")
        rows.append({name: _clean(value) for name, value in zip(fields, record, strict=True)})
    return rows


def gpus_from_smi_rows(rows: Sequence[Mapping[str, str | None]]) -> tuple[GpuInfo, ...]:
    """GpuInfo per row; a missing or refused compute capability is mapped from the GPU name."""
    gpus = []
    for position, row in enumerate(rows):
        name = row.get("name") or "unknown GPU"
        cc = row.get("compute_cap")
        source = "nvidia-smi"
        if cc is None:
            cc = capability_for_name(name)
            source = "nvidia-smi+name-table" if cc else "nvidia-smi"
        index = _int_or_none(row.get("index"))
        gpus.append(GpuInfo(index=position if index is None else index, name=name, compute_capability=cc,
                            memory_total_mib=_int_or_none(row.get("memory.total")),
                            memory_free_mib=_int_or_none(row.get("memory.free")),
                            uuid=row.get("uuid"), source=source))
    return tuple(gpus)


_SMI_HEADER = re.compile(r"Driver Version:\s*(?P<driver>[\d.]+)(?:.*?CUDA Version:\s*(?P<cuda>[\d.]+|N/A))?")
_SMI_Q_CUDA = re.compile(r"^\s*CUDA Version\s*:\s*(?P<cuda>[\d.]+)\s*$", re.M)


def parse_smi_header(text: str) -> tuple[str | None, str | None]:
    """(driver version, max CUDA) from plain `nvidia-smi` ("| NVIDIA-SMI 576.02  Driver Version: 576.02
    CUDA Version: 12.9 |") or from `nvidia-smi -q` ("CUDA Version : 12.9")."""
    m = _SMI_HEADER.search(text)
    if m:
        cuda = m.group("cuda")
        return m.group("driver"), cuda if cuda and cuda != "N/A" else None
    q = _SMI_Q_CUDA.search(text)
    driver = re.search(r"^\s*Driver Version\s*:\s*([\d.]+)\s*$", text, re.M)
    return (driver.group(1) if driver else None), (q.group("cuda") if q else None)


# Proprietary: "NVIDIA UNIX x86_64 Kernel Module  550.144.03  <date>"; open flavour (R515+):
# "NVIDIA UNIX Open Kernel Module for x86_64  565.57.01  Release Build ..."; Jetson (L4T): "... for aarch64  35.3.1".
_PROC_VERSION = re.compile(r"NVRM version:.*?Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)\s")


def parse_proc_version(text: str) -> str | None:
    """Driver version from /proc/driver/nvidia/version or /sys/module/nvidia/version ("550.144.03")."""
    m = _PROC_VERSION.search(text + " ")
    if m:
        return m.group(1)
    bare = text.strip()
    return bare if re.fullmatch(r"\d+\.\d+(?:\.\d+)?", bare) else None


def parse_proc_gpu_information(text: str) -> dict[str, str]:
    """`Key: value` lines of /proc/driver/nvidia/gpus/<bus>/information (Model, GPU UUID, Device Minor...)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def cuda_from_nvml(version: int) -> str:
    """nvmlSystemGetCudaDriverVersion_v2: 12090 → '12.9'."""
    return f"{version // 1000}.{(version % 1000) // 10}"


def _driver_table_cuda(driver: str, os_name: str) -> str | None:
    best = max_cuda_for_driver(driver, os_name)
    return f"{best[0]}.{best[1]}" if best else None


# ----------------------------------------------------------------------------------------------------------
# Sources (I/O)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def query_nvml(os_name: str) -> NvidiaReport:
    """Driver and GPUs through NVML. Raises _Unavailable when NVML cannot answer."""
    if os.environ.get("VOX1_NO_NVML", "").strip().lower() in ("1", "true", "yes", "on"):
        raise _Unavailable("skipped (VOX1_NO_NVML is set)")
    try:
        import pynvml
    except ImportError as exc:
        raise _Unavailable(f"pynvml is not installed ({exc})") from exc
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        raise _Unavailable(str(exc) or type(exc).__name__) from exc
    sources: dict[str, str] = {}
    try:
        driver_version = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda: str | None = None
        try:
            cuda = cuda_from_nvml(int(pynvml.nvmlSystemGetCudaDriverVersion_v2()))
            sources["driver.cuda"] = "nvml"
        except Exception:
            cuda = _driver_table_cuda(driver_version, os_name)
            sources["driver.cuda"] = "driver-table"
        gpus = []
        for index in range(int(pynvml.nvmlDeviceGetCount())):
            gpus.append(_nvml_gpu(pynvml, index))
    except Exception as exc:
        raise _Unavailable(f"query failed: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    sources["driver.version"] = "nvml"
    sources["gpus"] = "nvml"
    return NvidiaReport(driver=DriverInfo(version=driver_version, cuda=cuda, source="nvml"), gpus=tuple(gpus),
                        source="nvml", sources=sources)


def _nvml_gpu(pynvml: Any, index: int) -> GpuInfo:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    name = _text(pynvml.nvmlDeviceGetName(handle))

    def optional(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception:  # a value this GPU or driver does not support
            return None

    cap = optional(lambda: pynvml.nvmlDeviceGetCudaComputeCapability(handle))
    source = "nvml"
    if cap is not None:
        cc: str | None = f"{int(cap[0])}.{int(cap[1])}"
    else:
        cc = capability_for_name(name)
        source = "nvml+name-table" if cc else "nvml"
    memory = optional(lambda: pynvml.nvmlDeviceGetMemoryInfo(handle))
    uuid = optional(lambda: _text(pynvml.nvmlDeviceGetUUID(handle)))
    mib = 1024 * 1024
    return GpuInfo(index=index, name=name, compute_capability=cc,
                   memory_total_mib=int(memory.total) // mib if memory is not None else None,
                   memory_free_mib=int(memory.free) // mib if memory is not None else None,
                   uuid=uuid, source=source)


def nvidia_smi_candidates(os_name: str, environ: Mapping[str, str]) -> list[str]:
    """Where nvidia-smi may live besides PATH: Windows drivers put it in System32 (newer) or
    Program Files\\NVIDIA Corporation\\NVSMI (older); WSL keeps it in /usr/lib/wsl/lib."""
    if os_name == "windows":
        root = environ.get("SystemRoot") or environ.get("SYSTEMROOT") or "C:\\Windows"
        program_files = environ.get("ProgramFiles") or environ.get("PROGRAMFILES") or "C:\\Program Files"
        return [f"{root}\\System32\\nvidia-smi.exe", f"{program_files}\\NVIDIA Corporation\\NVSMI\\nvidia-smi.exe"]
    return ["/usr/lib/wsl/lib/nvidia-smi", "/usr/bin/nvidia-smi"]


def find_nvidia_smi(os_name: str, environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    found = shutil.which("nvidia-smi", path=env.get("PATH"))
    if found:
        return found
    for candidate in nvidia_smi_candidates(os_name, env):
        if Path(candidate).is_file():
            return candidate
    return None


def query_nvidia_smi(os_name: str, exe: str | None = None, timeout: float = SMI_TIMEOUT) -> NvidiaReport:
    """Driver and GPUs from nvidia-smi's CSV query. Raises _Unavailable when it is missing or fails."""
    exe = exe or find_nvidia_smi(os_name)
    if exe is None:
        raise _Unavailable("not found on PATH" + (" nor in System32 / NVSMI" if os_name == "windows" else ""))
    fields: Sequence[str] = SMI_FIELDS
    result = _smi(exe, fields, timeout)
    refused = smi_refused_field(result.stdout + result.stderr)
    if not result.ok and refused == "compute_cap":
        fields = SMI_FIELDS_OLD  # driver before R510: capability from the name table
        result = _smi(exe, fields, timeout)
    if not result.ok:
        detail = (result.stdout + result.stderr).strip().splitlines()
        why = (f"timed out after {timeout:g} s (a wedged driver?)" if result.timed_out
               else detail[0] if detail else f"exit {result.returncode}")
        raise _Unavailable(f"{exe}: {why}")
    try:
        rows = parse_smi_csv(result.stdout, fields)
    except ValueError as exc:
        raise _Unavailable(f"{exe}: unexpected output ({exc})") from exc
    gpus = gpus_from_smi_rows(rows)
    driver_version = next((r["driver_version"] for r in rows if r.get("driver_version")), None)
    sources = {"gpus": "nvidia-smi" if fields is SMI_FIELDS else "nvidia-smi (no compute_cap) + name table"}
    cuda: str | None = None
    header = subproc.run([exe], timeout=timeout)
    if header.ok:
        header_driver, cuda = parse_smi_header(header.stdout)
        driver_version = driver_version or header_driver
    if driver_version is None:
        raise _Unavailable(f"{exe}: no driver version in its output")
    sources["driver.version"] = "nvidia-smi"
    if cuda is not None:
        sources["driver.cuda"] = "nvidia-smi"
    else:
        cuda = _driver_table_cuda(driver_version, os_name)
        sources["driver.cuda"] = "driver-table"
    return NvidiaReport(driver=DriverInfo(version=driver_version, cuda=cuda, source="nvidia-smi"), gpus=gpus,
                        source="nvidia-smi", sources=sources)


def _smi(exe: str, fields: Sequence[str], timeout: float) -> subproc.Completed:
    return subproc.run([exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"], timeout=timeout)


def query_proc(os_name: str, root: Path = Path("/")) -> NvidiaReport:
    """Linux without NVML and nvidia-smi: the kernel module's version and GPU models from /proc."""
    if os_name != "linux":
        raise _Unavailable("only on Linux")
    driver_version = None
    used = ""
    for rel in ("proc/driver/nvidia/version", "sys/module/nvidia/version"):
        try:
            driver_version = parse_proc_version((root / rel).read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        if driver_version:
            used = "/" + rel
            break
    if driver_version is None:
        raise _Unavailable("no NVIDIA kernel module loaded (/proc/driver/nvidia/version absent)")
    gpus = []
    gpu_dirs = sorted((root / "proc/driver/nvidia/gpus").glob("*/information"))
    for position, info_file in enumerate(gpu_dirs):
        try:
            info = parse_proc_gpu_information(info_file.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        name = info.get("Model") or "unknown GPU"
        minor = _int_or_none(info.get("Device Minor"))
        cc = capability_for_name(name)
        uuid = info.get("GPU UUID")
        gpus.append(GpuInfo(index=position if minor is None else minor, name=name, compute_capability=cc,
                            uuid=uuid if uuid and not uuid.startswith("?") else None,
                            source="proc+name-table" if cc else "proc"))
    gpus.sort(key=lambda g: g.index)
    sources = {"driver.version": used, "driver.cuda": "driver-table", "gpus": "/proc/driver/nvidia/gpus + name table"}
    return NvidiaReport(driver=DriverInfo(version=driver_version, cuda=_driver_table_cuda(driver_version, os_name),
                                          source="proc"),
                        gpus=tuple(gpus), source="proc", sources=sources)


def detect_nvidia(os_name: str, *, timeout: float = SMI_TIMEOUT, proc_root: Path = Path("/")) -> NvidiaReport:
    """Ask each source in order; the first that answers wins, and the others' failures are kept as notes."""
    attempts: list[str] = []
    sources: list[tuple[str, Callable[[], NvidiaReport]]] = [
        ("nvml", lambda: query_nvml(os_name)),
        ("nvidia-smi", lambda: query_nvidia_smi(os_name, timeout=timeout)),
        ("proc", lambda: query_proc(os_name, proc_root)),
    ]
    for name, query in sources:
        try:
            report = query()
        except _Unavailable as exc:
            attempts.append(f"{name}: {exc}")
            continue
        return replace(report, attempts=tuple(attempts))
    return NvidiaReport(attempts=tuple(attempts))
