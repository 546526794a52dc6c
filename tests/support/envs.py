"""Environments for resolver tests, built from short keyword arguments (a vox1-env/1 document underneath)."""

from __future__ import annotations

from typing import Any

from vox1_setup.environment import Environment, environment_from_dict

_UNSET: Any = object()


def env_doc(*, os: str = "linux", machine: str | None = None, python: str = "3.11.9", gil_disabled: bool = False,
            glibc: str | None = _UNSET, torch: str | None = "2.7.1+cu128", cuda: str | None = _UNSET,
            hip: str | None = None, cxx11abi: bool | None = None, import_error: str | None = None,
            arch_list: list[str] | None = None, driver: str | None = "570.86.15", driver_cuda: str | None = _UNSET,
            gpus: tuple[str, ...] = ("8.9",), gpu_names: tuple[str, ...] = ()) -> dict[str, Any]:
    """A vox1-env/1 document. `torch=None` means no torch; `cuda` defaults to the +cuXYZ label of `torch`;
    `gpus` are compute capabilities ("" for unknown)."""
    if machine is None:
        machine = "amd64" if os == "windows" else "x86_64"
    if glibc is _UNSET:
        glibc = "2.35" if os == "linux" else None
    if cuda is _UNSET:
        cuda = None
        if torch and "+cu" in torch:
            digits = torch.split("+cu", 1)[1]
            cuda = f"{digits[:2]}.{int(digits[2:])}"
    if driver_cuda is _UNSET:
        driver_cuda = {"570": "12.8", "575": "12.9", "580": "13.0", "550": "12.4", "560": "12.6", "535": "12.2",
                       "531": "12.1", "525": "12.0", "576": "12.9", "590": "13.1"}.get((driver or "")[:3])
    doc: dict[str, Any] = {
        "schema": "vox1-env/1", "os": os, "machine": machine, "glibc": glibc,
        "python": {"version": python, "gil_disabled": gil_disabled},
        "torch": None, "driver": None, "gpus": [],
    }
    if torch is not None or import_error is not None:
        doc["torch"] = {"version": torch, "cuda": cuda, "hip": hip, "cxx11abi": cxx11abi,
                        "import_error": import_error, "arch_list": arch_list}
    if driver is not None:
        doc["driver"] = {"version": driver, "cuda": driver_cuda}
    names = list(gpu_names) + [f"GPU sm{c}" for c in gpus[len(gpu_names):]]
    doc["gpus"] = [{"index": i, "name": names[i], "compute_capability": cc or None} for i, cc in enumerate(gpus)]
    return doc


def make_env(**kwargs: Any) -> Environment:
    return environment_from_dict(env_doc(**kwargs))
