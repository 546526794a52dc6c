"""The `Environment` value: everything later steps need to know about a machine and its target Python.

Pure: building, loading and dumping the public `vox1-env/1` document and deriving wheel tags. Gathering the
facts (probe, NVML, nvidia-smi, psutil) lives in `vox1_setup.probe`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging import tags as ptags

from vox1_setup.errors import BadInputError

ENV_SCHEMA = "vox1-env/1"

KNOWN_OS = ("linux", "windows", "darwin")


@dataclass(frozen=True)
class PythonInfo:
    version: str  # "3.10.11"
    implementation: str = "cpython"
    gil_disabled: bool = False
    executable: str | None = None
    tags: tuple[str, ...] | None = None  # most preferred first
    soabi: str | None = None
    site_packages: str | None = None
    debug: bool = False  # a debug build (ABI flag "d")
    platform: str | None = None  # sysconfig.get_platform() of the target: "linux-x86_64", "win-amd64", "win32"

    @property
    def major_minor(self) -> tuple[int, int]:
        parts = self.version.split(".")
        return int(parts[0]), int(parts[1])


@dataclass(frozen=True)
class TorchDevice:
    index: int
    name: str
    capability: str  # "8.9"


@dataclass(frozen=True)
class TorchInfo:
    """torch as seen by the target interpreter. `version` is None when torch is present but fails to import."""

    version: str | None  # "2.7.1+cu128"
    cuda: str | None = None  # torch.version.cuda ("12.8"), None on CPU/ROCm builds
    hip: str | None = None  # torch.version.hip, set on ROCm builds
    cxx11abi: bool | None = None  # effective torch._C._GLIBCXX_USE_CXX11_ABI
    cuda_available: bool | None = None
    device_count: int | None = None
    devices: tuple[TorchDevice, ...] = ()
    arch_list: tuple[str, ...] | None = None  # torch.cuda.get_arch_list()
    import_error: str | None = None
    location: str | None = None
    warnings: tuple[str, ...] = ()  # what torch warned while importing / initialising CUDA ("driver too old")

    @property
    def importable(self) -> bool:
        return self.import_error is None and self.version is not None

    @property
    def major_minor(self) -> tuple[int, int] | None:
        if not self.version:
            return None
        m = re.match(r"(\d+)\.(\d+)", self.version)
        return (int(m.group(1)), int(m.group(2))) if m else None

    @property
    def cuda_major(self) -> int | None:
        if not self.cuda:
            return None
        return int(self.cuda.split(".")[0])

    @property
    def build(self) -> str:
        """'cuda', 'rocm', 'cpu' or 'unknown' (torch present but not importable)."""
        if not self.importable:
            return "unknown"
        if self.hip:
            return "rocm"
        if self.cuda:
            return "cuda"
        return "cpu"


@dataclass(frozen=True)
class DriverInfo:
    version: str  # "576.02" / "550.144.03"
    cuda: str | None = None  # max CUDA the driver supports ("12.9")
    source: str | None = None  # "nvml" | "nvidia-smi" | "proc" | "file"


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str | None = None  # "8.9"
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None
    uuid: str | None = None
    source: str | None = None  # where the values came from; "nvidia-smi+name-table" when cc was mapped

    @property
    def capability_tuple(self) -> tuple[int, int] | None:
        if not self.compute_capability:
            return None
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)


@dataclass(frozen=True)
class FlashAttnInfo:
    version: str
    location: str | None = None


@dataclass(frozen=True)
class Environment:
    os: str  # "linux" | "windows" | "darwin"
    machine: str  # normalised: "x86_64", "aarch64", "amd64", "arm64"
    python: PythonInfo
    glibc: str | None = None
    torch: TorchInfo | None = None
    driver: DriverInfo | None = None
    gpus: tuple[GpuInfo, ...] = ()
    flash_attn: FlashAttnInfo | None = None
    host: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)  # fact -> where it came from
    packages: Mapping[str, str] = field(default_factory=dict)  # distribution -> installed version in the target

    @property
    def wheel_tags(self) -> tuple[str, ...]:
        """The target's compatible tags, most preferred first: probed ones win, else derived."""
        if self.python.tags:
            return self.python.tags
        return derive_tags(self.os, self.machine, self.glibc, self.python)

    @property
    def glibc_tuple(self) -> tuple[int, int] | None:
        return _version_tuple2(self.glibc)


