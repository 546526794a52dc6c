"""GPU architectures and FlashAttention 2, as data.

Sources: FIELD-NOTES §1.7; flash-attn `setup.py` (the `-gencode` list: sm_80 and sm_90, plus sm_100/sm_120
when nvcc ≥ 12.8 from v2.7.3 on); the flash-attn README ("Ampere, Ada, or Hopper GPUs"); NVIDIA's CUDA GPU
compute-capability list. Wheels carry cubins only (no PTX), so a GPU runs a wheel only when a cubin of its
own major with a minor ≤ its minor was compiled in (binary compatibility within a major).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version2 = tuple[int, int]

# FA2 refuses anything older: "FlashAttention only supports Ampere GPUs or newer."
FA2_MIN_CAPABILITY: Version2 = (8, 0)


@dataclass(frozen=True)
class ArchFamily:
    name: str
    capabilities: tuple[Version2, ...]
    examples: str


# Compute capability → family (NVIDIA CUDA GPUs list).
FAMILIES: tuple[ArchFamily, ...] = (
    ArchFamily("Volta", ((7, 0), (7, 2)), "V100, Titan V"),
    ArchFamily("Turing", ((7, 5),), "RTX 20xx, GTX 16xx, T4"),
    ArchFamily("Ampere", ((8, 0), (8, 6), (8, 7)), "A100, RTX 30xx, A10, Jetson Orin"),
    ArchFamily("Ada", ((8, 9),), "RTX 40xx, L4, L40"),
    ArchFamily("Hopper", ((9, 0),), "H100, H200, GH200"),
    ArchFamily("Blackwell", ((10, 0), (10, 3), (11, 0), (12, 0), (12, 1)),
               "B200/GB200, B300, Thor, RTX 50xx/RTX PRO 6000, GB10"),
)

BLACKWELL_MIN: Version2 = (10, 0)


@dataclass(frozen=True)
class BlackwellRule:
    """A wheel has Blackwell cubins when its flash-attn ≥ fa_min and it was compiled with nvcc ≥ nvcc_min."""

    source: str | None
    fa_min: tuple[int, ...]
    nvcc_min: Version2
    why: str


# First match by source. Official CUDA labels are major-only, so their rule keys on the release instead:
# v2.8.0.post2 was the first official release built with CUDA 12.8+ (its release notes and workflow).
BLACKWELL_RULES: tuple[BlackwellRule, ...] = (
    BlackwellRule("Dao-AILab", (2, 8, 0, 2), (12, 0), "official v2.8.0.post2+ wheels are built with nvcc ≥ 12.8"),
    BlackwellRule(None, (2, 7, 3), (12, 8), "flash-attn ≥ 2.7.3 compiled with nvcc ≥ 12.8 (FIELD-NOTES §1.7)"),
)

# Cubins in every FA2 wheel, and the Blackwell ones added by the rules above (flash-attn setup.py).
BASE_ARCHS: tuple[str, ...] = ("sm_80", "sm_90")
BLACKWELL_ARCHS: tuple[str, ...] = ("sm_100", "sm_120")
# FA 1.x (not usable as FA2, listed for completeness): Turing and Ampere cubins.
FA1_ARCHS: tuple[str, ...] = ("sm_75", "sm_80")


def capability(text: str | None) -> Version2 | None:
    """'8.9' -> (8, 9); 'sm_120' -> (12, 0); 'sm_86' -> (8, 6)."""
    if not text:
        return None
    m = re.fullmatch(r"sm_(\d+?)(\d)", text)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = re.fullmatch(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def sm_name(cap: Version2) -> str:
    return f"sm_{cap[0]}{cap[1]}"


def family(cap: Version2) -> str:
    for fam in FAMILIES:
        if cap in fam.capabilities:
            return fam.name
    for fam in reversed(FAMILIES):  # an unlisted minor: the family of its major
        if any(c[0] == cap[0] for c in fam.capabilities):
            return fam.name
    return "Blackwell or newer" if cap >= BLACKWELL_MIN else "pre-Volta"


def fa_version_tuple(version: str) -> tuple[int, ...]:
    """'2.8.0.post2' -> (2, 8, 0, 2); '2.7.3' -> (2, 7, 3)."""
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+", maxsplit=1)[0]))


def wheel_archs(*, source: str | None, flash_attn_version: str, cuda: str | None,
                cuda_major_only: bool) -> tuple[str, ...]:
    """The cubin architectures a wheel carries, derived from the rules above."""
    fa = fa_version_tuple(flash_attn_version)
    if fa and fa[0] < 2:
        return FA1_ARCHS
    nvcc = capability(cuda) if cuda and "." in cuda else None
    for rule in BLACKWELL_RULES:
        if rule.source is not None and rule.source != source:
            continue
        if fa < rule.fa_min:
            return BASE_ARCHS
        if rule.source is not None or (nvcc is not None and nvcc >= rule.nvcc_min):
            return BASE_ARCHS + BLACKWELL_ARCHS
        if cuda_major_only and cuda is not None and int(cuda) >= 13:  # any CUDA 13 nvcc is newer than 12.8
            return BASE_ARCHS + BLACKWELL_ARCHS
        return BASE_ARCHS
    return BASE_ARCHS


def runs_on(archs: tuple[str, ...], cap: Version2) -> bool:
    """A cubin sm_XY runs on a GPU of the same major X with minor ≥ Y (no PTX, so no JIT for newer majors)."""
    for arch in archs:
        c = capability(arch)
        if c is not None and c[0] == cap[0] and c[1] <= cap[1]:
            return True
    return False
