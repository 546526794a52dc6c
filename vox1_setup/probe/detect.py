"""`detect_environment`: the probe, NVIDIA and host facts assembled into one `Environment`.

The target probe (seconds: it imports torch) runs while this process asks NVML/nvidia-smi and psutil, so
`detect` costs about one `import torch` in the target. Every fact records its source in `Environment.sources`.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from vox1_setup.environment import Environment
from vox1_setup.paths import Paths, default_paths
from vox1_setup.probe.host import HOST_SOURCES, disk_free, host_facts
from vox1_setup.probe.interpreter import DEFAULT_TIMEOUT, ProbeFacts, probe_interpreter, resolve_target
from vox1_setup.probe.nvidia import SMI_TIMEOUT, NvidiaReport, detect_nvidia

log = logging.getLogger(__name__)


def assemble(facts: ProbeFacts, nvidia: NvidiaReport | None, host: dict[str, object]) -> Environment:
    """Pure: one Environment from the three reports (nvidia None = GPU detection skipped)."""
    sources = dict(facts.sources)
    if nvidia is None:
        sources["nvidia"] = "skipped (--no-gpu)"
    else:
        sources.update(nvidia.sources)
        sources["nvidia"] = nvidia.source or "none answered"
        if nvidia.attempts:
            sources["nvidia.attempts"] = "; ".join(nvidia.attempts)
    host_doc = dict(host)
    host_sources = host_doc.pop(HOST_SOURCES, None)
    if isinstance(host_sources, dict):
        sources.update({f"host.{key}": str(value) for key, value in host_sources.items()})
    if not facts.torch_probed:
        sources["torch"] = "not probed"
    host_doc["python_platform"] = dict(facts.platform)
    if facts.seconds is not None:
        host_doc["probe_seconds"] = facts.seconds
    return Environment(
        os=facts.os,
        machine=facts.machine,
        glibc=facts.glibc,
        python=facts.python,
        torch=facts.torch,
        driver=nvidia.driver if nvidia else None,
        gpus=nvidia.gpus if nvidia else (),
        flash_attn=facts.flash_attn,
        host=host_doc,
        sources=sources,
        packages=dict(facts.packages),
    )


def detect_environment(python: str | None = None, *, paths: Paths | None = None, gpu: bool = True,
                       timeout: float = DEFAULT_TIMEOUT, torch: bool = True) -> Environment:
    """Detect the machine and the TARGET interpreter (default: the running one).

    Exits cleanly on a machine without GPU, driver, NVML or torch, and with a torch that fails to import
    (reported in `torch.import_error`). Raises BadInputError when `python` is not a Python interpreter."""
    import platform

    paths = paths or default_paths()
    target = resolve_target(python)  # a plainly wrong path fails at once, before the GPU queries start
    os_name = platform.system().lower()
    # The probe (a subprocess, seconds) runs in this thread; NVIDIA and host queries overlap with it.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="vox1-detect") as pool:
        # nvidia-smi gets the same patience as the target, at most its own limit (a wedged driver hangs it).
        nvidia_future = pool.submit(detect_nvidia, os_name, timeout=min(timeout, SMI_TIMEOUT)) if gpu else None
        host_future = pool.submit(host_facts, {"cache": str(paths.cache)})
        facts = probe_interpreter(target, timeout, torch=torch)
        nvidia = nvidia_future.result() if nvidia_future is not None else None
        host = host_future.result()
    host["disk"].update(disk_free({"site_packages": facts.python.site_packages}))
    env = assemble(facts, nvidia, host)
    log.debug("detected: %s", env)
    return env
