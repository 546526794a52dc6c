"""The target interpreter as the probe script sees it.

`run_probe` runs `target_probe.py` by path inside the target (one subprocess, with a timeout) and returns its
raw JSON; `facts_from_probe` turns that JSON into validated values (pure); `probe_interpreter` does both and
copes with a target whose torch import hangs or crashes the interpreter: it probes again without torch and
reports the failure as torch's import error, so a broken torch never makes `detect` fail.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vox1_setup import subproc
from vox1_setup.environment import FlashAttnInfo, PythonInfo, TorchDevice, TorchInfo, derive_tags
from vox1_setup.errors import BadInputError

PROBE_SCRIPT = Path(__file__).with_name("target_probe.py")
PROBE_SCHEMA = "vox1-probe/1"
DEFAULT_TIMEOUT = 120.0
# After a hang or crash in torch, the second probe (no torch) only needs the stdlib: 30 s is plenty.
RETRY_TIMEOUT = 30.0
# --timeout bounds the whole probe: the torch probe leaves this much of it (at most a third) for that retry.
RETRY_RESERVE = 15.0
# Less than this left is not worth starting an interpreter for.
MIN_RETRY = 0.2

# Inside an installation or venv folder, where the interpreter lives (Windows first; VOX-1's own folder holds
# its interpreter in system_python\).
_INTERPRETER_CANDIDATES = ("python.exe", "system_python/python.exe", "Scripts/python.exe", "bin/python3",
                           "bin/python", "python3", "python")


@dataclass(frozen=True)
class ProbeFacts:
    """What the probe found in the target: the interpreter, its platform, torch and installed packages."""

    os: str  # "linux" | "windows" | "darwin" (platform.system(), lower case)
    machine: str  # the interpreter's architecture for wheel tags: "x86_64", "aarch64", "amd64", "i686", ...
    glibc: str | None
    python: PythonInfo  # tags included, derived from these facts
    torch: TorchInfo | None
    flash_attn: FlashAttnInfo | None
    packages: Mapping[str, str] = field(default_factory=dict)
    platform: Mapping[str, Any] = field(default_factory=dict)  # release, kernel machine, musl, mac_version
    torch_probed: bool = True
    seconds: float | None = None  # wall time of the probe subprocess(es)
    sources: Mapping[str, str] = field(default_factory=dict)


def resolve_target(python: str | os.PathLike[str] | None) -> str:
    """The interpreter to probe, as an absolute path: the running one by default; a folder is searched for its
    interpreter; a bare name ("python3") is looked up on PATH.

    Absolute because a relative name without a slash ("python.exe" in the current folder) would otherwise be
    looked up on PATH by the OS."""
    if python is None or str(python) == "":
        return sys.executable
    text = str(python)
    path = Path(text).expanduser()
    if not path.exists() and os.path.expandvars(text) != text:  # "%LOCALAPPDATA%\VOX-1\...", "$HOME/..."
        path = Path(os.path.expandvars(text)).expanduser()
    if path.is_dir():
        for rel in _INTERPRETER_CANDIDATES:
            candidate = path / rel
            if candidate.is_file():
                return _absolute(candidate)
        raise BadInputError(f"{path} is a folder without a Python interpreter in it",
                            f"pass the interpreter itself, e.g. --python {example_python()}")
    if not path.exists():
        found = _which(text) if os.sep not in text and "/" not in text else None
        if found:
            return _absolute(found)
        raise BadInputError(f"target interpreter {path} does not exist",
                            f"pass the path of VOX-1's Python, e.g. --python {example_python()}")
    return _absolute(path)


def _absolute(path: str | Path) -> str:
    # Not resolve(): a venv's python is a symlink, and following it leaves the venv.
    return str(Path(path).absolute())


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


def run_probe(python: str, timeout: float = DEFAULT_TIMEOUT, *, torch: bool = True, cuda: bool = True
              ) -> subproc.Completed:
    """Run the probe script by path in `python`. Never raises: the caller reads the result."""
    args = [python, str(PROBE_SCRIPT)]
    if not torch:
        args.append("--no-torch")
    if not cuda:
        args.append("--no-cuda")
    return subproc.run(args, timeout=timeout)


def parse_probe_output(stdout: str) -> dict[str, Any] | None:
    """The probe prints one JSON object on the last non-empty line; None when there is none."""
    for raw in reversed(stdout.strip().splitlines()):
        line = raw.strip()
        if not line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) and doc.get("schema") == PROBE_SCHEMA else None
    return None


def _exit_text(result: subproc.Completed) -> str:
    code = result.returncode
    if code < 0 and not result.timed_out:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if sys.platform == "win32" and code >= 0xC0000000:  # NTSTATUS, e.g. 0xC0000005 access violation
        return f"exit code 0x{code:08X}"
    return f"exit code {code}"


def _tail(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def example_python(os_name: str | None = None) -> str:
    """Where VOX-1's Python lives on `os_name` (default: this machine), as an example for hints."""
    name = os_name or ("windows" if sys.platform == "win32" else sys.platform)
    return "C:\\VOX-1\\system_python\\python.exe" if name == "windows" else "~/VOX-1/system_python/bin/python3"