def _version_tuple2(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    m = re.match(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


# --------------------------------------------------------------------------------------------------------------
# Tags (pure): the same answer packaging.tags.sys_tags() gives inside the target, computed from its facts.


def platform_tags(os_name: str, machine: str, glibc: str | None, mac_version: str | None = None, *,
                  musl: str | None = None, is_32bit: bool = False) -> list[str]:
    """Platform tags in preference order, as packaging.tags computes them inside such an interpreter.

    Mirrors packaging ≥ 26.3 (`_linux_platforms`, `_manylinux.platform_tags`, `_musllinux.platform_tags`):
    the native `linux_<arch>` tag first, then every manylinux glibc minor down to the oldest one for the
    arch (legacy aliases right after the minor they stand for), then musllinux. A 32-bit interpreter on a
    64-bit kernel gets the 32-bit arch, as pip does."""
    arch = machine.lower()
    if os_name == "windows":
        if is_32bit and arch in ("amd64", "x86_64", "x86", "i686"):
            return ["win32"]
        return {"amd64": ["win_amd64"], "x86_64": ["win_amd64"], "arm64": ["win_arm64"],
                "aarch64": ["win_arm64"], "x86": ["win32"], "i686": ["win32"]}.get(arch, [f"win_{arch}"])
    if os_name == "darwin":
        mac = _version_tuple2(mac_version) or (11, 0)
        mac_arch = "arm64" if arch in ("arm64", "aarch64") else "x86_64"
        return list(ptags.mac_platforms(mac, mac_arch))
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    if is_32bit:
        arch = {"x86_64": "i686", "aarch64": "armv8l"}.get(arch, arch)
    archs = {"armv8l": ["armv8l", "armv7l"]}.get(arch, [arch])
    out = [f"linux_{a}" for a in archs]
    gl = _version_tuple2(glibc)
    if gl is not None and gl[0] == 2:
        oldest = 4 if set(archs) & {"x86_64", "i686"} else 16
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        for a in archs:
            for minor in range(gl[1], oldest, -1):
                out.append(f"manylinux_2_{minor}_{a}")
                if minor in legacy:
                    out.append(f"{legacy[minor]}_{a}")
    ml = _version_tuple2(musl)
    if ml is not None:
        for a in archs:
            out.extend(f"musllinux_{ml[0]}_{minor}_{a}" for minor in range(ml[1], -1, -1))
    return out


def cpython_abis(version: tuple[int, int], *, gil_disabled: bool = False, debug: bool = False,
                 pymalloc: bool = False) -> list[str]:
    """The interpreter's own ABI tags (packaging.tags._cpython_abis from facts instead of sysconfig)."""
    nodot = f"{version[0]}{version[1]}"
    threading = "t" if gil_disabled and version >= (3, 13) else ""
    flags = threading + ("d" if debug else "") + ("m" if pymalloc and version < (3, 8) else "")
    abis = [f"cp{nodot}{flags}"]
    if debug and version >= (3, 8):
        abis.append(f"cp{nodot}{threading}")
    return abis


def generic_abis(soabi: str | None) -> list[str]:
    """ABI tag of a non-CPython interpreter from its SOABI, as packaging.tags._generic_abi derives it:
    'pypy310-pp73-x86_64-linux-gnu' → 'pypy310_pp73', 'graalpy-38-native-...' → 'graalpy_38_native'."""
    if not soabi:
        return []
    parts = soabi.split("-")
    keep = 2 if soabi.startswith("pypy") else 3 if soabi.startswith("graalpy") else len(parts)
    return [re.sub(r"[^a-z0-9]+", "_", "-".join(parts[:keep]).lower())]


def derive_tags(os_name: str, machine: str, glibc: str | None, python: PythonInfo,
                mac_version: str | None = None, *, musl: str | None = None, is_32bit: bool = False,
                pymalloc: bool = False) -> tuple[str, ...]:
    """Compatible wheel tags for a target from its facts alone (no running interpreter needed), in the
    order packaging.tags.sys_tags() yields them inside that interpreter."""
    major, minor = python.major_minor
    platforms = platform_tags(os_name, machine, glibc, mac_version, musl=musl, is_32bit=is_32bit)
    if python.implementation != "cpython":
        interp = {"pypy": "pp", "graalpy": "gp"}.get(python.implementation, python.implementation[:2])
        # Explicit ABIs: left to packaging, generic_tags() would read the *running* interpreter's EXT_SUFFIX.
        generic = list(ptags.generic_tags(f"{interp}{major}{minor}", generic_abis(python.soabi), platforms))
        compat = list(ptags.compatible_tags((major, minor), "pp3" if interp == "pp" else None, platforms))
        return tuple(dict.fromkeys(str(t) for t in generic + compat))
    abis = cpython_abis((major, minor), gil_disabled=python.gil_disabled, debug=python.debug, pymalloc=pymalloc)
    cp = list(ptags.cpython_tags((major, minor), abis, platforms))
    compat = list(ptags.compatible_tags((major, minor), f"cp{major}{minor}", platforms))
    return tuple(dict.fromkeys(str(t) for t in cp + compat))


# --------------------------------------------------------------------------------------------------------------
# vox1-env/1 documents


def _opt(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = d.get(key)
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise BadInputError(f"{where}.{key}: expected {names}, got {json.dumps(value)}")
    return value


def _req(d: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in d or d[key] is None:
        raise BadInputError(f"{where}.{key}: required field is missing")
    return _opt(d, key, kind, where)


def _obj(d: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadInputError(f"{where}.{key}: expected an object, got {json.dumps(value)}")
    return value


# What a version field must start with: later steps compare these numerically ("12.8" → (12, 8)).
_MAJOR_MINOR = re.compile(r"^\d+\.\d+")
_NUMERIC = re.compile(r"^\d+(\.\d+)*$")


def _str_or_num(d: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str] | None = None,
                example: str = "") -> str | None:
    """Versions are strings, but a hand-written 12.8 (a JSON number) is accepted. With `pattern`, the text
    must match it (`example` shows the expected form in the error)."""
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadInputError(f"{where}.{key}: expected a version string, got {json.dumps(value)}")
    text = str(value).strip()
    if pattern is not None and not pattern.match(text):
        raise BadInputError(f"{where}.{key}: expected a version like {example!r}, got {json.dumps(value)}")
    return text


_VERSION_FORMS = {"driver": (_NUMERIC, "576.02"), "flash_attn": (_MAJOR_MINOR, "2.7.4.post1")}


def _version_of(d: Mapping[str, Any], name: str) -> str:
    """The `version` an object such as `driver` must carry once it is given at all."""
    version = _str_or_num(d, "version", f"env.{name}", *_VERSION_FORMS[name])
    if not version:
        raise BadInputError(f"env.{name}.version: required when {name} is given")
    return version


_CC_RE = re.compile(r"^\d+\.\d+$")

# PyTorch's local version labels: "+cu128" (CUDA 12.8), "+cu92", "+rocm6.2.4", "+cpu" (download.pytorch.org).
_CUDA_LABEL = re.compile(r"^cu(\d+)(\d)$")
_ROCM_LABEL = re.compile(r"^rocm(\d+\.\d+(?:\.\d+)*)$")


def build_from_local_label(version: str | None) -> tuple[str | None, str | None]:
    """(cuda, hip) named by a torch version's local label: '2.7.1+cu128' → ('12.8', None), '2.5.1+rocm6.2' →
    (None, '6.2'); '+cpu', no label or an unknown one → (None, None)."""
    if not version or "+" not in version:
        return None, None
    label = version.partition("+")[2].strip().lower()
    cuda = _CUDA_LABEL.match(label)
    if cuda:
        return f"{int(cuda.group(1))}.{cuda.group(2)}", None
    rocm = _ROCM_LABEL.match(label)
    return (None, rocm.group(1)) if rocm else (None, None)

# Spellings people use for the same architecture, per OS, mapped to what `detect` writes.
_MACHINE_ALIASES = {
    "windows": {"x64": "amd64", "x86_64": "amd64", "win_amd64": "amd64", "aarch64": "arm64", "win32": "x86",
                "i686": "x86", "i386": "x86"},
    "linux": {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i386": "i686"},
    "darwin": {"aarch64": "arm64", "amd64": "x86_64", "x64": "x86_64"},
}


def normalize_machine(os_name: str, machine: str) -> str:
    """'AMD64'/'x64' on Windows → 'amd64'; 'arm64' on Linux → 'aarch64' (what `detect` reports)."""
    value = machine.strip().lower()
    return _MACHINE_ALIASES.get(os_name, {}).get(value, value)


def _abi_flag(d: Mapping[str, Any], where: str) -> bool | None:
    """The C++11 ABI as true/false; a hand-written 0/1 (torch._C._GLIBCXX_USE_CXX11_ABI prints that) is accepted."""
    value = d.get("cxx11abi")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise BadInputError(f"{where}.cxx11abi: expected true/false, got {json.dumps(value)}")


def environment_from_dict(doc: Mapping[str, Any]) -> Environment:
    """Validate a `vox1-env/1` document. Only os, machine, python.version (plus torch/gpus/driver when known)
    are required; everything missing is 'unknown'. Errors name the offending field."""
    if not isinstance(doc, dict):
        raise BadInputError("environment document: expected a JSON object")
    schema = doc.get("schema", ENV_SCHEMA)
    if schema != ENV_SCHEMA:
        raise BadInputError(f"schema: expected {ENV_SCHEMA!r}, got {schema!r}")
    os_name = str(_req(doc, "os", str, "env")).lower()
    if os_name not in KNOWN_OS:
        raise BadInputError(f"env.os: expected one of {', '.join(KNOWN_OS)}, got {os_name!r}")
    machine = normalize_machine(os_name, str(_req(doc, "machine", str, "env")))
    if not machine:
        raise BadInputError("env.machine: expected an architecture such as 'x86_64' or 'amd64', got \"\"")
    glibc = _str_or_num(doc, "glibc", "env", _MAJOR_MINOR, "2.35")

    py = _obj(doc, "python", "env")
    if py is None:
        raise BadInputError("env.python: required field is missing")
    version = _str_or_num(py, "version", "env.python")
    if not version or not re.match(r"^\d+\.\d+(\.\d+)?", version):
        raise BadInputError(f"env.python.version: expected a version like '3.11.9', got {version!r}")
    tags = _opt(py, "tags", list, "env.python")
    if tags is not None and not all(isinstance(t, str) for t in tags):
        raise BadInputError("env.python.tags: expected a list of strings")
    python = PythonInfo(
        version=version,
        implementation=str(_opt(py, "implementation", str, "env.python") or "cpython").lower(),
        gil_disabled=bool(_opt(py, "gil_disabled", bool, "env.python") or False),
        executable=_opt(py, "executable", str, "env.python"),
        tags=tuple(tags) if tags else None,
        soabi=_opt(py, "soabi", str, "env.python"),
        site_packages=_opt(py, "site_packages", str, "env.python"),
        debug=bool(_opt(py, "debug", bool, "env.python") or False),
        platform=_opt(py, "platform", str, "env.python"),
    )

    torch = None
    derived_sources: dict[str, str] = {}
    t = _obj(doc, "torch", "env")
    if t is not None:
        devices = []
        for i, dev in enumerate(_opt(t, "devices", list, "env.torch") or []):
            if not isinstance(dev, dict):
                raise BadInputError(f"env.torch.devices[{i}]: expected an object")
            where = f"env.torch.devices[{i}]"
            cap = _str_or_num(dev, "capability", where)
            if cap is None or not _CC_RE.match(cap):
                raise BadInputError(f"{where}.capability: expected 'major.minor' like '8.9', got {json.dumps(cap)}")
            index = _opt(dev, "index", int, where)
            devices.append(TorchDevice(index=i if index is None else index,
                                       name=str(_opt(dev, "name", str, where) or ""), capability=cap))
        arch = _opt(t, "arch_list", list, "env.torch")
        if arch is not None and not all(isinstance(a, str) for a in arch):
            raise BadInputError(f"env.torch.arch_list: expected a list of strings like 'sm_89', got {json.dumps(arch)}")
        torch_version = _str_or_num(t, "version", "env.torch", _MAJOR_MINOR, "2.7.1+cu128")
        torch_cuda = _str_or_num(t, "cuda", "env.torch", _MAJOR_MINOR, "12.8")
        torch_hip = _str_or_num(t, "hip", "env.torch", _MAJOR_MINOR, "6.2.41133")
        # A hand-written file often gives only the version: its local label names the build. An explicit null
        # stays null (the writer said so).
        label_cuda, label_hip = build_from_local_label(torch_version)
        if "cuda" not in t and torch_hip is None and label_cuda is not None:
            torch_cuda = label_cuda
            derived_sources["torch.cuda"] = "file (torch.version's +cu label)"
        if "hip" not in t and torch_cuda is None and label_hip is not None:
            torch_hip = label_hip
            derived_sources["torch.hip"] = "file (torch.version's +rocm label)"
        torch = TorchInfo(
            version=torch_version,
            cuda=torch_cuda,
            hip=torch_hip,
            cxx11abi=_abi_flag(t, "env.torch"),
            cuda_available=_opt(t, "cuda_available", bool, "env.torch"),
            device_count=_opt(t, "device_count", int, "env.torch"),
            devices=tuple(devices),
            arch_list=tuple(str(a) for a in arch) if arch is not None else None,
            import_error=_opt(t, "import_error", str, "env.torch"),
            location=_opt(t, "location", str, "env.torch"),
            warnings=tuple(str(w) for w in _opt(t, "warnings", list, "env.torch") or ()),
        )
        if torch.version is None and torch.import_error is None:
            raise BadInputError("env.torch.version: required when torch is given (use null for 'no torch')")

    driver = None
    d = _obj(doc, "driver", "env")
    if d is not None:
        driver = DriverInfo(version=_version_of(d, "driver"), cuda=_str_or_num(d, "cuda", "env.driver", _MAJOR_MINOR,
                                                                               "12.9"),
                            source=_opt(d, "source", str, "env.driver"))

    gpus = []
    for i, g in enumerate(_opt(doc, "gpus", list, "env") or []):
        where = f"env.gpus[{i}]"
        if not isinstance(g, dict):
            raise BadInputError(f"{where}: expected an object")
        cc = _str_or_num(g, "compute_capability", where)
        if cc is not None and not _CC_RE.match(cc):
            raise BadInputError(f"{where}.compute_capability: expected 'major.minor' like '8.9', got {cc!r}")
        gpu_source = _opt(g, "source", str, where)
        if cc is None and isinstance(g.get("name"), str):
            # A hand-written file may give only the model name: the table knows most models.
            from vox1_setup.knowledge.gpus import capability_for_name

            cc = capability_for_name(g["name"])
            if cc is not None:
                gpu_source = f"{gpu_source or 'file'}+name-table"
        gpus.append(GpuInfo(
            index=int(_opt(g, "index", int, where) if g.get("index") is not None else i),
            name=str(_opt(g, "name", str, where) or "unknown GPU"),
            compute_capability=cc,
            memory_total_mib=_opt(g, "memory_total_mib", int, where),
            memory_free_mib=_opt(g, "memory_free_mib", int, where),
            uuid=_opt(g, "uuid", str, where),
            source=gpu_source,
        ))

    fa = None
    f = _obj(doc, "flash_attn", "env")
    if f is not None:
        fa = FlashAttnInfo(version=_version_of(f, "flash_attn"), location=_opt(f, "location", str, "env.flash_attn"))

    host = _obj(doc, "host", "env") or {}
    sources = _obj(doc, "sources", "env") or {}
    packages = _obj(doc, "packages", "env") or {}
    for name, version in packages.items():
        if not isinstance(version, str):
            raise BadInputError(f"env.packages.{name}: expected a version string, got {json.dumps(version)}")
    return Environment(os=os_name, machine=machine, glibc=glibc, python=python, torch=torch, driver=driver,
                       gpus=tuple(gpus), flash_attn=fa, host=dict(host),
                       sources={**derived_sources, **{str(k): str(v) for k, v in sources.items()}},
                       packages={str(k): v for k, v in packages.items()})


def environment_to_dict(env: Environment) -> dict[str, Any]:
    """The `vox1-env/1` document (always with derived tags, so a reader need not recompute them)."""
    t = env.torch
    return {
        "schema": ENV_SCHEMA,
        "os": env.os,
        "machine": env.machine,
        "glibc": env.glibc,
        "python": {
            "version": env.python.version,
            "implementation": env.python.implementation,
            "gil_disabled": env.python.gil_disabled,
            "executable": env.python.executable,
            "tags": list(env.wheel_tags),
            "soabi": env.python.soabi,
            "site_packages": env.python.site_packages,
            "debug": env.python.debug,
            "platform": env.python.platform,
        },
        "torch": None if t is None else {
            "version": t.version,
            "cuda": t.cuda,
            "hip": t.hip,
            "cxx11abi": t.cxx11abi,
            "cuda_available": t.cuda_available,
            "device_count": t.device_count,
            "devices": [{"index": d.index, "name": d.name, "capability": d.capability} for d in t.devices],
            "arch_list": list(t.arch_list) if t.arch_list is not None else None,
            "import_error": t.import_error,
            "location": t.location,
            "warnings": list(t.warnings),
        },
        "driver": None if env.driver is None else {
            "version": env.driver.version, "cuda": env.driver.cuda, "source": env.driver.source,
        },
        "gpus": [
            {"index": g.index, "name": g.name, "compute_capability": g.compute_capability,
             "memory_total_mib": g.memory_total_mib, "memory_free_mib": g.memory_free_mib,
             "uuid": g.uuid, "source": g.source}
            for g in env.gpus
        ],
        "flash_attn": None if env.flash_attn is None else {
            "version": env.flash_attn.version, "location": env.flash_attn.location,
        },
        "packages": dict(env.packages),
        "host": dict(env.host),
        "sources": dict(env.sources),
    }


def decode_text(data: bytes) -> str:
    """UTF-8 with or without BOM (Notepad), or UTF-16 with BOM: what Windows PowerShell 5 writes for
    `vox1-setup detect --json > env.json`."""
    import codecs

    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def load_environment_file(path: str | Path) -> Environment:
    p = Path(path)
    try:
        text = decode_text(p.read_bytes())
    except OSError as exc:
        raise BadInputError(f"cannot read environment file {p}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{p}: not UTF-8 or UTF-16 text ({exc.reason} at byte {exc.start})",
                            "produce it with `vox1-setup detect --json -o env.json`") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                            "produce it with `vox1-setup detect --json > env.json`") from exc
    try:
        return environment_from_dict(doc)
    except BadInputError as exc:
        raise BadInputError(f"{p}: {exc.message}", exc.hint or "see docs/env-schema.md") from exc
