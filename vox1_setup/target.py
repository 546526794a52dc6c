"""The target interpreter as doctor and the wizard see it: its Environment plus the outcome of importing
flash-attn there, with torch imported in the target at most once.

Built on the public face of `vox1_setup.probe` only: `detect_environment(..., torch=False)` (interpreter,
tags, packages, NVIDIA, host: no torch, a fraction of a second) runs alongside ONE target process that runs
the documented probe script (`vox1_setup/probe/target_probe.py`, by path, one `vox1-probe/1` JSON line) and
then imports flash-attn with torch already loaded. Its `torch` object is read by the probe package's own
`torch_from_probe`, exactly as detect reads it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vox1_setup import subproc
from vox1_setup.environment import Environment, TorchInfo
from vox1_setup.paths import Paths

FLASH_IMPORT_TIMEOUT = 120.0
FLASH_IMPORT_SCHEMA = "vox1-flash-import/1"
PROBE_SCHEMA = "vox1-probe/1"


@dataclass(frozen=True)
class ImportCheck:
    """The outcome of `import flash_attn, flash_attn_2_cuda` in the target."""

    installed: bool
    ok: bool = False
    version: str | None = None
    error: str | None = None
    timed_out: bool = False
    seconds: float | None = None


# Runs inside the target; stdlib only, old-Python syntax. torch is imported (by flash_attn) only when
# flash_attn is installed. Leaves its answer in `out`.
FLASH_IMPORT_SCRIPT = r"""
import json, sys, time, traceback
out = {"schema": "vox1-flash-import/1", "installed": False, "ok": False}
try:
    import importlib.util
    out["installed"] = importlib.util.find_spec("flash_attn") is not None
except Exception:
    out["installed"] = False
if out["installed"]:
    t0 = time.time()
    try:
        import flash_attn
        import flash_attn_2_cuda
        out["ok"] = True
        out["version"] = getattr(flash_attn, "__version__", None)
    except BaseException:
        out["error"] = traceback.format_exc()[-4000:]
    out["seconds"] = round(time.time() - t0, 3)
"""

# argv[1] = the probe script. It runs as its own `__main__` (its documented command line) and prints its
# answer; then flash_attn is imported in the same process, so torch is imported once. Whatever the import
# prints goes to stderr; our answer is written to the saved stdout, after the probe's.
PROBE_THEN_IMPORT = r"""
import os, runpy, sys
if sys.path and sys.path[0] == "":
    del sys.path[0]  # as when the probe runs by path: the current folder must not shadow the target's packages
probe_path = sys.argv[1]
sys.argv = [probe_path]
try:
    runpy.run_path(probe_path, run_name="__main__")
except SystemExit:
    pass
sys.stdout.flush()
real_stdout = os.dup(1)
os.dup2(2, 1)
""" + FLASH_IMPORT_SCRIPT + r"""
sys.stdout.flush()
os.write(real_stdout, ("\n" + json.dumps(out) + "\n").encode("utf-8"))
"""


def probe_script() -> Path:
    """The probe script shipped in `vox1_setup/probe/` (documented in docs/env-schema.md)."""
    import vox1_setup.probe

    return Path(vox1_setup.probe.__file__).with_name("target_probe.py")


def json_lines(stdout: str) -> dict[str, dict[str, Any]]:
    """Pure: the JSON objects printed one per line, by their `schema` (anything else is noise)."""
    found: dict[str, dict[str, Any]] = {}
    for raw in stdout.splitlines():
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("schema"), str):
            found[doc["schema"]] = doc
    return found


def import_check_from(doc: dict[str, Any]) -> ImportCheck:
    seconds = doc.get("seconds")
    return ImportCheck(installed=bool(doc.get("installed")), ok=bool(doc.get("ok")),
                       version=_text(doc.get("version")), error=_text(doc.get("error")),
                       seconds=float(seconds) if isinstance(seconds, (int, float)) else None)


def parse_flash_import(stdout: str, timed_out: bool, stderr: str = "", seconds: float | None = None) -> ImportCheck:
    """Pure: the import script's JSON line; a crash (segfault, abort) leaves stderr as the error."""
    doc = json_lines(stdout).get(FLASH_IMPORT_SCHEMA)
    if doc is not None:
        return import_check_from(doc)
    if timed_out:
        return ImportCheck(installed=True, timed_out=True, seconds=seconds)
    return ImportCheck(installed=True, error=stderr.strip()[-4000:] or "the interpreter exited without an answer",
                       seconds=seconds)


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def exit_text(returncode: int) -> str:
    """Pure: how a process ended, in words (a negative code is a POSIX signal)."""
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    if returncode >= 0xC0000000:  # Windows NTSTATUS, e.g. 0xC0000005 access violation
        return f"exit code 0x{returncode:08X}"
    return f"exit code {returncode}"