def _not_a_python_hint() -> str:
    return f"pass the path of VOX-1's Python interpreter, e.g. --python {example_python()}"


def _not_a_python(python: str, result: subproc.Completed) -> BadInputError:
    """Why `python` did not answer, in words (the OS error names are not for users)."""
    detail = result.stderr.strip()
    if result.returncode in (126, 127) and not result.stdout and detail.startswith("[Errno"):  # the OS refused
        if "Permission denied" in detail:
            why = "is not executable (permission denied): a text file or a script is not an interpreter"
        elif "Exec format error" in detail:
            why = "is not a program this system can run (exec format error: a text file, or built for another OS)"
        elif result.returncode == 127:
            why = ("could not be started: the program it names on its first line, or a library it needs, is "
                   f"missing ({detail or 'not found'})")
        else:
            why = f"could not be started ({detail or 'cannot be executed'})"
        return BadInputError(f"{python} {why}", _not_a_python_hint())
    output = (result.stderr or result.stdout).strip()
    last = output.splitlines()[-1] if output else "no output"
    if "SyntaxError" in output or "Traceback" in output:
        return BadInputError(f"{python} failed to run the probe script ({_exit_text(result)}): {_tail(last, 300)}",
                             "an interpreter too old or too broken to run a Python 2.7/3 script; "
                             + _not_a_python_hint() + " (-vv shows the full output)")
    gist = " | ".join(line.strip() for line in output.splitlines() if line.strip())
    return BadInputError(f"{python} did not answer like a Python interpreter ({_exit_text(result)}): "
                         f"{_tail(gist, 400) or 'no output'}", _not_a_python_hint())


