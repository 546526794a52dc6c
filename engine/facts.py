"""Gather `AttentionFacts` in the running (target) interpreter.

Availability is asked without side effects first (`importlib.metadata`); the one check that needs an import,
`flash_attn_2_cuda`, runs in a child interpreter with the same `sys.path`, once per process: a wheel built
for another torch or C++ ABI fails there with the real `undefined symbol` text and cannot take the engine
down with it. transformers' own `is_flash_attn_2_available()` looks at metadata only (FIELD-NOTES §6).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import subprocess
import sys

from engine.attention import AttentionFacts

FLASH_ATTN_DISTS = ("flash-attn", "flash_attn")
IMPORT_CHECK_TIMEOUT_S = 180.0

# Runs in a child interpreter; torch first, as flash_attn's own __init__ does (it loads libc10 & co).
_IMPORT_CHECK = """
import json, sys
try:
    import torch
    import flash_attn_2_cuda
    import flash_attn
except BaseException as exc:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
    print(json.dumps({"ok": False, "error": type(exc).__name__ + ": " + text}))
else:
    print(json.dumps({"ok": True, "error": None}))
"""


def flash_attn_version() -> str | None:
    for name in FLASH_ATTN_DISTS:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


@functools.lru_cache(maxsize=1)
def flash_attn_import_error() -> str | None:
    """None when `flash_attn_2_cuda` imports; else the error's last line. Cached: call `cache_clear()` to redo."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        proc = subprocess.run([sys.executable, "-c", _IMPORT_CHECK], capture_output=True, text=True,
                              timeout=IMPORT_CHECK_TIMEOUT_S, env=env, check=False)
    except subprocess.TimeoutExpired:
        return f"importing flash_attn_2_cuda took longer than {IMPORT_CHECK_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return f"could not start {sys.executable}: {exc}"
    for line in reversed(proc.stdout.splitlines()):
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and "ok" in doc:
            return None if doc["ok"] else str(doc["error"])
    tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return f"the import check crashed ({tail})"


def gather_facts(*, check_import: bool = True) -> AttentionFacts:
    """Facts about torch, the GPU and flash-attn in this interpreter (imports torch)."""
    import torch

    cuda = bool(torch.cuda.is_available())
    name = capability = None
    if cuda:
        name = str(torch.cuda.get_device_name(0))
        major, minor = torch.cuda.get_device_capability(0)
        capability = (int(major), int(minor))
    fa_version = flash_attn_version()
    import_error = flash_attn_import_error() if fa_version is not None and check_import else None
    return AttentionFacts(
        torch_version=str(torch.__version__),
        torch_cuda=getattr(torch.version, "cuda", None),
        cuda_available=cuda,
        device_name=name,
        capability=capability,
        flash_attn_version=fa_version,
        flash_attn_import_error=import_error,
    )
