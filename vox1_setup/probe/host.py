"""Facts about the machine itself (psutil and the OS): memory, free disk, OS name and release.

The interpreter-specific facts (architecture for wheels, glibc) come from the target probe, because a 32-bit
or emulated Python may see a different platform than this process.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def existing_ancestor(path: Path) -> Path | None:
    """The nearest folder that exists (the cache may not be created yet; its disk is what matters)."""
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return candidate
        except OSError:
            continue
    return None


def disk_free(places: Mapping[str, str | os.PathLike[str] | None]) -> dict[str, dict[str, Any]]:
    """Free space per named place: {"cache": {"path": ..., "free_mib": ..., "total_mib": ...}}."""
    import psutil

    out: dict[str, dict[str, Any]] = {}
    for label, where in places.items():
        if where is None:
            continue
        folder = existing_ancestor(Path(where))
        entry: dict[str, Any] = {"path": str(where), "free_mib": None, "total_mib": None}
        if folder is not None:
            try:
                usage = psutil.disk_usage(str(folder))
                entry["free_mib"] = usage.free // MIB
                entry["total_mib"] = usage.total // MIB
            except OSError as exc:
                entry["error"] = str(exc)
        out[label] = entry
    return out


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines of /etc/os-release (values may be quoted)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            out[key] = value.strip().strip('"').strip("'")
    return out


def os_name_pretty() -> tuple[str, str]:
    """('Ubuntu 22.04.4 LTS', '/etc/os-release'), ('Windows 11 (10.0.22631)', 'platform'), ('macOS 14.5', ...)."""
    system = platform.system()
    if system == "Linux":
        for candidate in ("/etc/os-release", "/usr/lib/os-release"):
            try:
                info = parse_os_release(Path(candidate).read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
            if info.get("PRETTY_NAME"):
                return info["PRETTY_NAME"], candidate
        return f"Linux {platform.release()}", "platform.release"
    if system == "Windows":
        release, version = platform.release(), platform.version()
        # Windows 11 still reports release "10"; build 22000+ is Windows 11.
        build = version.rsplit(".", 1)[-1]
        if release == "10" and build.isdigit() and int(build) >= 22000:
            release = "11"
        return f"Windows {release} ({version})", "platform.release + platform.version"
    if system == "Darwin":
        return f"macOS {platform.mac_ver()[0]}", "platform.mac_ver"
    return f"{system} {platform.release()}", "platform.release"


# Key of the host facts that says where each of them came from (moved into Environment.sources by `assemble`).
HOST_SOURCES = "sources"


def host_facts(disk_places: Mapping[str, str | os.PathLike[str] | None] | None = None) -> dict[str, Any]:
    """The `host` object of the environment document, plus where each fact came from under `HOST_SOURCES`."""
    import psutil

    memory = psutil.virtual_memory()
    os_name, os_name_source = os_name_pretty()
    facts: dict[str, Any] = {
        "os_name": os_name,
        "os_release": platform.release(),
        "os_version": platform.version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "ram_total_mib": memory.total // MIB,
        "ram_available_mib": memory.available // MIB,
        "disk": disk_free(disk_places or {}),
        HOST_SOURCES: {
            "os_name": os_name_source,
            "os_release": "platform.release",
            "machine": "platform.machine",
            "cpu_count": "os.cpu_count",
            "ram": "psutil.virtual_memory",
            "disk": "psutil.disk_usage",
        },
    }
    return facts