def probe_interpreter(python: str | os.PathLike[str] | None = None, timeout: float = DEFAULT_TIMEOUT, *,
                      torch: bool = True, cuda: bool = True) -> ProbeFacts:
    """Probe the target interpreter once (torch imported at most once, in the target, never here).

    `torch=False` skips importing torch (fast: interpreter, platform and package versions only); `cuda=False`
    imports torch but does not initialise CUDA. Raises BadInputError when `python` is not a Python."""
    target = resolve_target(python)
    started = time.monotonic()
    # --timeout is the limit for the whole probe: importing torch leaves time to ask again without it.
    first_limit = timeout - retry_reserve(timeout) if torch else timeout
    result = run_probe(target, first_limit, torch=torch, cuda=cuda)
    doc = parse_probe_output(result.stdout) if not result.timed_out else None
    torch_failure: str | None = None
    no_time_left = False
    if doc is None and torch:
        # torch may hang (driver/CUDA init) or take the interpreter down (segfault, illegal instruction):
        # the interpreter itself still answers without it.
        if result.timed_out:
            torch_failure = (f"probing torch timed out after {first_limit:.3g} s (import torch or CUDA "
                             "initialisation hung)")
        else:
            torch_failure = (f"the interpreter crashed while importing torch ({_exit_text(result)})"
                             + (f": {_tail(result.stderr, 800)}" if result.stderr.strip() else ""))
        left = min(timeout - (time.monotonic() - started), RETRY_TIMEOUT)
        no_time_left = left < MIN_RETRY
        if not no_time_left:
            retry = run_probe(target, left, torch=False)
            doc = parse_probe_output(retry.stdout) if not retry.timed_out else None
            if doc is None:
                result = retry
    if doc is None:
        if no_time_left:
            raise BadInputError(f"{target}: {torch_failure}, and no time was left of --timeout {timeout:g} s to "
                                "ask again without importing torch", "allow more time with --timeout")
        if result.timed_out:
            again = " (nor when asked again without importing torch)" if torch_failure else ""
            raise BadInputError(f"{target} did not answer within {timeout:g} s{again}",
                                "check that it is a Python interpreter that starts on its own "
                                "(or allow more time with --timeout)")
        raise _not_a_python(target, result)
    if "fatal" in doc:
        raise BadInputError(f"{target}: the probe failed inside the interpreter: {doc['fatal']}",
                            "rerun with -vv and report the output")
    facts = facts_from_probe(doc)
    if torch_failure is not None:
        facts = _with_torch_failure(facts, doc, torch_failure)
    return replace(facts, seconds=round(time.monotonic() - started, 3))


def retry_reserve(timeout: float) -> float:
    """The part of `timeout` kept for probing again without torch after torch hangs: a third, at most
    RETRY_RESERVE seconds (the stdlib-only probe takes well under a second)."""
    return min(RETRY_RESERVE, timeout / 3)


def _with_torch_failure(facts: ProbeFacts, doc: Mapping[str, Any], failure: str) -> ProbeFacts:
    origin = doc.get("torch_origin")
    if origin is None and "torch" not in facts.packages:
        return replace(facts, torch_probed=False)
    info = TorchInfo(version=None, import_error=failure,
                     location=str(Path(origin).parent) if isinstance(origin, str) else None)
    return replace(facts, torch=info, torch_probed=True,
                   sources={**facts.sources, "torch": "probe (import failed; facts from a second probe without torch)"})


# ----------------------------------------------------------------------------------------------------------
# Pure: probe JSON -> values