def with_torch(base: Environment, torch: TorchInfo | None, source: str, seconds: float | None) -> Environment:
    """Pure: the torch-less Environment completed with what the target said about torch."""
    host = dict(base.host)
    if seconds is not None:
        host["probe_seconds"] = round(seconds, 3)
    return replace(base, torch=torch, sources={**base.sources, "torch": source}, host=host)


def direct_target(python: str | None) -> str | None:
    """The interpreter to run when it is obvious without asking it (None: a folder or a name on PATH)."""
    if python is None or python == "":
        return sys.executable
    path = Path(os.path.expandvars(python)).expanduser()
    return str(path) if path.is_file() else None


def same_target(a: str, b: str) -> bool:
    """Whether two spellings name the same interpreter: the same folder (venvs link `python`, `python3` and
    `python3.X` to one base interpreter, so the resolved file cannot tell two venvs apart; their folder can)."""
    def folder(p: str) -> str:
        return os.path.normcase(os.path.realpath(os.path.dirname(os.path.abspath(p))))  # noqa: PTH100, PTH120

    return folder(a) == folder(b)


def target_python(python: str | None, *, timeout: float = 60.0) -> str:
    """The target interpreter's own path, as it reports it (a folder or a name is resolved by the probe).
    Raises BadInputError, with a hint, when it is not a Python interpreter."""
    from vox1_setup.probe import probe_interpreter

    facts = probe_interpreter(python, timeout, torch=False)
    return facts.python.executable or direct_target(python) or str(python)


def detect_and_import(python: str | None, *, paths: Paths, timeout: float) -> tuple[Environment, ImportCheck | None]:
    """The Environment and the flash-attn import check, importing torch in the target at most once.

    A target whose torch crashes or hangs still gets its Environment: torch then carries the failure as its
    import error, and the import check is None (not attempted). Raises BadInputError when `python` is not a
    Python interpreter."""
    from concurrent.futures import ThreadPoolExecutor

    from vox1_setup.probe import detect_environment, torch_from_probe

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vox1-target") as pool:
        base_future = pool.submit(detect_environment, python, paths=paths, timeout=timeout, torch=False)
        target = direct_target(python)
        if target is None:  # a folder or a bare name: the torch-less probe tells which file it is
            base = base_future.result()
            target = base.python.executable or str(python)
        started = time.monotonic()
        result = subproc.run([target, "-c", PROBE_THEN_IMPORT, str(probe_script())], timeout=timeout)
        seconds = time.monotonic() - started
        base = base_future.result()
    answers = json_lines(result.stdout)
    probe = answers.get(PROBE_SCHEMA)
    if probe is None or "fatal" in probe:
        return with_torch(base, _torch_failure(base, result, timeout), "probe (import torch failed)", seconds), None
    env = with_torch(base, torch_from_probe(probe.get("torch")), "probe (import torch)", seconds)
    if env.flash_attn is None:
        return env, ImportCheck(installed=False)
    flash = answers.get(FLASH_IMPORT_SCHEMA)
    if flash is not None:
        return env, import_check_from(flash)
    if result.timed_out:
        return env, ImportCheck(installed=True, timed_out=True, seconds=timeout)
    return env, ImportCheck(installed=True, error=(f"the interpreter crashed while importing flash_attn "
                                                   f"({exit_text(result.returncode)}): "
                                                   f"{result.stderr.strip()[-3000:]}"))


def _torch_failure(base: Environment, result: subproc.Completed, timeout: float) -> TorchInfo | None:
    """torch hung or took the interpreter down before the probe could answer."""
    if "torch" not in base.packages:
        return None
    if result.timed_out:
        error = f"probing torch timed out after {timeout:g} s (import torch or CUDA initialisation hung)"
    else:
        tail = result.stderr.strip()[-800:]
        error = f"the interpreter crashed while importing torch ({exit_text(result.returncode)})" + (
            f": {tail}" if tail else "")
    return TorchInfo(version=None, import_error=error)


def import_flash_attn(python: str, timeout: float = FLASH_IMPORT_TIMEOUT) -> ImportCheck:
    """`import flash_attn, flash_attn_2_cuda` in a fresh target process (imports torch when installed)."""
    script = FLASH_IMPORT_SCRIPT + 'sys.stdout.write("\\n" + json.dumps(out) + "\\n")\n'
    result = subproc.run([python, "-c", script], timeout=timeout)
    return parse_flash_import(result.stdout, result.timed_out, result.stderr, timeout if result.timed_out else None)
