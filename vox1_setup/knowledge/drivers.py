"""NVIDIA driver ↔ CUDA toolkit table.

Source: NVIDIA CUDA Toolkit release notes, "CUDA Toolkit and Corresponding Driver Versions" (FIELD-NOTES §3),
and the minor-version-compatibility floors of FIELD-NOTES §1.6.
"""

from __future__ import annotations

import re

# CUDA (major, minor) -> (minimum Linux x86_64 driver, minimum Windows driver). There is no CUDA 12.7.
# Windows 13.x: "R580+" in the notes; 580.00 is used as the floor.
MIN_DRIVER: dict[tuple[int, int], tuple[str, str]] = {
    (11, 8): ("520.61.05", "520.06"),
    (12, 0): ("525.60.13", "527.41"),
    (12, 1): ("530.30.02", "531.14"),
    (12, 2): ("535.54.03", "536.25"),
    (12, 3): ("545.23.06", "545.84"),
    (12, 4): ("550.54.14", "551.61"),
    (12, 5): ("555.42.02", "555.85"),
    (12, 6): ("560.28.03", "560.76"),
    (12, 8): ("570.26", "570.65"),
    (12, 9): ("575.51.03", "576.02"),
    (13, 0): ("580.65.06", "580.00"),
    (13, 1): ("590.44.01", "580.00"),
    (13, 2): ("595.45.04", "580.00"),
}

# Minor-version compatibility: any driver at or above the floor runs every minor of that CUDA major
# (FIELD-NOTES §1.6). Windows 12.x: 527.41 per the table; some tools use 528.33.
MAJOR_FLOOR: dict[int, tuple[str, str]] = {
    11: ("450.80.02", "452.39"),
    12: ("525.60.13", "527.41"),
    13: ("580.00", "580.00"),
}


def parse_driver(version: str) -> tuple[int, ...]:
    """'550.144.03' -> (550, 144, 3). Non-numeric parts are ignored."""
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def _column(os_name: str) -> int:
    return 1 if os_name == "windows" else 0


def min_driver_for_cuda(cuda: tuple[int, int], os_name: str) -> str | None:
    """The driver a CUDA toolkit release needs for full (not minor-compat) support."""
    row = MIN_DRIVER.get(cuda)
    return row[_column(os_name)] if row else None


def major_floor(cuda_major: int, os_name: str) -> str | None:
    """The oldest driver that can run anything built with this CUDA major (minor-version compatibility)."""
    row = MAJOR_FLOOR.get(cuda_major)
    return row[_column(os_name)] if row else None


def max_cuda_for_driver(driver: str, os_name: str) -> tuple[int, int] | None:
    """The newest CUDA in the table whose minimum driver this driver meets (used when only the driver
    version is known, e.g. from /proc/driver/nvidia/version). None when older than every entry."""
    have = parse_driver(driver)
    best: tuple[int, int] | None = None
    for cuda, row in MIN_DRIVER.items():
        if have >= parse_driver(row[_column(os_name)]) and (best is None or cuda > best):
            best = cuda
    return best


def driver_supports_cuda_major(driver: str, driver_max_cuda: str | None, cuda_major: int, os_name: str) -> bool:
    """True when the driver can run code built with any minor of `cuda_major`."""
    floor = major_floor(cuda_major, os_name)
    if floor is not None and parse_driver(driver) < parse_driver(floor):
        return False
    if driver_max_cuda:
        m = re.match(r"(\d+)", driver_max_cuda)
        if m and int(m.group(1)) < cuda_major:
            return False
    return True