def _s(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def normalize_os(system: str) -> str:
    system = system.lower()
    if system.startswith(("cygwin", "msys", "mingw")):
        return "windows"
    return system


def interpreter_machine(os_name: str, kernel_machine: str, sysconfig_platform: str | None, pointer_bits: int
                        ) -> str:
    """The architecture wheels must be built for: the interpreter's, not the kernel's (a 32-bit Python on a
    64-bit OS needs 32-bit wheels, as pip decides)."""
    machine = kernel_machine.lower()
    plat = (sysconfig_platform or "").lower()
    if os_name == "windows":
        by_platform = {"win-amd64": "amd64", "win32": "x86", "win-arm64": "arm64", "win-arm32": "arm"}
        return by_platform.get(plat, machine or "amd64")
    if os_name == "darwin":
        return "arm64" if machine in ("arm64", "aarch64") else machine or "x86_64"
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if pointer_bits == 32:
        machine = {"x86_64": "i686", "aarch64": "armv8l"}.get(machine, machine)
    return machine


def torch_from_probe(raw: Any) -> TorchInfo | None:
    """Pure: the probe's `torch` object as a TorchInfo (None: torch not installed)."""
    if not isinstance(raw, Mapping):
        return None
    devices = tuple(
        TorchDevice(index=int(d.get("index", i)), name=str(d.get("name") or ""), capability=str(d["capability"]))
        for i, d in enumerate(raw.get("devices") or [])
        if isinstance(d, dict) and d.get("capability")
    )
    arch = raw.get("arch_list")
    version = _s(raw.get("version"))
    import_error = _s(raw.get("import_error"))
    if version is None and import_error is None:
        import_error = "torch imported but reports no __version__"
    abi = raw.get("cxx11abi")
    available = raw.get("cuda_available")
    count = raw.get("device_count")
    return TorchInfo(
        version=version if import_error is None else None,
        cuda=_s(raw.get("cuda")),
        hip=_s(raw.get("hip")),
        cxx11abi=bool(abi) if isinstance(abi, (bool, int)) else None,
        cuda_available=bool(available) if isinstance(available, bool) else None,
        device_count=int(count) if isinstance(count, int) and not isinstance(count, bool) else None,
        devices=devices,
        arch_list=tuple(str(a) for a in arch) if isinstance(arch, list) else None,
        import_error=import_error,
        location=_s(raw.get("location")),
        warnings=tuple(str(w) for w in raw.get("warnings") or ()),
    )


def facts_from_probe(doc: Mapping[str, Any]) -> ProbeFacts:
    """Validated facts from the probe's JSON (pure; raises BadInputError on an answer it cannot read)."""
    try:
        py = doc["python"]
        plat = doc["platform"]
        version = str(py["version"])
    except (KeyError, TypeError) as exc:
        raise BadInputError(f"the probe's answer lacks {exc}", "rerun with -vv and report the output") from exc
    os_name = normalize_os(str(plat.get("system") or ""))
    pointer_bits = int(py.get("pointer_bits") or 64)
    machine = interpreter_machine(os_name, str(plat.get("machine") or ""), _s(py.get("sysconfig_platform")),
                                  pointer_bits)
    glibc = _s(plat.get("glibc"))
    python = PythonInfo(
        version=version,
        implementation=str(py.get("implementation") or "cpython").lower(),
        gil_disabled=bool(py.get("gil_disabled")),
        executable=_s(py.get("executable")),
        soabi=_s(py.get("soabi")),
        site_packages=_s(py.get("site_packages")),
        debug=bool(py.get("debug")),
        platform=_s(py.get("sysconfig_platform")),
    )
    tags = derive_tags(os_name, machine, glibc, python, _s(plat.get("mac_version")), musl=_s(plat.get("musl")),
                       pymalloc=bool(py.get("pymalloc")))
    python = replace(python, tags=tags)
    fa_raw = doc.get("flash_attn")
    flash_attn = (FlashAttnInfo(version=str(fa_raw["version"]), location=_s(fa_raw.get("location")))
                  if isinstance(fa_raw, dict) and fa_raw.get("version") else None)
    packages = {str(k): str(v) for k, v in (doc.get("packages") or {}).items()}
    torch_probed = bool(doc.get("torch_probed", True))
    platform_info = {
        "system": _s(plat.get("system")),
        "release": _s(plat.get("release")),
        "os_version": _s(plat.get("os_version")),
        "kernel_machine": _s(plat.get("machine")),
        "musl": _s(plat.get("musl")),
        "mac_version": _s(plat.get("mac_version")),
        "pointer_bits": pointer_bits,
        "prefix": _s(py.get("prefix")),
        "base_prefix": _s(py.get("base_prefix")),
    }
    sources = {
        "os": "probe (platform.system)",
        "machine": "probe (platform.machine + sysconfig.get_platform)",
        "python": "probe",
        "python.tags": "packaging.tags from probe facts",
        "flash_attn": "probe (importlib.metadata)",
        "packages": "probe (importlib.metadata)",
    }
    if glibc:
        sources["glibc"] = f"probe ({plat.get('glibc_source') or 'libc'})"
    if torch_probed:
        sources["torch"] = "probe (import torch)"
    return ProbeFacts(os=os_name, machine=machine, glibc=glibc, python=python,
                      torch=torch_from_probe(doc.get("torch")) if torch_probed else None, flash_attn=flash_attn,
                      packages=packages, platform=platform_info, torch_probed=torch_probed, sources=sources)
