"""Minimum glibc of flash-attn wheels, as data.

Sources: FIELD-NOTES §1.8; Dao-AILab/flash-attention#1708 (official v2.8.x wheels need GLIBC_2.32 and fail on
Ubuntu 20.04 / RHEL 8, while v2.7.4.post1 loads on glibc 2.31); PEP 600 (a `manylinux_2_X` tag promises glibc ≥ 2.X;
the legacy aliases mean manylinux1 = 2.5, manylinux2010 = 2.12, manylinux2014 = 2.17).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version2 = tuple[int, int]

LEGACY_MANYLINUX: dict[str, Version2] = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


@dataclass(frozen=True)
class GlibcRule:
    source: str
    fa_min: tuple[int, ...]
    fa_max: tuple[int, ...]
    min_glibc: Version2
    why: str


# Plain `linux_*` wheels promise nothing in their tag; these are the ones whose floor is known.
GLIBC_RULES: tuple[GlibcRule, ...] = (
    GlibcRule("Dao-AILab", (2, 8), (2, 8, 99, 99), (2, 32),
              "official v2.8.x wheels need GLIBC_2.32+ (Dao-AILab#1708)"),
)

# Below this, prefer a manylinux-tagged wheel over a plain linux one (FIELD-NOTES §1.8: Ubuntu 20.04 = 2.31).
OLD_GLIBC_BELOW: Version2 = (2, 32)


def manylinux_floor(platform_tag: str) -> Version2 | None:
    """'manylinux_2_28_x86_64' -> (2, 28); 'manylinux2014_x86_64' -> (2, 17); 'linux_x86_64' -> None."""
    m = re.match(r"manylinux_(\d+)_(\d+)_", platform_tag)
    if m:
        return int(m.group(1)), int(m.group(2))
    for legacy, floor in LEGACY_MANYLINUX.items():
        if platform_tag.startswith(legacy + "_"):
            return floor
    return None


def wheel_min_glibc(*, source: str | None, flash_attn_version: str,
                    platform_tags: tuple[str, ...]) -> tuple[Version2 | None, str | None]:
    """The oldest glibc the wheel loads on, and why; (None, None) when unknown or not Linux."""
    floors = [f for f in (manylinux_floor(t) for t in platform_tags) if f is not None]
    if floors:
        return min(floors), "manylinux tag"
    if not any(t.startswith("linux_") for t in platform_tags):
        return None, None
    fa = tuple(int(p) for p in re.findall(r"\d+", flash_attn_version.split("+", maxsplit=1)[0]))
    for rule in GLIBC_RULES:
        if rule.source == source and rule.fa_min <= fa <= rule.fa_max:
            return rule.min_glibc, rule.why
    return None, None
