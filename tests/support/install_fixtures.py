"""Shared pieces of the install tests: a GPU machine description matching the test venvs, manifests pointing
at the loopback server, an independent snapshot of a target's site-packages, and CLI runners."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.venvs import site_packages
from vox1_setup.manifest import Manifest, WheelEntry, dump_manifest

ROOT = Path(__file__).resolve().parents[2]


def gpu_env_doc() -> dict[str, object]:
    """A Linux machine with an RTX 4090 and CUDA torch 2.13, running this very Python (so tags match)."""
    gpu = {"index": 0, "name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}
    return {
        "schema": "vox1-env/1", "os": "linux", "machine": platform.machine().lower(),
        "glibc": platform.libc_ver()[1] or "2.35",
        "python": {"version": ".".join(map(str, sys.version_info[:3]))},
        "torch": {"version": "2.13.0+cu128", "cuda": "12.8", "cxx11abi": True, "cuda_available": True,
                  "device_count": 1, "devices": [{"index": 0, "name": gpu["name"], "capability": "8.9"}]},
        "driver": {"version": "570.86.10", "cuda": "12.8"},
        "gpus": [gpu],
    }


def write_env(path: Path) -> Path:
    path.write_text(json.dumps(gpu_env_doc()), encoding="utf-8")
    return path


def write_manifest(path: Path, wheels: list[tuple[Path, str, bool]]) -> Path:
    """wheels: (file, url, pin its sha256?)."""
    entries = []
    for file, url, pin in wheels:
        sha = hashlib.sha256(file.read_bytes()).hexdigest() if pin else None
        entries.append(WheelEntry.from_filename(file.name, url=url, sha256=sha, size=file.stat().st_size,
                                                evidence="listed"))
    path.write_bytes(dump_manifest(Manifest(entries=tuple(entries), origin=str(path))))
    return path


def snapshot(python: Path) -> dict[str, object]:
    """Everything in the venv's own site-packages by hash (bytecode aside) + the distributions it reports.
    Written independently of vox1_setup's own state reader, so the tests check the code, not themselves."""
    site = site_packages(python.parents[1])
    files = {}
    for p in sorted(site.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            files[p.relative_to(site).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    code = ("import json, importlib.metadata as m; "
            "print(json.dumps(sorted({(d.metadata['Name'], d.version) for d in m.distributions()})))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return {"files": files, "distributions": json.loads(out.stdout)}


def flash_version(python: Path) -> str | None:
    code = ("import importlib.metadata as m\ntry:\n print(m.version('flash_attn'))\n"
            "except m.PackageNotFoundError:\n print('absent')")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    return None if out == "absent" else out


def pip_install(python: Path, wheel: Path) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True)


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        doc = json.loads(self.out)
        assert isinstance(doc, dict)
        return doc


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"VOX1_VERIFY_ALLOW_CPU": "1", "VOX1_DOWNLOAD_BACKOFF": "0.01", "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


def run_cli_process(args: list[str], timeout: float = 120, **extra: str) -> CliResult:
    proc = subprocess.run([sys.executable, "-m", "vox1_setup", *args], capture_output=True, text=True,
                          env=cli_env(**extra), timeout=timeout, check=False)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


# A test run started in the background (nohup, some CI runners) hands its children SIGINT as ignored, and Python
# then never raises KeyboardInterrupt: the CLI under test gets the disposition a user's terminal gives it.
_INTERRUPTIBLE_CLI = (
    "import signal, sys, runpy; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'vox1-setup'; runpy.run_module('vox1_setup', run_name='__main__', alter_sys=True)"
)


class PausedCli:
    """A CLI process stopped at a named step by the test-only hook VOX1_TEST_PAUSE_AT."""

    def __init__(self, args: list[str], step: str, **extra: str) -> None:
        self.step = step
        self.proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTIBLE_CLI, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     env=cli_env(VOX1_TEST_PAUSE_AT=step, **extra))

    def wait_paused(self, timeout: float = 120) -> None:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError(f"exited before pausing at {self.step}: rc={self.proc.wait()}")
            if line.strip() == f"VOX1_TEST_PAUSED {self.step}":
                return
        raise AssertionError(f"did not pause at {self.step}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._close()

    def interrupt(self, timeout: float = 120) -> CliResult:
        self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        return CliResult(self.proc.returncode, out, err)

    def _close(self) -> None:
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
